"""Harry Potter chapter-reading data (Wehbe et al. 2014): fMRI ``.mat`` release, the later
``.npy`` layout, and the MEG ``.npz``.

Conventions (documented in ``docs/formats.md``)
-----------------------------------------------
* Runs are named ``run1`` ... ``run4`` (``time`` column 2 / ``runs_fmri.npy``); the story is
  ``harry-potter-ch1``.
* Clocks: the release gives TR start times and word onsets on one experiment clock. brainviz
  rebases every run to its own clock whose zero is the run's first acquired TR: word onset =
  ``start - time[first TR of the run]`` and ``Run.start = 0`` (or ``20 * TR`` for the ``.npy``
  layout whose first 20 TRs of each run were already removed).
* ``'+'`` tokens are fixation crosses, not words, and are dropped; ``@`` (italics marker) is
  removed from words. Word durations are the release's ``length`` (``.mat``) or 0.5 s (RSVP
  rate, ``.npy``).
* Voxel coordinates: ``meta.colToCoord`` is 1-based (MATLAB) and ``meta.matrix`` maps 1-based
  voxel indices to MNI mm: ``mni = matrix @ [i1, j1, k1, 1]``. brainviz stores 0-based indices
  ``ijk0 = colToCoord - 1`` and the adjusted affine ``A0 = matrix @ T(+1)`` (``T(+1)``
  translates by one voxel on each axis), so ``A0 @ [ijk0, 1] == matrix @ [ijk1, 1]``.
* Every subject has its own voxel set, and a brainviz dataset has one shared space, so the
  ``.mat`` importer writes one dataset per participant under ``--out`` (``collection.json``
  lists them). ``layout='intersect'`` instead writes a single multi-participant dataset on the
  voxels common to all subjects (requires identical grids and affines).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from brainviz.data.dataset import Dataset, DatasetError, FMRIRecording, MEGRecording, Run, Space
from brainviz.errors import OutputExistsError
from brainviz.data.importers._common import (
    ImportResult,
    NpzMember,
    WorkDir,
    as_float32_rows,
    check_finite,
    check_participant_id,
    load_npy,
    meta_for,
    npz_keys,
    npz_strings,
    save_collection,
    save_dataset,
    select,
)

STORY = "harry-potter-ch1"
FIXATION = "+"
RSVP_DURATION = 0.5  # seconds per word on screen
EDGE_TRS = (20, 15)  # TRs removed from each run's start / end in the .npy layout
MEG_BIN_WIDTH = 0.025  # 25 ms bins (Schwartz et al. 2019: 306 sensors x 20 bins per word)
_TOL = 1e-3

Progress = Callable[[str], None] | None


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def clean_text(text: str) -> str:
    """Word as the model sees it: ``@`` italics markers removed, whitespace stripped."""
    return str(text).replace("@", "").strip()


# --------------------------------------------------------------------------------------
# Stimulus and runs from TR times
# --------------------------------------------------------------------------------------


def _runs_from_times(times: np.ndarray, runs: np.ndarray, file: Any, field_time: str, field_run: str):
    """Check TR times/run labels; return (tr, [(label, first_index, n)], run_start_times)."""
    times = np.asarray(times, dtype=float).reshape(-1)
    runs = np.asarray(runs).reshape(-1)
    if times.size == 0:
        raise DatasetError("no TRs", file=file, field=field_time)
    if not np.all(np.isfinite(times)):
        raise DatasetError("non-finite TR time", file=file, field=field_time)
    try:
        run_num = runs.astype(float)
    except (TypeError, ValueError):
        raise DatasetError("run labels must be numbers", file=file, field=field_run) from None
    if not np.all(np.isfinite(run_num)) or np.any(run_num != np.round(run_num)):
        raise DatasetError("run labels must be integers", file=file, field=field_run)
    run_num = run_num.astype(int)
    change = np.flatnonzero(np.diff(run_num) != 0) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, run_num.size]
    labels = run_num[starts]
    if len(set(labels.tolist())) != len(labels):
        raise DatasetError(f"the TRs of each run must be contiguous; run order is {labels.tolist()}", file=file, field=field_run)
    diffs = np.concatenate([np.diff(times[s:e]) for s, e in zip(starts, ends)])
    if diffs.size == 0:
        raise DatasetError("runs need at least 2 TRs to define the TR", file=file, field=field_time)
    tr = float(np.median(diffs))
    if not tr > 0:
        raise DatasetError(f"TR times must increase (median step {tr})", file=file, field=field_time)
    for lab, s, e in zip(labels, starts, ends):
        step = np.diff(times[s:e])
        if step.size and np.max(np.abs(step - tr)) > _TOL * tr + 1e-6:
            bad = int(np.argmax(np.abs(step - tr)))
            raise DatasetError(
                f"TR times of run {lab} are not evenly spaced (step {step[bad]:.4f} s at TR {s + bad + 1}, TR {tr:.4f} s)",
                file=file, field=field_time,
            )
    segs = [(f"run{lab}", int(s), int(e - s)) for lab, s, e in zip(labels, starts, ends)]
    return tr, segs, times[starts]


def build_stimulus(
    texts: Sequence[str], starts: np.ndarray, durations: np.ndarray, segs, run_t0: np.ndarray, tr: float,
    file: Any, field: str,
) -> pd.DataFrame:
    """Words (fixations dropped) assigned to the run whose TRs cover their onset, on run clocks."""
    starts = np.asarray(starts, dtype=float)
    durations = np.asarray(durations, dtype=float)
    if len(texts) != starts.size or durations.size != starts.size:
        raise DatasetError(f"{len(texts)} words but {starts.size} onsets and {durations.size} durations", file=file, field=field)
    if not np.all(np.isfinite(starts)):
        raise DatasetError("non-finite word onset", file=file, field=field)
    keep = np.array([clean_text(t) not in ("", FIXATION) for t in texts], dtype=bool)
    if not keep.any():
        raise DatasetError("no words left after removing '+' fixations", file=file, field=field)
    back = np.flatnonzero(np.diff(starts[keep]) < 0)
    if back.size:
        raise DatasetError(f"word onsets out of time order at word {int(np.flatnonzero(keep)[back[0] + 1]) + 1}", file=file, field=field)
    run_of = np.full(starts.size, -1)
    for r, ((_, _, n), t0) in enumerate(zip(segs, run_t0)):
        inside = (starts >= t0 - 1e-6) & (starts < t0 + n * tr - 1e-6)
        run_of[inside & (run_of < 0)] = r
    outside = np.flatnonzero(keep & (run_of < 0))
    if outside.size:
        i = int(outside[0])
        raise DatasetError(
            f"{outside.size} word(s) fall outside every run, first {texts[i]!r} at {starts[i]:.2f} s "
            f"(runs cover {[(round(float(t0), 2), round(float(t0 + n * tr), 2)) for (_, _, n), t0 in zip(segs, run_t0)]})",
            file=file, field=field,
        )
    idx = np.flatnonzero(keep)
    return pd.DataFrame({
        "onset": starts[idx] - run_t0[run_of[idx]],
        "duration": durations[idx],
        "word": [clean_text(texts[i]) for i in idx],
        "run": [segs[run_of[i]][0] for i in idx],
        "story": STORY,
    })


# --------------------------------------------------------------------------------------
# .mat release
# --------------------------------------------------------------------------------------


def _mat_str(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("latin1")
    arr = np.asarray(x)
    if arr.size == 0:
        return ""
    if arr.dtype.kind in "US":
        return "".join(str(v) for v in arr.ravel())
    if arr.dtype == object:
        return _mat_str(arr.ravel()[0])
    raise TypeError(f"not text: {arr.dtype}")


def _mat_num(x: Any) -> float:
    arr = np.asarray(x, dtype=float).ravel()
    if arr.size != 1:
        raise TypeError(f"expected one number, got {arr.size}")
    return float(arr[0])


def _struct_field(s: np.ndarray, name: str, file: Path, var: str) -> Any:
    if s.dtype.names is None or name not in s.dtype.names:
        raise DatasetError(f"struct field missing (fields: {list(s.dtype.names or [])})", file=file, field=f"{var}.{name}")
    return s[name]


class MatSubject:
    """The small variables of one ``subject_N.mat`` (everything except ``data``), checked."""

    def __init__(self, path: Path):
        import scipy.io as sio

        from brainviz.data.importers._matlab import MatV5

        self.path = Path(path)
        self.index = MatV5(self.path)
        for var in ("data", "time", "words", "meta"):
            if var not in self.index.vars:
                raise DatasetError(f"variable missing (the file holds {sorted(self.index.vars)})", file=self.path, field=var)
        try:
            small = sio.loadmat(str(self.path), variable_names=["time", "words", "meta"], squeeze_me=False,
                                struct_as_record=True, chars_as_strings=True)
        except Exception as exc:  # scipy raises several types on corrupt files
            raise DatasetError(f"unreadable .mat file ({exc})", file=self.path) from None
        self.data = self.index.matrix("data")
        n_trs, n_vox = self.data.shape
        time = np.asarray(small["time"])
        if time.ndim != 2 or time.shape[1] != 2 or not np.issubdtype(time.dtype, np.number):
            raise DatasetError(f"must be a numeric (TRs x 2) array of TR start time and run, got shape {time.shape}", file=self.path, field="time")
        if time.shape[0] != n_trs:
            raise DatasetError(f"has {time.shape[0]} rows but data has {n_trs} TRs", file=self.path, field="time")
        self.tr, self.segs, self.run_t0 = _runs_from_times(time[:, 0], time[:, 1], self.path, "time", "time")

        meta_arr = small["meta"]
        if meta_arr.dtype.names is None or meta_arr.size != 1:
            raise DatasetError("must be a 1 x 1 struct", file=self.path, field="meta")
        meta = meta_arr.reshape(-1)[0]
        get = lambda k: np.asarray(_struct_field(meta_arr.reshape(-1), k, self.path, "meta")[0])  # noqa: E731
        try:
            dims = tuple(int(_mat_num(get(k))) for k in ("dimx", "dimy", "dimz"))
        except TypeError as exc:
            raise DatasetError(f"grid size must be numbers ({exc})", file=self.path, field="meta.dimx") from None
        coords1 = np.asarray(get("colToCoord"), dtype=float)
        if coords1.ndim != 2 or coords1.shape[1] != 3:
            raise DatasetError(f"must be (voxels x 3), got shape {coords1.shape}", file=self.path, field="meta.colToCoord")
        if coords1.shape[0] != n_vox:
            raise DatasetError(f"has {coords1.shape[0]} voxels but data has {n_vox} columns", file=self.path, field="meta.colToCoord")
        if not np.all(np.isfinite(coords1)) or np.any(coords1 != np.round(coords1)):
            raise DatasetError("voxel coordinates must be integers", file=self.path, field="meta.colToCoord")
        coords1 = coords1.astype(np.int64)
        if coords1.min() < 1 or np.any(coords1.max(axis=0) > np.asarray(dims)):
            raise DatasetError(f"1-based voxel coordinates outside the grid 1..{dims}", file=self.path, field="meta.colToCoord")
        if len({tuple(c) for c in coords1.tolist()}) != n_vox:
            raise DatasetError("duplicate voxel coordinates", file=self.path, field="meta.colToCoord")
        matrix = np.asarray(get("matrix"), dtype=float)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
            raise DatasetError(f"must be a finite, invertible 4 x 4 voxel-to-MNI matrix, got shape {matrix.shape}", file=self.path, field="meta.matrix")
        try:
            n_trs_meta = int(_mat_num(get("nTRs")))
        except TypeError:
            raise DatasetError("must be a number", file=self.path, field="meta.nTRs") from None
        if n_trs_meta != n_trs:
            raise DatasetError(f"says {n_trs_meta} TRs but data has {n_trs} rows", file=self.path, field="meta.nTRs")
        self.subject = meta["subject"] if "subject" in (meta_arr.dtype.names or ()) else None
        self.dims = dims
        self.matrix = matrix
        self.coords0 = coords1 - 1
        self.affine0 = matrix @ _shift(1.0)
        roi = None
        if "colToROInum" in meta_arr.dtype.names:
            r = np.asarray(get("colToROInum")).reshape(-1)
            if r.size == n_vox:
                roi = r.astype(int)
        self.roi_num = roi
        self.roi_names = None
        if "ROInumToName" in meta_arr.dtype.names:
            try:
                self.roi_names = [_mat_str(v) for v in np.asarray(get("ROInumToName")).reshape(-1)]
            except TypeError:
                self.roi_names = None

        words = small["words"]
        if words.dtype.names is None:
            raise DatasetError("must be a struct array with fields text, start, length", file=self.path, field="words")
        flat = words.reshape(-1)
        texts_f = _struct_field(flat, "text", self.path, "words")
        starts_f = _struct_field(flat, "start", self.path, "words")
        lengths_f = _struct_field(flat, "length", self.path, "words")
        try:
            self.texts = [_mat_str(t) for t in texts_f]
        except TypeError as exc:
            raise DatasetError(f"must hold text ({exc})", file=self.path, field="words.text") from None
        try:
            self.starts = np.array([_mat_num(s) for s in starts_f])
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"must hold one number per word ({exc})", file=self.path, field="words.start") from None
        try:
            self.lengths = np.array([_mat_num(s) for s in lengths_f])
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"must hold one number per word ({exc})", file=self.path, field="words.length") from None
        if np.any(~np.isfinite(self.lengths)) or np.any(self.lengths < 0):
            raise DatasetError("word durations must be finite and >= 0", file=self.path, field="words.length")
        self.stimulus = build_stimulus(self.texts, self.starts, self.lengths, self.segs, self.run_t0, self.tr, self.path, "words.start")

    def voxel_rois(self) -> pd.DataFrame | None:
        """AAL label of every voxel (``meta.colToROInum`` / ``ROInumToName``; 0 = not labelled,
        named by the list's last entry as in the release)."""
        if self.roi_num is None:
            return None
        names = self.roi_names or []

        def name(v: int) -> str:
            if not names:
                return ""
            if v == 0:
                return names[-1]
            return names[v - 1] if 1 <= v <= len(names) else ""

        return pd.DataFrame({"i": self.coords0[:, 0], "j": self.coords0[:, 1], "k": self.coords0[:, 2],
                             "aal_label": self.roi_num, "aal_name": [name(int(v)) for v in self.roi_num]})

    @property
    def runs(self) -> list[Run]:
        return [Run(name, n, 0.0) for name, _, n in self.segs]

    def space(self, coords0: np.ndarray | None = None) -> Space:
        return Space(kind="volume", template="MNI", affine=self.affine0, shape=self.dims,
                     coords=(self.coords0 if coords0 is None else coords0).astype(np.int64))

    def data_float32(self, work: WorkDir, name: str, cols: np.ndarray | None = None) -> np.ndarray:
        """``data`` (or some columns) as a float32 (TRs x voxels) memory map, streamed."""
        n_trs, n_vox = self.data.shape
        sel = np.arange(n_vox) if cols is None else np.asarray(cols)
        out = work.array(name, (n_trs, sel.size))
        pos_of = np.full(n_vox, -1)
        pos_of[sel] = np.arange(sel.size)
        block_cols = max(1, (16 << 20) // max(1, n_trs * 8))
        for c0, block in self.data.iter_columns(block_cols):
            k = block.shape[1]
            where = pos_of[c0:c0 + k]
            use = where >= 0
            if not use.any():
                continue
            b = block if use.all() else block[:, use]
            bad = ~np.isfinite(b)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                col = int(np.flatnonzero(use)[c]) + c0
                raise DatasetError(f"non-finite value (NaN or inf) at TR {int(r)}, voxel {col}", file=self.path, field="data")
            if cols is None:
                out[:, c0:c0 + k] = b
            else:
                out[:, where[use]] = b
        out.flush()
        return out


def _shift(d: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = d
    return t


def _subject_key(path: Path) -> str:
    m = re.match(r"subject_?(\w+)\.mat$", path.name, flags=re.I)
    return f"subject_{m.group(1)}" if m else path.stem


def _mat_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DatasetError("source not found (expected a folder of subject_N.mat files or one .mat file)", file=src)
    files = sorted(src.glob("subject_*.mat"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    if not files:
        files = sorted(src.glob("*.mat"))
        files = [f for f in files if f.name != "story_features.mat"]
    if not files:
        raise DatasetError("no subject_N.mat files found", file=src)
    return files


def import_harry_potter_mat(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    participants: Sequence[str] | None = None,
    layout: str = "per-participant",
    overwrite: bool = False,
    name: str | None = None,
    progress: Progress = None,
) -> ImportResult:
    """Import the Wehbe et al. 2014 ``subject_N.mat`` files.

    ``layout='per-participant'`` (default) writes ``out/subject_N/`` datasets (each subject has
    its own voxel set); ``layout='intersect'`` writes one dataset on the voxels all subjects
    share (identical grid and affine required).
    """
    src, out = Path(src), Path(out)
    if layout not in ("per-participant", "intersect"):
        raise DatasetError(f"unknown layout {layout!r}; expected 'per-participant' or 'intersect'", field="layout")
    files = _mat_files(src)
    keys = [_subject_key(f) for f in files]
    chosen = select(keys, participants, "participants", src,
                    aliases=lambda w: [f"subject_{w}", f"subject_{w.removeprefix('subject')}"])
    files = [f for f, k in zip(files, keys) if k in chosen]
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    base = name or "harry-potter"
    subjects = []
    for f in files:
        _say(progress, f"reading {f.name}")
        subjects.append((check_participant_id(_subject_key(f), f), MatSubject(f)))
    description = (
        "Harry Potter chapter 9 read word by word (RSVP, 0.5 s/word) during fMRI (Wehbe et al. 2014). "
        "Runs rebased to their first TR; '+' fixations dropped; 0-based voxel indices with affine = matrix @ T(+1)."
    )
    with WorkDir(out) as work:
        if layout == "per-participant":
            datasets = {}
            for pid, sub in subjects:
                _say(progress, f"converting {pid} ({sub.data.shape[0]} TRs x {sub.data.shape[1]} voxels)")
                data = sub.data_float32(work, pid)
                rec = FMRIRecording(pid, data, sub.tr, sub.runs, sub.space())
                meta = meta_for("harry-potter", f"{base}-{pid}", "reading", description)
                datasets[pid] = Dataset(meta, sub.stimulus, {pid: rec})
            extras = {pid: {"source/voxel_rois.tsv": sub.voxel_rois()} for pid, sub in subjects if sub.voxel_rois() is not None}
            return save_collection(
                datasets, out, overwrite, fmt="harry-potter-mat", extras=extras,
                note=("Each Harry Potter subject has its own voxel set (grey-matter mask), and a brainviz dataset has one "
                      "shared space, so every participant is a separate dataset. Use layout 'intersect' for one "
                      "multi-participant dataset on the voxels common to all subjects. Each dataset's "
                      "source/voxel_rois.tsv gives the release's AAL label of every voxel (0-based i, j, k)."),
            )
        # intersect: one dataset on common voxels
        ref_pid, ref = subjects[0]
        for pid, sub in subjects[1:]:
            if sub.dims != ref.dims or not np.allclose(sub.matrix, ref.matrix, atol=1e-6):
                raise DatasetError(f"grid {sub.dims} / affine differ from {ref_pid}'s; layout 'intersect' needs identical grids",
                                   file=sub.path, field="meta.matrix")
            if not _same_stimulus(sub.stimulus, ref.stimulus):
                raise DatasetError(f"word timing differs from {ref_pid}'s; one dataset needs one stimulus", file=sub.path, field="words")
        common = None
        for _, sub in subjects:
            flat = np.ravel_multi_index(sub.coords0.T, sub.dims)
            common = flat if common is None else np.intersect1d(common, flat)
        common = np.sort(common)
        if common.size == 0:
            raise DatasetError("the subjects share no voxel", file=src, field="meta.colToCoord")
        coords0 = np.stack(np.unravel_index(common, ref.dims), axis=1).astype(np.int64)
        fmri = {}
        for pid, sub in subjects:
            flat = np.ravel_multi_index(sub.coords0.T, sub.dims)
            order = np.argsort(flat)
            cols = order[np.searchsorted(flat[order], common)]
            _say(progress, f"converting {pid} ({common.size} common voxels)")
            fmri[pid] = FMRIRecording(pid, sub.data_float32(work, pid, cols), sub.tr, sub.runs, sub.space(coords0))
        meta = meta_for("harry-potter", base, "reading", description + f" Voxels common to all {len(subjects)} subjects ({common.size}).")
        return save_dataset(Dataset(meta, ref.stimulus, fmri), out, overwrite,
                            notes=[f"{common.size} voxels common to {len(subjects)} subjects"])


def _same_stimulus(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (len(a) == len(b) and list(a["word"]) == list(b["word"]) and list(a["run"]) == list(b["run"])
            and np.allclose(a["onset"].to_numpy(float), b["onset"].to_numpy(float), atol=1e-3))


# --------------------------------------------------------------------------------------
# .npy layout (fMRI/data_subject_X.npy + time/runs/words files)
# --------------------------------------------------------------------------------------


def _npy_root(src: Path) -> Path:
    if not src.is_dir():
        raise DatasetError("source folder not found (expected the folder holding fMRI/ or the fMRI/ folder itself)", file=src)
    if (src / "fMRI").is_dir():
        return src / "fMRI"
    return src


def import_harry_potter_npy(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    participants: Sequence[str] | None = None,
    meg: str | os.PathLike | None = None,
    meg_participants: Sequence[str] | None = None,
    bin_width: float = MEG_BIN_WIDTH,
    edge_trs: tuple[int, int] = EDGE_TRS,
    overwrite: bool = False,
    name: str | None = None,
    progress: Progress = None,
) -> ImportResult:
    """Import the preprocessed ``fMRI/*.npy`` layout (data_subject_X, time/runs/words files).

    ``data_subject_X.npy`` may hold every TR (as many rows as ``time_fmri.npy``) or - as in the
    public release - each run without its first ``edge_trs[0]`` and last ``edge_trs[1]`` TRs;
    the run segments (``Run.start = 20 * TR``) say which. The files carry no voxel coordinates,
    so units form an ``rois`` space of anonymous voxels (``v000000`` ...) and every participant
    is its own dataset. ``meg`` attaches the MEG ``.npz`` (all MEG participants) to each.
    """
    src, out = Path(src), Path(out)
    root = _npy_root(src)
    f_time, f_runs, f_tw, f_words = (root / n for n in ("time_fmri.npy", "runs_fmri.npy", "time_words_fmri.npy", "words_fmri.npy"))
    times = np.asarray(load_npy(f_time, "time_fmri", mmap=False), dtype=float).reshape(-1)
    runs = np.asarray(load_npy(f_runs, "runs_fmri", mmap=False)).reshape(-1)
    if runs.size != times.size:
        raise DatasetError(f"has {runs.size} entries but time_fmri.npy has {times.size}", file=f_runs, field="runs_fmri")
    tr, segs, run_t0 = _runs_from_times(times, runs, f_time, "time_fmri", "runs_fmri")
    words = load_npy(f_words, "words_fmri", strings=True)
    tw = np.asarray(load_npy(f_tw, "time_words_fmri", mmap=False), dtype=float).reshape(-1)
    if tw.size != len(words):
        raise DatasetError(f"has {tw.size} word times but words_fmri.npy has {len(words)} words", file=f_tw, field="time_words_fmri")
    stimulus = build_stimulus(list(words), tw, np.full(tw.size, RSVP_DURATION), segs, run_t0, tr, f_tw, "time_words_fmri")
    files = sorted(root.glob("data_subject_*.npy"))
    if not files:
        raise DatasetError("no data_subject_*.npy files", file=root)
    keys = [f.stem.removeprefix("data_subject_") for f in files]
    chosen = select(keys, participants, "participants", root, aliases=lambda w: [w.removeprefix("subject_"), w.removeprefix("data_subject_")])
    n_full = times.size
    n_trim = n_full - len(segs) * sum(edge_trs)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    description = (
        "Harry Potter chapter 9 read word by word (RSVP 0.5 s/word) during fMRI (Wehbe et al. 2014), preprocessed "
        "npy layout. Units are voxels without coordinates in the source (rois space of anonymous voxels)."
    )
    notes = []
    with WorkDir(out) as work:
        meg_recs: dict[str, MEGRecording] = {}
        if meg is not None:
            meg_stim, meg_recs_raw = _read_meg(Path(meg), work, meg_participants, bin_width, progress)
            word_index_map = align_words(meg_stim["word"].tolist(), stimulus["word"].tolist(), Path(meg))
            keep = word_index_map >= 0
            notes.append(f"MEG: {int(keep.sum())} of {keep.size} epochs matched to fMRI words")
            for pid, rec in meg_recs_raw.items():
                meg_recs[pid] = MEGRecording(pid, rec.data if keep.all() else _take_rows(rec.data, np.flatnonzero(keep), work, f"meg-{pid}"),
                                             rec.bin_width, rec.sensors, word_index_map[keep])
        datasets = {}
        for f, key in zip(files, keys):
            if key not in chosen:
                continue
            pid = check_participant_id(key, f)
            arr = load_npy(f, "data")
            if arr.ndim != 2:
                raise DatasetError(f"must be 2-D (TRs x voxels), got shape {arr.shape}", file=f, field="data")
            if arr.shape[0] == n_full:
                rec_runs = [Run(nm, n, 0.0) for nm, _, n in segs]
                trimmed = False
            elif arr.shape[0] == n_trim:
                rec_runs = [Run(nm, n - sum(edge_trs), edge_trs[0] * tr) for nm, _, n in segs]
                trimmed = True
            else:
                raise DatasetError(
                    f"has {arr.shape[0]} TRs; expected {n_full} (all TRs of time_fmri.npy) or {n_trim} "
                    f"(without the first {edge_trs[0]} and last {edge_trs[1]} TRs of each of {len(segs)} runs)",
                    file=f, field="data",
                )
            _say(progress, f"converting {f.name} ({arr.shape[0]} TRs x {arr.shape[1]} voxels{', edges trimmed' if trimmed else ''})")
            data = as_float32_rows(arr, work, pid, file=f, field="data")
            space = Space(kind="rois", roi_names=[f"v{i:06d}" for i in range(arr.shape[1])])
            rec = FMRIRecording(pid, data, tr, rec_runs, space)
            desc = description + (
                f" The release already removed the first {edge_trs[0]} and last {edge_trs[1]} TRs of each run "
                "(Run.start = 20 TRs): preprocess with trim_start=0, trim_end=0." if trimmed else ""
            )
            meta = meta_for("harry-potter", f"{name or 'harry-potter'}-{pid}", "reading", desc)
            datasets[pid] = Dataset(meta, stimulus, {pid: rec}, dict(meg_recs))
            if trimmed:
                notes.append(f"{pid}: edges already trimmed in the source; use trim_start=0, trim_end=0")
        result = save_collection(
            datasets, out, overwrite, fmt="harry-potter-npy",
            note=("The npy layout gives each subject its own voxel set without coordinates, and a brainviz dataset has "
                  "one shared space, so every participant is a separate dataset" + (" (each with all MEG participants)." if meg_recs else ".")),
            notes=notes,
        )
        return result


def _take_rows(data: np.ndarray, rows: np.ndarray, work: WorkDir, name: str) -> np.ndarray:
    out = work.array(name + "-aligned", (rows.size,) + tuple(data.shape[1:]))
    for s in range(0, rows.size, 512):
        out[s:s + 512] = data[rows[s:s + 512]]
    out.flush()
    return out


def align_words(source: Sequence[str], target: Sequence[str], file: Any, min_coverage: float = 0.9) -> np.ndarray:
    """Index into ``target`` of each ``source`` word (-1 where unmatched), by sequence alignment
    of the normalised words (case and punctuation ignored)."""
    norm = lambda w: re.sub(r"[^\w']", "", str(w).lower())  # noqa: E731
    a = [norm(w) for w in source]
    b = [norm(w) for w in target]
    out = np.full(len(a), -1, dtype=np.int64)
    if a == b:
        return np.arange(len(a), dtype=np.int64)
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for blk in sm.get_matching_blocks():
        out[blk.a:blk.a + blk.size] = np.arange(blk.b, blk.b + blk.size)
    cov = float((out >= 0).mean()) if len(a) else 0.0
    if cov < min_coverage:
        raise DatasetError(f"only {cov:.0%} of the MEG words match the fMRI words (need {min_coverage:.0%}); different texts?",
                           file=file, field="stimuli")
    return out


# --------------------------------------------------------------------------------------
# MEG .npz
# --------------------------------------------------------------------------------------


def _read_meg(path: Path, work: WorkDir, participants: Sequence[str] | None, bin_width: float,
              progress: Progress, word_duration: float = RSVP_DURATION) -> tuple[pd.DataFrame, dict[str, MEGRecording]]:
    if not path.is_file():
        raise DatasetError("MEG .npz not found", file=path)
    keys = npz_keys(path)
    for k in ("stimuli", "blocks", "data", "subjects"):
        if k not in keys:
            raise DatasetError(f"array missing (the file holds {keys})", file=path, field=k)
    stimuli = npz_strings(path, "stimuli")
    subjects = [str(s) for s in npz_strings(path, "subjects")]
    member = NpzMember(path, "blocks")
    blocks = member.read().reshape(-1)
    member.close()
    data = NpzMember(path, "data")
    try:
        if len(data.shape) != 4:
            raise DatasetError(f"must be 4-D (subjects x words x sensors x time bins), got shape {tuple(data.shape)}", file=path, field="data")
        n_sub, n_words, n_sens, n_bins = data.shape
        if n_sub != len(subjects):
            raise DatasetError(f"{n_sub} subjects in data but {len(subjects)} names", file=path, field="subjects")
        if n_words != len(stimuli):
            raise DatasetError(f"{n_words} epochs in data but {len(stimuli)} words", file=path, field="stimuli")
        if blocks.size != n_words:
            raise DatasetError(f"{blocks.size} block labels for {n_words} words", file=path, field="blocks")
        try:
            blk = blocks.astype(float)
        except (TypeError, ValueError):
            raise DatasetError("block labels must be numbers", file=path, field="blocks") from None
        if not np.all(np.isfinite(blk)) or np.any(blk != np.round(blk)):
            raise DatasetError("block labels must be integers", file=path, field="blocks")
        blk = blk.astype(int)
        change = np.flatnonzero(np.diff(blk) != 0) + 1
        order = blk[np.r_[0, change]]
        if len(set(order.tolist())) != len(order):
            raise DatasetError(f"the words of each block must be contiguous; block order is {order.tolist()}", file=path, field="blocks")
        sensors = [f"sensor{i:03d}" for i in range(n_sens)]
        if "rois" in keys:
            sensors = [str(s) for s in npz_strings(path, "rois")]
            if len(sensors) != n_sens:
                raise DatasetError(f"{len(sensors)} ROI names for {n_sens} sensors/ROIs", file=path, field="rois")
        onsets = None
        for k in ("onsets", "times"):
            if k in keys:
                m = NpzMember(path, k)
                onsets = np.asarray(m.read(), dtype=float).reshape(-1)
                m.close()
                if onsets.size != n_words or not np.all(np.isfinite(onsets)):
                    raise DatasetError(f"needs one finite onset per word ({onsets.size} for {n_words})", file=path, field=k)
                break
        keep = np.array([clean_text(w) not in ("", FIXATION) for w in stimuli], dtype=bool)
        pos = np.zeros(n_words)
        for b in order:
            idx = np.flatnonzero(blk == b)
            pos[idx] = (onsets[idx] - onsets[idx[0]]) if onsets is not None else np.arange(idx.size) * word_duration
        rows = np.flatnonzero(keep)
        stim = pd.DataFrame({
            "onset": pos[rows], "duration": word_duration, "word": [clean_text(stimuli[i]) for i in rows],
            "run": [f"run{blk[i]}" for i in rows], "story": STORY,
        })
        chosen = select([check_participant_id(s, path) for s in subjects], participants, "meg_participants", path)
        recs = {}
        for s, arr in zip(subjects, data.iter_leading()):
            if s not in chosen:
                continue
            _say(progress, f"converting MEG {s} ({n_words} epochs x {n_sens} x {n_bins})")
            out = work.array(f"meg-{s}", (rows.size, n_sens, n_bins))
            for c in range(0, rows.size, 256):
                blockrows = rows[c:c + 256]
                block = np.asarray(arr[blockrows], dtype=np.float32)
                check_finite(block.reshape(block.shape[0], -1), path, f"data[{s}]", c)
                out[c:c + block.shape[0]] = block
            out.flush()
            recs[s] = MEGRecording(s, out, float(bin_width), sensors, np.arange(rows.size))
    finally:
        data.close()
    return stim, recs


def import_harry_potter_meg(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    participants: Sequence[str] | None = None,
    bin_width: float = MEG_BIN_WIDTH,
    word_duration: float = RSVP_DURATION,
    overwrite: bool = False,
    name: str | None = None,
    progress: Progress = None,
) -> ImportResult:
    """Import the MEG ``.npz`` (``stimuli``, ``blocks``, ``data`` subjects x words x sensors x
    bins, ``subjects``, optional ``rois`` and ``onsets``) as one MEG-only dataset.

    Without ``onsets`` the word onsets are reconstructed from the RSVP rate (``word_duration``
    per token, fixations included) within each block; runs are the blocks.
    """
    src, out = Path(src), Path(out)
    if not bin_width > 0:
        raise DatasetError(f"bin width must be > 0 s, got {bin_width}", field="bin_width")
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    with WorkDir(out) as work:
        stim, recs = _read_meg(src, work, participants, bin_width, progress, word_duration)
        meta = meta_for(
            "harry-potter-meg", name or "harry-potter-meg", "reading",
            "Harry Potter chapter 9 read word by word during MEG; one epoch per word (fixations dropped). "
            f"Onsets {'from the file' if 'onsets' in npz_keys(src) or 'times' in npz_keys(src) else f'reconstructed at {word_duration} s per token within block'}.",
        )
        return save_dataset(Dataset(meta, stim, meg=recs), out, overwrite)
