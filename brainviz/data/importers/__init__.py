"""Importers: real corpora -> brainviz dataset folders.

Public API
----------
import_dataset(config_or_format, src=None, out=None, **options) -> ImportResult
ImportConfig                      the job config (format, src, out, participants, stories, options)
FORMATS                           format name -> (function path, option defaults)
import_harry_potter_mat / _npy / _meg, import_narratives, import_lebel, import_generic
load_collection(path)             dataset folders of a per-participant import
ImportResult                      what was written (``path``, ``layout``, ``datasets``, ``notes``)

Formats (see ``docs/formats.md``): ``harry-potter-mat``, ``harry-potter-npy``,
``harry-potter-meg``, ``narratives``, ``lebel``, ``generic``. Native-space sources whose
participants have different voxel sets (Harry Potter, LeBel) are written as one dataset per
participant under ``out`` (a collection with ``collection.json``); shared-space sources
(Narratives -> fsaverage5, generic, Harry Potter ``layout='intersect'``, MEG) as one dataset.
Every importer validates its inputs and raises :class:`~brainviz.data.dataset.DatasetError`
naming the file and field; output folders are written atomically.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from brainviz.config import ConfigError, JobConfig
from brainviz.data.importers._common import ImportResult, load_collection

# format -> ("module:function", option defaults, supports participants, supports stories)
FORMATS: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "harry-potter-mat": ("harry_potter:import_harry_potter_mat", {"layout": "per-participant"}, True, False),
    "harry-potter-npy": ("harry_potter:import_harry_potter_npy",
                         {"meg": None, "meg_participants": (), "bin_width": 0.025, "edge_trs": (20, 15)}, True, False),
    "harry-potter-meg": ("harry_potter:import_harry_potter_meg", {"bin_width": 0.025, "word_duration": 0.5}, True, False),
    "narratives": ("narratives:import_narratives",
                   {"source": "auto", "derivative": "auto", "word_clock": "audio", "derivatives_dir": None,
                    "transcripts_dir": None, "audio": None, "audio_dir": None}, True, True),  # audio: issue 15
    "lebel": ("lebel:import_lebel", {"mask": None, "tr": 2.0, "first_tr_time": 10.0, "check_respdict": True,
                                      "audio": None, "audio_dir": None}, True, True),  # audio: issue 15
    "generic": ("generic:import_generic",
                {"tr": None, "fmri": (), "space": "auto", "template": "MNI", "mask": None, "run_lengths": None,
                 "modality": "reading", "licence": "", "citation": "", "source": "",
                 "audio": ()}, False, False),  # audio: issue 15
}


@dataclasses.dataclass(frozen=True)
class ImportConfig(JobConfig):
    """One import job.

    Attributes
    ----------
    format : str
        A key of :data:`FORMATS`.
    src, out : str
        Source file/folder and output folder.
    participants, stories : tuple of str
        Optional selections (where the format has them).
    options : dict
        Format-specific options (keys and defaults in :data:`FORMATS`).
    """

    format: str = ""
    src: str = ""
    out: str = ""
    overwrite: bool = False
    name: str | None = None
    participants: tuple[str, ...] = ()
    stories: tuple[str, ...] = ()
    options: dict = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:  # ``options`` is a dict: hash the content key instead
        return hash(self.key())

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"ImportConfig.format: unknown format {self.format!r}; expected one of {sorted(FORMATS)}")
        if not self.src:
            raise ConfigError("ImportConfig.src is required")
        if not self.out:
            raise ConfigError("ImportConfig.out is required")
        _, defaults, has_p, has_s = FORMATS[self.format]
        unknown = sorted(set(self.options) - set(defaults))
        if unknown:
            raise ConfigError(f"ImportConfig.options: unknown option(s) {unknown} for {self.format}; known: {sorted(defaults)}")
        if self.participants and not has_p:
            raise ConfigError(f"ImportConfig.participants: {self.format} takes participants from its files (use options.fmri)")
        if self.stories and not has_s:
            raise ConfigError(f"ImportConfig.stories: {self.format} has no story selection")


def _function(fmt: str) -> Callable[..., ImportResult]:
    target = FORMATS[fmt][0]
    module, func = target.split(":")
    return getattr(importlib.import_module(f"brainviz.data.importers.{module}"), func)


def import_dataset(config: ImportConfig | str, src: Any = None, out: Any = None, *,
                   progress: Callable[[str], None] | None = None, **kwargs: Any) -> ImportResult:
    """Run an import.

    ``import_dataset(ImportConfig(...))`` or ``import_dataset("narratives", SRC, OUT,
    stories=["pieman"], participants=[...], overwrite=False, **options)``.
    """
    if not isinstance(config, ImportConfig):
        fields = {f.name for f in dataclasses.fields(ImportConfig)}
        top = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        for k in ("participants", "stories"):
            if k in top and top[k] is not None:
                top[k] = tuple(top[k])
            elif k in top:
                top[k] = ()
        config = ImportConfig(format=config, src=str(src), out=str(out), options=dict(kwargs), **top)
    _, defaults, has_p, has_s = FORMATS[config.format]
    opts = {**defaults, **config.options}
    call: dict[str, Any] = dict(overwrite=config.overwrite, name=config.name, progress=progress, **opts)
    if has_p:
        call["participants"] = list(config.participants) or None
    if has_s:
        call["stories"] = list(config.stories) or None
    return _function(config.format)(config.src, config.out, **call)


def __getattr__(name: str) -> Any:
    lazy = {
        "import_harry_potter_mat": "harry_potter", "import_harry_potter_npy": "harry_potter",
        "import_harry_potter_meg": "harry_potter", "import_narratives": "narratives", "import_lebel": "lebel",
        "import_generic": "generic",
    }
    if name in lazy:
        return getattr(importlib.import_module(f"brainviz.data.importers.{lazy[name]}"), name)
    raise AttributeError(name)


__all__ = [
    "FORMATS", "ImportConfig", "ImportResult", "import_dataset", "load_collection",
    "import_harry_potter_mat", "import_harry_potter_npy", "import_harry_potter_meg", "import_narratives",
    "import_lebel", "import_generic",
]
