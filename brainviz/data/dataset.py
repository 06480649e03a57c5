"""The dataset model: one experiment = stimulus + participants + recordings.

On disk a dataset is a folder::

    dataset.json              manifest (schema version, metadata, space, participants, files)
    stimulus.tsv              one row per word: onset, duration, word, run, story [, pos, ...]
    fmri/<participant>.npy    float32, TRs x units
    meg/<participant>.npy     float32, words x sensors x time bins
    space/coords.npy          (volume space only) voxel indices i, j, k per unit
    ground_truth/             (simulated datasets only) planted maps and drivers

Times: word onsets and TR acquisition times are in seconds on the clock of their run
(``run`` column / ``runs`` manifest entry): TR ``i`` of a run starts at ``start + i * tr``.
Arrays are memory-mapped on load, so opening a large dataset is cheap.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from brainviz._io import NPY_ERRORS, atomic_dir, check_label, check_safe_id, confined, npy_header
from brainviz.errors import DatasetError

SCHEMA_VERSION = 1
MANIFEST = "dataset.json"
STIMULUS = "stimulus.tsv"
SPACE_KINDS = ("fsaverage5", "volume", "rois")
N_VERTICES_FSAVERAGE5 = 20484  # 10,242 per hemisphere, left first
MODALITIES = ("reading", "listening")
STIMULUS_COLUMNS = ("onset", "duration", "word", "run", "story")
MAX_MANIFEST_BYTES = 256 << 20  # a manifest is metadata; anything larger is not one
MAX_GRID_VOXELS = 1 << 30  # volume grids (x * y * z) larger than this are refused
# a field the old writer quoted (it contained a '"', doubled inside): unquoted on reading
_LEGACY_QUOTED = re.compile(r'^"((?:[^"]|"")*""(?:[^"]|"")*)"$')


# --------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Space:
    """Where the units of an fMRI array live.

    kind : 'fsaverage5' (20,484 vertices, left hemisphere first), 'volume' (voxels of a grid
    with ``affine`` mapping voxel indices to mm, ``coords`` the i, j, k of each unit and
    ``template`` 'MNI' or 'native'), or 'rois' (one unit per named region).
    """

    kind: str
    template: str | None = None
    affine: np.ndarray | None = None
    shape: tuple[int, int, int] | None = None
    coords: np.ndarray | None = None
    roi_names: list[str] | None = None

    @property
    def n_units(self) -> int | None:
        if self.kind == "fsaverage5":
            return N_VERTICES_FSAVERAGE5
        if self.kind == "volume" and self.coords is not None:
            return int(self.coords.shape[0])
        if self.kind == "rois" and self.roi_names is not None:
            return len(self.roi_names)
        return None

    def mni_coordinates(self) -> np.ndarray:
        """Millimetre coordinates of each voxel (volume space only)."""
        if self.kind != "volume" or self.affine is None or self.coords is None:
            raise DatasetError("only volume spaces with an affine have voxel coordinates", field="space")
        ijk1 = np.c_[self.coords, np.ones(len(self.coords))]
        return (ijk1 @ np.asarray(self.affine).T)[:, :3]

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.template is not None:
            out["template"] = self.template
        if self.affine is not None:
            out["affine"] = np.asarray(self.affine, dtype=float).tolist()
        if self.shape is not None:
            out["shape"] = [int(s) for s in self.shape]
        if self.coords is not None:
            out["coords_file"] = "space/coords.npy"
        if self.roi_names is not None:
            out["roi_names"] = list(self.roi_names)
        return out

    @classmethod
    def from_manifest(cls, entry: Any, root: Path) -> "Space":
        mf = root / MANIFEST
        if not isinstance(entry, dict) or "kind" not in entry:
            raise DatasetError("must be an object with a 'kind'", file=mf, field="space")
        kind = entry["kind"]
        if kind not in SPACE_KINDS:
            raise DatasetError(f"unknown space {kind!r}; expected one of {SPACE_KINDS}", file=mf, field="space.kind")
        template = entry.get("template")
        if template is not None and not isinstance(template, str):
            raise DatasetError(f"must be a string, got {template!r}", file=mf, field="space.template")
        space = cls(kind=kind, template=template)
        if kind == "volume":
            for key in ("affine", "shape", "coords_file"):
                if key not in entry:
                    raise DatasetError("volume spaces need it", file=mf, field=f"space.{key}")
            try:
                affine = np.asarray(entry["affine"], dtype=float)
            except (TypeError, ValueError):
                raise DatasetError(f"must be a finite 4 x 4 matrix of numbers, got {entry['affine']!r:.80}", file=mf, field="space.affine") from None
            if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
                raise DatasetError("must be a finite 4 x 4 matrix", file=mf, field="space.affine")
            space.affine = affine
            shape = entry["shape"]
            if not isinstance(shape, list) or len(shape) != 3:
                raise DatasetError(f"must be a list of 3 grid sizes, got {shape!r:.80}", file=mf, field="space.shape")
            space.shape = tuple(_integer(s, mf, "space.shape") for s in shape)
            if min(space.shape) < 1 or int(np.prod(space.shape, dtype=object)) > MAX_GRID_VOXELS:
                raise DatasetError(f"grid sizes must be >= 1 with at most {MAX_GRID_VOXELS} voxels, got {space.shape}", file=mf, field="space.shape")
            coords_path = confined(root, entry["coords_file"], file=mf, field="space.coords_file")
            coords = _load_array(coords_path, "space.coords_file", mmap=False)
            if coords.ndim != 2 or coords.shape[1] != 3 or not np.issubdtype(coords.dtype, np.integer):
                raise DatasetError("must be an integer array of shape (n_units, 3)", file=coords_path, field="coords")
            if coords.min(initial=0) < 0 or np.any(coords.max(axis=0, initial=0) >= np.asarray(space.shape)):
                raise DatasetError(f"voxel indices outside the grid {space.shape}", file=coords_path, field="coords")
            space.coords = coords
        elif kind == "rois":
            names = entry.get("roi_names")
            if not isinstance(names, list) or not names:
                raise DatasetError("'rois' spaces need a non-empty list of names", file=mf, field="space.roi_names")
            space.roi_names = [str(n) for n in names]
        return space


@dataclasses.dataclass
class Run:
    """One fMRI run (or story) in a recording: its label, number of TRs and first-TR time."""

    name: str
    n_trs: int
    start: float = 0.0


@dataclasses.dataclass
class FMRIRecording:
    """fMRI of one participant: ``data`` is float32 (TRs x units)."""

    participant: str
    data: np.ndarray
    tr: float
    runs: list[Run]
    space: Space

    @property
    def run_labels(self) -> np.ndarray:
        """Run label of every TR (shape ``(n_trs,)``)."""
        return np.concatenate([np.full(r.n_trs, r.name, dtype=object) for r in self.runs]) if self.runs else np.array([], dtype=object)

    @property
    def times(self) -> np.ndarray:
        """Acquisition time (s) of every TR on its run's clock."""
        return np.concatenate([r.start + self.tr * np.arange(r.n_trs) for r in self.runs]) if self.runs else np.array([])

    @property
    def n_units(self) -> int:
        return int(self.data.shape[1])


