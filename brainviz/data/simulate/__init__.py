"""The simulated default experiment: a principled simulation with known ground truth.

Real corpora (Wehbe et al. 2014 / Schwartz et al. 2019 reading, Narratives listening) cannot
be downloaded here, so brainviz ships a generator that turns its three packaged stories into
two complete datasets whose every planted effect is written down beside the data. Every
analysis in brainviz (encoding, brain-tuning, 20-vs-20, FDR maps, AN-BN coupling) can
therefore be checked against the truth. ``docs/simulation.md`` describes the model in detail.

The package follows the generative steps, one module each:

=====================  ===============================================================
:mod:`.config`         presets, constants, :class:`SimulationConfig`
:mod:`.stimulus`       stories, runs, RSVP / spoken-word timing, TR grid (step 0)
:mod:`.lexicon`        spaCy parse, the packaged ``lexicon.json``, per-word table (1)
:mod:`.drivers`        readable and brain-specific drivers, HRF (2-3)
:mod:`.space`          planted regions, listening networks, smooth fields (4-5)
:mod:`.fmri`           participants, gains, measured SNR (6)
:mod:`.noise`          AR(1) + structured fMRI noise (7)
:mod:`.meg`            MEG epochs (reading)
:mod:`.build`          orchestration, ground-truth files, atomic saving
:mod:`.ground_truth`   :func:`load_ground_truth`
=====================  ===============================================================

Two components are planted in every language region:

- **readable**: recency-weighted sums over the 10.1 s word window of word-level features that
  pretrained token representations encode linearly (four lexicon-derived semantic
  dimensions, content-word length and log frequency, listening word rate) -- what an encoding
  model on a pretrained LM can recover;
- **brain-specific**: nonlinear functions of the same window (syntactic depth, transitive
  clause, within-window repetition, semantic coherence, rare and long words), orthogonal to a
  linear lexical basis (the readable drivers and counts of words, content words and each
  lexicon category) -- learnable from the window's words but not a linear read-out of
  word-level features (for brain-tuning).

Listening also plants functional networks that follow raw category presences (component
``network``). ``ground_truth/`` says which driver belongs to which component and which
vertices carry each (``readable_mask``, ``specific_mask``, ``readable_r2``, ``specific_r2``).

Examples
--------
>>> from brainviz.data.simulate import SimulationConfig, simulate
>>> paths = simulate("/tmp/sim", SimulationConfig(preset="small"))   # doctest: +SKIP
>>> paths["reading"]                                                    # doctest: +SKIP
PosixPath('/tmp/sim/reading')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brainviz.data.simulate._util import _rng  # noqa: F401 - kept importable from the old module
from brainviz.data.simulate.build import _run, simulate
from brainviz.data.simulate.config import (
    EXPERIMENTS, GROUND_TRUTH_DIR, GROUND_TRUTH_JSON, N_VERTICES, PRESETS, SIMULATOR_VERSION, ProgressFn,
    SimulationConfig,
)
from brainviz.data.simulate.drivers import (
    NETWORK, READABLE, SEMANTIC_DIMS, SPECIFIC, _word_arrays, driver_specs, neural_drivers, orthogonalize,  # noqa: F401
)
from brainviz.data.simulate.ground_truth import _complete, load_ground_truth
from brainviz.data.simulate.lexicon import (
    CATEGORIES, category_coverage, load_lexicon, parse_words, word_category, word_features,
)
from brainviz.data.simulate.meg import MEG_COMPONENTS, meg_sensor_names
from brainviz.data.simulate.space import LANGUAGE_REGIONS, NETWORK_SPECS
from brainviz.data.simulate.stimulus import read_story

DEFAULT_CONFIG = SimulationConfig()  # what ensure_default_dataset builds (default preset, seed 0)


def ensure_default_dataset(progress: ProgressFn | None = None) -> dict[str, Path]:
    """Build the default preset (seed 0) into :func:`brainviz.paths.default_dataset_dir` if missing.

    Safe to call from several processes at once: building happens under a file lock and the
    datasets appear atomically; a caller that waited finds them complete and returns.
    """
    from brainviz import paths
    from brainviz.cache import Cache

    root = paths.default_dataset_dir()
    targets = {e: root / e for e in EXPERIMENTS}
    if all(_complete(p) for p in targets.values()):
        if progress is not None:
            progress(1.0, "default dataset ready")
        return targets
    with Cache(paths.cache_dir()).lock("datasets", root.name):
        missing = [e for e, p in targets.items() if not _complete(p)]
        if missing:
            _run(root, DEFAULT_CONFIG, missing, progress, overwrite=True)
        elif progress is not None:
            progress(1.0, "default dataset ready")
    return targets


def __getattr__(name: str) -> Any:  # the lexicon-backed constants load lazily (no import-time file reads)
    if name in ("CATEGORY_LEXICON", "CATEGORY_POS", "CATEGORY_ORDER"):
        from brainviz.data.simulate import lexicon

        return getattr(lexicon, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SimulationConfig", "simulate", "ensure_default_dataset", "load_ground_truth", "PRESETS",
    "CATEGORY_LEXICON", "CATEGORIES", "LANGUAGE_REGIONS", "NETWORK_SPECS", "word_category",
    "word_features", "neural_drivers", "meg_sensor_names", "read_story", "parse_words",
    "driver_specs", "orthogonalize", "category_coverage", "load_lexicon", "SEMANTIC_DIMS",
    "READABLE", "SPECIFIC", "NETWORK", "MEG_COMPONENTS", "SIMULATOR_VERSION", "EXPERIMENTS", "N_VERTICES",
    "GROUND_TRUTH_DIR", "GROUND_TRUTH_JSON", "DEFAULT_CONFIG",
]