@dataclasses.dataclass
class MEGRecording:
    """MEG of one participant: ``data`` is float32 (words x sensors x time bins).

    ``word_index`` gives the stimulus row of each epoch.
    """

    participant: str
    data: np.ndarray
    bin_width: float
    sensors: list[str]
    word_index: np.ndarray


@dataclasses.dataclass
class DatasetMeta:
    name: str
    simulated: bool
    modality: str = "reading"
    source: str = ""
    licence: str = ""
    citation: str = ""
    description: str = ""


# --------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------


class Dataset:
    """A loaded (or freshly built) experiment.

    Parameters
    ----------
    meta : DatasetMeta
    stimulus : pandas.DataFrame
        One row per word with at least ``onset, duration, word, run, story``.
    fmri : dict of participant id -> FMRIRecording
    meg : dict of participant id -> MEGRecording
    path : Path, optional
        Folder the dataset was loaded from.
    """

    def __init__(
        self,
        meta: DatasetMeta,
        stimulus: pd.DataFrame,
        fmri: dict[str, FMRIRecording] | None = None,
        meg: dict[str, MEGRecording] | None = None,
        path: Path | None = None,
        audio: dict[str, Any] | None = None,
    ):
        self.meta = meta
        self.stimulus = stimulus.reset_index(drop=True)
        self.fmri = dict(fmri or {})
        self.meg = dict(meg or {})
        self.path = Path(path) if path is not None else None
        # run -> brainviz.data.audio.AudioTrack (listening datasets with sound; issue 15)
        self.audio = dict(audio or {})

    # -- convenience ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def simulated(self) -> bool:
        return self.meta.simulated

    @property
    def participants(self) -> list[str]:
        """fMRI participant ids."""
        return list(self.fmri)

    @property
    def meg_participants(self) -> list[str]:
        return list(self.meg)

    @property
    def tr(self) -> float | None:
        trs = {rec.tr for rec in self.fmri.values()}
        return trs.pop() if len(trs) == 1 else None

    @property
    def runs(self) -> list[str]:
        """Run labels in order of first appearance in the stimulus."""
        return list(dict.fromkeys(self.stimulus["run"].astype(str)))

    @property
    def stories(self) -> list[str]:
        return list(dict.fromkeys(self.stimulus["story"].astype(str)))

    def fmri_of(self, participant: str) -> FMRIRecording:
        if participant not in self.fmri:
            raise DatasetError(
                f"unknown participant {participant!r}; fMRI participants are {self.participants}",
                file=self.path, field="participants",
            )
        return self.fmri[participant]

    def meg_of(self, participant: str) -> MEGRecording:
        if participant not in self.meg:
            raise DatasetError(
                f"unknown MEG participant {participant!r}; MEG participants are {self.meg_participants}",
                file=self.path, field="meg_participants",
            )
        return self.meg[participant]

    def ground_truth_dir(self) -> Path | None:
        """Folder with the planted ground truth (simulated datasets saved to disk only)."""
        if self.path is None:
            return None
        gt = self.path / "ground_truth"
        return gt if gt.is_dir() else None

    def content_hash(self) -> str:
        """Content hash of the dataset (manifest, stimulus and every array's bytes).

        For a saved dataset each array file is hashed once and memoised in the cache by
        (path, size, mtime), so repeated calls are cheap. Use it in cache keys and run cards.
        """
        from brainviz._io import content_hash

        parts: list[Any] = [dataclasses.asdict(self.meta), self.stimulus.to_csv(sep="\t", index=False)]
        if self.path is not None and (self.path / MANIFEST).is_file():
            from brainviz.cache import cached_file_hash

            parts.append((self.path / MANIFEST).read_text())
            for sub in ("fmri", "meg"):
                for pid in sorted(getattr(self, sub)):
                    parts.append([sub, pid, cached_file_hash(self.path / sub / f"{pid}.npy")])
        else:
            for pid, rec in sorted(self.fmri.items()):
                parts.append(["fmri", pid, rec.tr, [dataclasses.asdict(r) for r in rec.runs], rec.space.to_manifest(), np.asarray(rec.data)])
            for pid, rec in sorted(self.meg.items()):
                parts.append(["meg", pid, rec.bin_width, list(rec.sensors), np.asarray(rec.word_index), np.asarray(rec.data)])
        if self.audio:  # issue 15: the sound is part of the stimulus
            from brainviz.data.audio import audio_file_hashes

            parts.extend(audio_file_hashes(self.audio))
        return content_hash(*parts)

    def summary(self) -> dict[str, Any]:
        spaces = {rec.space.kind for rec in self.fmri.values()}
        n_units = sorted({rec.n_units for rec in self.fmri.values()})
        return {
            "name": self.name,
            "simulated": self.simulated,
            "modality": self.meta.modality,
            "participants": self.participants,
            "meg_participants": self.meg_participants,
            "n_fmri_participants": len(self.fmri),
            "n_meg_participants": len(self.meg),
            "n_runs": len(self.runs),
            "tr": self.tr,
            "space": spaces.pop() if len(spaces) == 1 else sorted(spaces) or None,
            "n_units": n_units[0] if len(n_units) == 1 else n_units or None,
            "n_words": int(len(self.stimulus)),
            "stories": self.stories,
        }

    # -- validation -------------------------------------------------------------------
    def validate(self, check_values: bool = True) -> None:
        """Check internal consistency; raise :class:`DatasetError` naming the field."""
        where = (self.path / MANIFEST) if self.path else None
        stim_file = (self.path / STIMULUS) if self.path else "stimulus"
        _validate_stimulus(self.stimulus, stim_file)
        for kind, recs in (("fmri", self.fmri), ("meg", self.meg)):
            for pid in recs:
                check_safe_id(pid, file=where, field=f"participants.{kind}")
        if self.meta.modality not in MODALITIES:
            raise DatasetError(f"unknown modality {self.meta.modality!r}; expected {MODALITIES}", file=where, field="modality")
        if not self.fmri and not self.meg:
            raise DatasetError("a dataset needs at least one fMRI or MEG participant", file=where, field="participants")
        stim_runs = set(self.stimulus["run"].astype(str))
        for pid, rec in self.fmri.items():
            f = (self.path / "fmri" / f"{pid}.npy") if self.path else f"fmri[{pid}]"
            _validate_fmri(rec, f, where, stim_runs, check_values)
        n_words = len(self.stimulus)
        for pid, rec in self.meg.items():
            f = (self.path / "meg" / f"{pid}.npy") if self.path else f"meg[{pid}]"
            _validate_meg(rec, f, where, n_words, check_values)
        if self.audio:  # issue 15
            from brainviz.data.audio import validate_tracks

            validate_tracks(self.audio, self.stimulus, where)

    # -- saving -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the dataset folder atomically (temp folder + rename); return its path."""
        self.validate(check_values=True)
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            (tmp / "fmri").mkdir()
            participants: dict[str, Any] = {"fmri": {}, "meg": {}}
            spaces = {}
            for pid, rec in self.fmri.items():
                rel = f"fmri/{pid}.npy"
                np.save(tmp / rel, np.ascontiguousarray(rec.data, dtype=np.float32), allow_pickle=False)
                spaces[pid] = rec.space
                participants["fmri"][pid] = {
                    "file": rel,
                    "shape": list(rec.data.shape),
                    "tr": float(rec.tr),
                    "runs": [{"name": r.name, "n_trs": int(r.n_trs), "start": float(r.start)} for r in rec.runs],
                }
            space_entry = None
            if spaces:
                first = next(iter(spaces.values()))
                space_entry = first.to_manifest()
                if first.coords is not None:
                    (tmp / "space").mkdir()
                    np.save(tmp / "space" / "coords.npy", np.asarray(first.coords), allow_pickle=False)
                for pid, sp in spaces.items():
                    if sp.to_manifest() != space_entry or (
                        sp.coords is not None and not np.array_equal(sp.coords, first.coords)
                    ):
                        raise DatasetError(
                            "all fMRI participants of one dataset must share a space; split native-space data into one dataset per participant",
                            field=f"participants.fmri.{pid}.space",
                        )
            if self.meg:
                (tmp / "meg").mkdir()
            for pid, rec in self.meg.items():
                rel = f"meg/{pid}.npy"
                np.save(tmp / rel, np.ascontiguousarray(rec.data, dtype=np.float32), allow_pickle=False)
                participants["meg"][pid] = {
                    "file": rel,
                    "shape": list(rec.data.shape),
                    "bin_width": float(rec.bin_width),
                    "sensors": list(rec.sensors),
                    "word_index": np.asarray(rec.word_index, dtype=int).tolist(),
                }
            _write_stimulus(self.stimulus, tmp / STIMULUS)
            manifest = {
                "schema_version": SCHEMA_VERSION,
                **dataclasses.asdict(self.meta),
                "stimulus": STIMULUS,
                "space": space_entry,
                "participants": participants,
            }
            if self.audio:  # issue 15: one 16 kHz mono FLAC per run under audio/
                from brainviz.data.audio import write_tracks

                manifest["audio"] = write_tracks(tmp, self.audio)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if self.path is not None and (self.path / "ground_truth").is_dir() and self.path.resolve() != path.resolve():
                import shutil

                shutil.copytree(self.path / "ground_truth", tmp / "ground_truth")
        self.path = path
        return path


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_dataset(path: str | os.PathLike, *, check_values: bool = True, mmap: bool = True) -> Dataset:
    """Load and validate a dataset folder.

    Parameters
    ----------
    path : path
        Folder containing ``dataset.json``.
    check_values : bool
        Also scan every array for NaN/inf (reads all data once).
    mmap : bool
        Memory-map the arrays instead of reading them into memory.

    Raises
    ------
    DatasetError
        With the offending file and field in the message. Participant ids must be safe file
        names, run and story names must not contain path separators, and every path in the
        manifest must stay inside the dataset folder.
    """
    root = Path(path)
    mf = root / MANIFEST
    if not root.is_dir():
        raise DatasetError("dataset folder not found", file=root)
    if not mf.is_file():
        raise DatasetError("manifest missing (is this a brainviz dataset folder?)", file=mf)
    if mf.stat().st_size > MAX_MANIFEST_BYTES:
        raise DatasetError(f"manifest larger than {MAX_MANIFEST_BYTES >> 20} MB", file=mf)
    try:
        manifest = json.loads(mf.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc})", file=mf) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"not valid JSON ({exc})", file=mf) from None
    if not isinstance(manifest, dict):
        raise DatasetError("must be a JSON object", file=mf)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"unsupported schema version {version!r} (this brainviz reads {SCHEMA_VERSION})", file=mf, field="schema_version")
    for key in ("name", "simulated", "participants"):
        if key not in manifest:
            raise DatasetError("required field missing", file=mf, field=key)
    if not isinstance(manifest["simulated"], bool):
        raise DatasetError("must be true or false", file=mf, field="simulated")
    for f in dataclasses.fields(DatasetMeta):
        if f.name in manifest and f.name != "simulated" and not isinstance(manifest[f.name], str):
            raise DatasetError(f"must be a string, got {manifest[f.name]!r}", file=mf, field=f.name)
    meta = DatasetMeta(**{f.name: manifest[f.name] for f in dataclasses.fields(DatasetMeta) if f.name in manifest})

    stim_path = confined(root, manifest.get("stimulus", STIMULUS), file=mf, field="stimulus")
    stimulus = _read_stimulus(stim_path)

    parts = manifest["participants"]
    if not isinstance(parts, dict):
        raise DatasetError("must be an object with 'fmri' and 'meg'", file=mf, field="participants")
    for kind in ("fmri", "meg"):
        if parts.get(kind) is not None and not isinstance(parts[kind], dict):
            raise DatasetError("must be an object {participant id: entry}", file=mf, field=f"participants.{kind}")
    fmri: dict[str, FMRIRecording] = {}
    if parts.get("fmri"):
        if manifest.get("space") is None:
            raise DatasetError("fMRI data needs a space", file=mf, field="space")
        space = Space.from_manifest(manifest["space"], root)
        for pid, entry in parts["fmri"].items():
            check_safe_id(pid, file=mf, field="participants.fmri")
            fld = f"participants.fmri.{pid}"
            _require(entry, ("file", "tr", "runs"), mf, fld)
            data = _load_array(confined(root, entry["file"], file=mf, field=f"{fld}.file"), f"{fld}.file", mmap=mmap)
            if not isinstance(entry["runs"], list):
                raise DatasetError("must be a list of {name, n_trs, start}", file=mf, field=f"{fld}.runs")
            runs = []
            for i, r in enumerate(entry["runs"]):
                _require(r, ("name", "n_trs"), mf, f"{fld}.runs[{i}]")
                runs.append(Run(
                    check_label(r["name"], file=mf, field=f"{fld}.runs[{i}].name"),
                    _integer(r["n_trs"], mf, f"{fld}.runs[{i}].n_trs"),
                    _number(r.get("start", 0.0), mf, f"{fld}.runs[{i}].start"),
                ))
            fmri[pid] = FMRIRecording(pid, data, _number(entry["tr"], mf, f"{fld}.tr"), runs, space)
    meg: dict[str, MEGRecording] = {}
    for pid, entry in (parts.get("meg") or {}).items():
        check_safe_id(pid, file=mf, field="participants.meg")
        fld = f"participants.meg.{pid}"
        _require(entry, ("file", "bin_width", "sensors"), mf, fld)
        data = _load_array(confined(root, entry["file"], file=mf, field=f"{fld}.file"), f"{fld}.file", mmap=mmap)
        if data.ndim < 1:
            raise DatasetError(f"must be 3-D (words x sensors x time bins), got shape {data.shape}", file=root / entry["file"], field="shape")
        if not isinstance(entry["sensors"], list):
            raise DatasetError("must be a list of sensor names", file=mf, field=f"{fld}.sensors")
        word_index = _int_array(entry.get("word_index", list(range(data.shape[0]))), mf, f"{fld}.word_index")
        meg[pid] = MEGRecording(pid, data, _number(entry["bin_width"], mf, f"{fld}.bin_width"),
                                [str(x) for x in entry["sensors"]], word_index)
    audio = None
    if manifest.get("audio") is not None:  # issue 15: optional; older datasets have none
        from brainviz.data.audio import tracks_from_manifest

        audio = tracks_from_manifest(manifest["audio"], root, mf)
    ds = Dataset(meta, stimulus, fmri, meg, path=root, audio=audio)
    ds.validate(check_values=check_values)
    return ds


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _require(entry: Any, keys: Iterable[str], file: Path, field: str) -> None:
    if not isinstance(entry, dict):
        raise DatasetError("must be an object", file=file, field=field)
    for key in keys:
        if key not in entry:
            raise DatasetError("required field missing", file=file, field=f"{field}.{key}")


def _number(value: Any, file: Path, field: str) -> float:
    if isinstance(value, bool):
        raise DatasetError(f"must be a number, got {value!r}", file=file, field=field)
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"must be a number, got {value!r}", file=file, field=field) from None
    if not np.isfinite(out):
        raise DatasetError(f"must be a finite number, got {value!r}", file=file, field=field)
    return out


def _integer(value: Any, file: Path, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DatasetError(f"must be an integer, got {value!r}", file=file, field=field)
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"must be an integer, got {value!r}", file=file, field=field) from None
    if not np.isfinite(out) or out != int(out):
        raise DatasetError(f"must be an integer, got {value!r}", file=file, field=field)
    return int(out)


def _int_array(value: Any, file: Path, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"must be a list of integers ({exc})", file=file, field=field) from None
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise DatasetError("must be a list of integers", file=file, field=field)
    return arr.astype(np.int64)


def _load_array(path: Path, field: str, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DatasetError("array file missing", file=path, field=field)
    _, _, dtype = npy_header(path, field=field)  # sizes checked before anything is allocated
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise DatasetError(f"unreadable as numbers: dtype {dtype} (must be a plain numeric array; pickled objects are "
                           "never loaded)", file=path, field=field)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        # numpy says e.g. "cannot reshape array of size ..." or "Object arrays cannot be loaded"
        raise DatasetError(f"unreadable .npy file (truncated or not a plain numeric array: {exc})", file=path, field=field) from None
    except NPY_ERRORS as exc:
        raise DatasetError(f"unreadable .npy file ({exc})", file=path, field=field) from None


def _check_finite(data: np.ndarray, file: Any, field: str, chunk_rows: int = 256) -> None:
    for start in range(0, data.shape[0], chunk_rows):
        block = np.asarray(data[start : start + chunk_rows])
        bad = ~np.isfinite(block)
        if bad.any():
            idx = np.argwhere(bad)[0]
            idx[0] += start
            raise DatasetError(f"non-finite value (NaN or inf) at index {tuple(int(i) for i in idx)}", file=file, field=field)


def _validate_stimulus(stim: pd.DataFrame, file: Any) -> None:
    missing = [c for c in STIMULUS_COLUMNS if c not in stim.columns]
    if missing:
        raise DatasetError(f"missing column(s) {missing}; required: {list(STIMULUS_COLUMNS)}", file=file, field=missing[0])
    if len(stim) == 0:
        raise DatasetError("no words", file=file, field="word")
    for col in ("onset", "duration"):
        values = pd.to_numeric(stim[col], errors="coerce")
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"non-numeric, non-finite or missing value {stim[col].iloc[row]!r} in row {row + 1}", file=file, field=col)
    if (stim["duration"].astype(float) < 0).any():
        raise DatasetError("negative duration", file=file, field="duration")
    for run, group in stim.groupby(stim["run"].astype(str), sort=False):
        onsets = group["onset"].to_numpy(dtype=float)
        back = np.flatnonzero(np.diff(onsets) < 0)
        if back.size:
            row = int(group.index[back[0] + 1])
            raise DatasetError(f"words out of time order in run {run!r} at row {row + 1} (onset {onsets[back[0] + 1]} < {onsets[back[0]]})", file=file, field="onset")
    if stim["word"].isna().any():
        row = int(np.flatnonzero(stim["word"].isna().to_numpy())[0])
        raise DatasetError(f"empty word in row {row + 1}", file=file, field="word")
    for col in stim.columns:
        if not (stim[col].dtype == object or pd.api.types.is_string_dtype(stim[col].dtype)):
            continue
        text = stim[col].astype(str)
        bad = text.str.contains(r"[\t\n\r]", regex=True).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"tab or line break inside the value in row {row + 1} ({text.iloc[row][:40]!r}...)", file=file, field=str(col))
    for col, what in (("run", "run name"), ("story", "story name")):
        for label in dict.fromkeys(stim[col].astype(str)):
            check_label(label, file=file, field=col, what=what)


def _validate_fmri(rec: FMRIRecording, file: Any, manifest: Any, stim_runs: set[str], check_values: bool) -> None:
    fld = f"participants.fmri.{rec.participant}"
    if not (np.isfinite(rec.tr) and rec.tr > 0):
        raise DatasetError(f"TR must be a positive number of seconds, got {rec.tr}", file=manifest, field=f"{fld}.tr")
    if rec.data.dtype != np.float32:
        raise DatasetError(f"dtype must be float32, got {rec.data.dtype}", file=file, field="dtype")
    if rec.data.ndim != 2:
        raise DatasetError(f"must be 2-D (TRs x units), got shape {rec.data.shape}", file=file, field="shape")
    expected_units = rec.space.n_units
    if expected_units is not None and rec.data.shape[1] != expected_units:
        raise DatasetError(f"has {rec.data.shape[1]} units but space '{rec.space.kind}' has {expected_units}", file=file, field="shape")
    if not rec.runs:
        raise DatasetError("no runs", file=manifest, field=f"{fld}.runs")
    names = [check_label(r.name, file=manifest, field=f"{fld}.runs") for r in rec.runs]
    if len(set(names)) != len(names):
        raise DatasetError(f"duplicate run names {names}", file=manifest, field=f"{fld}.runs")
    for r in rec.runs:
        if r.n_trs <= 0:
            raise DatasetError(f"run {r.name!r} is empty (n_trs = {r.n_trs})", file=manifest, field=f"{fld}.runs")
        if r.name not in stim_runs:
            raise DatasetError(f"run {r.name!r} has no words in the stimulus (runs there: {sorted(stim_runs)})", file=manifest, field=f"{fld}.runs")
    total = sum(r.n_trs for r in rec.runs)
    if total != rec.data.shape[0]:
        raise DatasetError(f"runs add up to {total} TRs but the array has {rec.data.shape[0]} rows", file=file, field="shape")
    if check_values:
        _check_finite(rec.data, file, "data")


def _validate_meg(rec: MEGRecording, file: Any, manifest: Any, n_words: int, check_values: bool) -> None:
    fld = f"participants.meg.{rec.participant}"
    if rec.data.dtype != np.float32:
        raise DatasetError(f"dtype must be float32, got {rec.data.dtype}", file=file, field="dtype")
    if rec.data.ndim != 3:
        raise DatasetError(f"must be 3-D (words x sensors x time bins), got shape {rec.data.shape}", file=file, field="shape")
    if not (np.isfinite(rec.bin_width) and rec.bin_width > 0):
        raise DatasetError(f"must be positive, got {rec.bin_width}", file=manifest, field=f"{fld}.bin_width")
    if len(rec.sensors) != rec.data.shape[1]:
        raise DatasetError(f"{len(rec.sensors)} sensor names for {rec.data.shape[1]} sensors", file=manifest, field=f"{fld}.sensors")
    wi = np.asarray(rec.word_index)
    if wi.shape != (rec.data.shape[0],):
        raise DatasetError(f"{wi.shape[0]} word indices for {rec.data.shape[0]} epochs", file=manifest, field=f"{fld}.word_index")
    if wi.size and (wi.min() < 0 or wi.max() >= n_words):
        raise DatasetError(f"word indices must lie in [0, {n_words})", file=manifest, field=f"{fld}.word_index")
    if check_values:
        _check_finite(rec.data, file, "data")


def _read_stimulus(path: Path) -> pd.DataFrame:
    """Read ``stimulus.tsv``: tab-separated, quotes are ordinary characters (``"So,`` is a word).

    Fields written by older brainviz versions, which quoted fields holding a ``"``, are unquoted.
    """
    if not path.is_file():
        raise DatasetError("stimulus table missing", file=path)
    try:
        stim = pd.read_csv(path, sep="\t", dtype={"word": str, "run": str, "story": str}, keep_default_na=False,
                           na_values={"onset": [""], "duration": [""]}, quoting=csv.QUOTE_NONE, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"empty file: a header ({', '.join(STIMULUS_COLUMNS)}) and one row per word are required", file=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"not a readable UTF-8 TSV ({exc})", file=path) from None
    for col in stim.columns:
        if stim[col].dtype == object or pd.api.types.is_string_dtype(stim[col].dtype):
            stim[col] = stim[col].map(_unquote_legacy)
    _validate_stimulus(stim, path)
    stim["onset"] = stim["onset"].astype(float)
    stim["duration"] = stim["duration"].astype(float)
    return stim


def _unquote_legacy(value: Any) -> Any:
    if isinstance(value, str) and value.startswith('"'):
        m = _LEGACY_QUOTED.match(value)
        if m:
            return m.group(1).replace('""', '"')
    return value


def _write_stimulus(stim: pd.DataFrame, path: Path) -> None:
    # no quoting: a '"' is an ordinary character (validate() refuses tabs and line breaks in values)
    stim.to_csv(path, sep="\t", index=False, float_format="%.10g", lineterminator="\n", quoting=csv.QUOTE_NONE)
