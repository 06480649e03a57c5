"""Generic import: a words TSV plus one array file per participant.

``SRC`` is the words TSV or a folder holding it (``words.tsv``, ``stimulus.tsv`` or
``events.tsv``) together with the participants' files. Participants come from ``fmri``
(``{participant: path}``) or, in a folder, from the other data files (the participant id is
the file name without extension / ``_run-X`` / ``_hemi-L`` parts).

Words TSV columns: ``onset``, ``duration``, ``word`` (required), ``run`` and ``story``
(optional; default one run ``run1`` and story = the dataset name). Onsets are seconds on the
clock of their run, whose TR 0 starts at ``start`` (``runs.tsv`` column, default 0).

Participant files (TRs x units unless said otherwise):

* ``.npy`` / ``.csv`` - 2-D arrays (CSV: a header of unit names is allowed);
* ``.nii`` / ``.nii.gz`` - 4-D volumes (x, y, z, TRs);
* ``.func.gii`` / ``.gii`` - a hemisphere pair ``<id>_hemi-L`` / ``<id>_hemi-R`` (also
  ``<id>.L`` / ``<id>.lh``) on any fsaverage mesh.

Runs: one file per run (``<id>_run-<run>.<ext>``, run labels matching the TSV) or one file for
all runs split by ``runs.tsv`` (``run``, ``n_trs`` [, ``start``]) / ``run_lengths``; a single
run needs neither.

Spaces: ``fsaverage5`` (20,484 columns, left then right), ``fsaverage6`` / ``fsaverage``
(2 x 40,962 / 2 x 163,842 columns or GIfTI; reduced to fsaverage5 by nesting), ``rois`` (unit
names from a CSV header or anonymous), ``volume`` (NIfTI; voxels in ``mask`` or, without one,
voxels non-zero in the first volume of every participant; ``template`` MNI or native), or
``fsaverage5`` from an MNI NIfTI (projected with nilearn's ``vol_to_surf`` sampling).
``auto`` picks fsaverage5 for 20,484 columns / GIfTI, volume for NIfTI, rois for a CSV with a
header.

Audio (listening experiments; issue 15): ``audio`` = ``{run: file}``, ``["RUN=FILE", ...]``, one
file (single-run stimulus) or a folder holding ``<run>.wav`` / ``<run>.flac``. WAV or FLAC;
the file's first sample is time 0 of its run's clock (the clock of the word onsets). Files are
checked before anything is written (:mod:`brainviz.data.audio`): other sample rates are
resampled to 16 kHz and several channels averaged (both noted in the result and in
``dataset.json``); missing, unreadable, clipped or too-short files are errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from brainviz._io import check_label
from brainviz.data.dataset import N_VERTICES_FSAVERAGE5, Dataset, DatasetError, FMRIRecording, Run, Space
from brainviz.errors import OutputExistsError
from brainviz.data.importers._common import (
    ImportResult,
    WorkDir,
    check_participant_id,
    copy_rows_into,
    load_npy,
    meta_for,
    numeric_column,
    read_table,
    save_dataset,
)

SPACES = ("auto", "fsaverage5", "fsaverage6", "fsaverage", "rois", "volume")
WORDS_NAMES = ("words.tsv", "stimulus.tsv", "events.tsv")
DATA_EXT = (".npy", ".csv", ".nii", ".nii.gz", ".func.gii", ".gii")
N_HEMI = N_VERTICES_FSAVERAGE5 // 2
_FS_SIZES = {"fsaverage6": 40962, "fsaverage": 163842}

Progress = Callable[[str], None] | None


def _ext(path: Path) -> str:
    name = path.name.lower()
    for e in (".nii.gz", ".func.gii"):
        if name.endswith(e):
            return e
    return path.suffix.lower()


_ID_RE = re.compile(r"^(?P<pid>.+?)(?:_run-(?P<run>[^_.]+))?(?:[_.](?:hemi-)?(?P<hemi>L|R|lh|rh))?$")
_ID_NOHEMI_RE = re.compile(r"^(?P<pid>.+?)(?:_run-(?P<run>[^_.]+))?$")


def _parse_name(path: Path) -> tuple[str, str | None, str | None]:
    stem = path.name[: -len(_ext(path))]
    m = _ID_RE.match(stem) if _ext(path) in (".func.gii", ".gii") else _ID_NOHEMI_RE.match(stem)
    assert m is not None
    hemi = m.groupdict().get("hemi")
    hemi = {"lh": "L", "rh": "R"}.get(hemi, hemi)
    return m.group("pid"), m.group("run"), hemi


def read_words(path: Path, default_story: str) -> pd.DataFrame:
    df = read_table(path, ["onset", "duration", "word"], what="words table")
    onset = numeric_column(df, "onset", path)
    dur = numeric_column(df, "duration", path)
    if np.any(dur < 0):
        raise DatasetError(f"negative duration in row {int(np.flatnonzero(dur < 0)[0]) + 2}", file=path, field="duration")
    words = df["word"].astype(str).str.strip()
    if (words == "").any():
        raise DatasetError(f"empty word in row {int(np.flatnonzero(words == '')[0]) + 2}", file=path, field="word")
    run = df["run"].astype(str).str.strip() if "run" in df.columns else pd.Series(["run1"] * len(df))
    if (run == "").any():
        raise DatasetError(f"empty run in row {int(np.flatnonzero(run == '')[0]) + 2}", file=path, field="run")
    story = df["story"].astype(str) if "story" in df.columns else pd.Series([default_story] * len(df))
    for col, values, what in (("run", run, "run name"), ("story", story, "story name")):
        for label in dict.fromkeys(values):
            check_label(label, file=path, field=col, what=what)
    out = pd.DataFrame({"onset": onset, "duration": dur, "word": words, "run": run, "story": story})
    extra = [c for c in df.columns if c not in ("onset", "duration", "word", "run", "story")]
    for c in extra:
        out[c] = df[c].to_numpy()
    for r, g in out.groupby("run", sort=False):
        back = np.flatnonzero(np.diff(g["onset"].to_numpy()) < 0)
        if back.size:
            raise DatasetError(f"words out of time order in run {r!r} at row {int(g.index[back[0] + 1]) + 2}", file=path, field="onset")
    if out.empty:
        raise DatasetError("no words", file=path, field="word")
    return out


def _read_2d(path: Path) -> tuple[Any, list[str] | None]:
    ext = _ext(path)
    if ext == ".npy":
        arr = load_npy(path, "data")
        if arr.ndim != 2:
            raise DatasetError(f"must be 2-D (TRs x units), got shape {arr.shape}", file=path, field="data")
        return arr, None
    if ext == ".csv":
        try:
            head = pd.read_csv(path, header=None, nrows=1, dtype=str)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not a readable CSV ({exc})", file=path) from None
        has_header = pd.to_numeric(head.iloc[0], errors="coerce").isna().any()
        try:
            df = pd.read_csv(path, header=0 if has_header else None)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not a readable CSV ({exc})", file=path) from None
        vals = df.apply(pd.to_numeric, errors="coerce")
        if vals.isna().to_numpy().any():
            r, c = np.argwhere(vals.isna().to_numpy())[0]
            raise DatasetError(f"non-numeric or missing value at row {int(r) + 1}, column {int(c) + 1}", file=path, field="data")
        return vals.to_numpy(dtype=np.float64), ([str(c) for c in df.columns] if has_header else None)
    raise DatasetError(f"unsupported file type {ext!r}", file=path)


def _read_gifti(lh: Path, rh: Path) -> np.ndarray:
    from brainviz.data.importers.narratives import _read_gifti_pair

    return _read_gifti_pair(lh, rh)


def import_generic(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    tr: float | None = None,
    fmri: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]] | Sequence[str] | None = None,
    space: str = "auto",
    template: str = "MNI",
    mask: str | os.PathLike | None = None,
    run_lengths: Mapping[str, int] | None = None,
    modality: str = "reading",
    overwrite: bool = False,
    name: str | None = None,
    licence: str = "",
    citation: str = "",
    source: str = "",
    progress: Progress = None,
    audio: Mapping[str, str | os.PathLike] | Sequence[str] | str | os.PathLike | None = None,
) -> ImportResult:
    """Import a words TSV and per-participant arrays as one dataset (see the module doc)."""
    src, out = Path(src), Path(out)
    if space not in SPACES:
        raise DatasetError(f"unknown space {space!r}; expected one of {SPACES}", field="space")
    if template not in ("MNI", "native"):
        raise DatasetError(f"unknown template {template!r}; expected MNI or native", field="template")
    if tr is None:
        raise DatasetError("the TR (seconds) is required (--tr)", field="tr")
    try:
        tr_ok = float(tr) > 0 and np.isfinite(float(tr))
    except (TypeError, ValueError):
        tr_ok = False
    if not tr_ok:
        raise DatasetError(f"TR must be a finite number of seconds > 0, got {tr!r}", field="tr")
    tr = float(tr)
    if src.is_dir():
        words_file = next((src / n for n in WORDS_NAMES if (src / n).is_file()), None)
        if words_file is None:
            raise DatasetError(f"no words table ({' / '.join(WORDS_NAMES)})", file=src)
        folder = src
    elif src.is_file():
        words_file, folder = src, src.parent
    else:
        raise DatasetError("source not found (a words TSV or a folder holding words.tsv)", file=src)
    ds_name = name or folder.name or "imported"
    stim = read_words(words_file, ds_name)
    stim_runs = list(dict.fromkeys(stim["run"]))

    # participants -> {run or None: {hemi or None: path}}
    files: dict[str, dict[str | None, dict[str | None, Path]]] = {}
    if fmri:
        items = fmri.items() if isinstance(fmri, Mapping) else [_split_assignment(s) for s in fmri]
        for pid, paths in items:
            for p in ([paths] if isinstance(paths, (str, os.PathLike)) else list(paths)):
                p = Path(p)
                if not p.is_file():
                    raise DatasetError(f"data file of participant {pid!r} not found", file=p, field="fmri")
                _, run, hemi = _parse_name(p)
                files.setdefault(check_participant_id(pid), {}).setdefault(run, {})[hemi] = p
    else:
        for p in sorted(folder.iterdir()):
            if p == words_file or p.name == "runs.tsv" or p.name.startswith(".") or _ext(p) not in DATA_EXT:
                continue
            pid, run, hemi = _parse_name(p)
            files.setdefault(check_participant_id(pid, p), {}).setdefault(run, {})[hemi] = p
    if not files:
        raise DatasetError(f"no participant data files ({', '.join(DATA_EXT)})", file=folder, field="fmri")

    tracks, audio_notes = _audio_tracks(audio, stim)  # issue 15: checked before anything is written
    runs_spec = _run_spec(folder / "runs.tsv", run_lengths, stim_runs)
    mask_arr = None
    if mask is not None:
        import nibabel as nib

        mp = Path(mask)
        if not mp.is_file():
            raise DatasetError("mask not found", file=mp, field="mask")
        try:
            mimg = nib.load(str(mp))
            mask_arr = (np.asarray(mimg.dataobj) != 0, np.asarray(mimg.affine, dtype=float))
        except Exception as exc:
            raise DatasetError(f"unreadable mask ({exc})", file=mp) from None

    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    with WorkDir(out) as work:
        plans = {pid: _plan_participant(pid, by_run, stim_runs, runs_spec) for pid, by_run in files.items()}
        kinds = {k for plan in plans.values() for _, k, _ in plan["parts"]}
        if len(kinds) != 1:
            raise DatasetError(f"participants mix file types {sorted(kinds)}; one dataset needs one space", file=folder, field="fmri")
        kind = kinds.pop()
        vol_space = None
        if kind == "nifti":
            if space not in ("auto", "volume", "fsaverage5"):
                raise DatasetError(f"NIfTI data can become 'volume' or 'fsaverage5', not {space!r}", field="space")
            if space == "fsaverage5" and template != "MNI":
                raise DatasetError("only MNI volumes can be projected onto fsaverage5", field="template")
            if space in ("auto", "volume"):
                vol_space = _volume_space(plans, mask_arr, template)
        fmri_recs = {}
        for pid, plan in plans.items():
            fmri_recs[pid] = _convert(pid, plan, kind, space, vol_space, work, tr, progress)
        spaces = {rec.space.kind for rec in fmri_recs.values()}
        meta = meta_for(
            "generic", ds_name, modality,
            f"Imported from {words_file.name} and {len(fmri_recs)} participant file set(s); space {sorted(spaces)}.",
            source=source or str(src), licence=licence, citation=citation,
        )
        return save_dataset(Dataset(meta, stim, fmri_recs, audio=tracks), out, overwrite, notes=audio_notes)


def _audio_tracks(audio, stim: pd.DataFrame):
    """Audio tracks from the ``audio`` argument (see the module docstring; issue 15)."""
    from brainviz.data.audio import load_audio_tracks

    if audio is None or (not isinstance(audio, (str, os.PathLike)) and not audio):
        return {}, []
    if not isinstance(audio, (str, os.PathLike, Mapping)):
        items = [str(a) for a in audio]
        if len(items) == 1 and "=" not in items[0]:
            audio = items[0]
        else:
            audio = dict(_split_audio(a) for a in items)
    return load_audio_tracks(audio, stim)


def _split_audio(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise DatasetError(f"expected RUN=FILE, got {s!r} (a single file is allowed only for one run)", field="audio")
    run, path = s.split("=", 1)
    return run.strip(), path.strip()


def _split_assignment(s: str) -> tuple[str, str]:
    if "=" not in str(s):
        raise DatasetError(f"expected PARTICIPANT=FILE, got {s!r}", field="fmri")
    pid, path = str(s).split("=", 1)
    return pid.strip(), path.strip()


def _run_spec(path: Path, run_lengths: Mapping[str, int] | None, stim_runs: list[str]) -> dict[str, tuple[int | None, float]]:
    spec: dict[str, tuple[int | None, float]] = {}
    if path.is_file():
        df = read_table(path, ["run"], what="runs table")
        n = numeric_column(df, "n_trs", path) if "n_trs" in df.columns else [None] * len(df)
        start = numeric_column(df, "start", path) if "start" in df.columns else np.zeros(len(df))
        for r, k, s in zip(df["run"].astype(str), n, start):
            if k is not None and (k != int(k) or k <= 0):
                raise DatasetError(f"n_trs of run {r!r} must be a positive integer", file=path, field="n_trs")
            spec[r.strip()] = (None if k is None else int(k), float(s))
    for r, k in (run_lengths or {}).items():
        if int(k) <= 0:
            raise DatasetError(f"run {r!r} length must be > 0", field="run_lengths")
        spec[str(r)] = (int(k), spec.get(str(r), (None, 0.0))[1])
    unknown = [r for r in spec if r not in stim_runs]
    if unknown:
        raise DatasetError(f"runs {unknown} have no words (runs in the words table: {stim_runs})",
                           file=path if path.is_file() else None, field="run")
    return spec


def _plan_participant(pid: str, by_run: dict, stim_runs: list[str], spec: dict) -> dict:
    parts = []  # (run label or None, kind, {hemi: path})
    for run, hemis in by_run.items():
        exts = {_ext(p) for p in hemis.values()}
        if exts & {".func.gii", ".gii"}:
            if set(hemis) != {"L", "R"}:
                some = next(iter(hemis.values()))
                raise DatasetError(f"GIfTI data need both hemispheres (_hemi-L and _hemi-R) for {pid}", file=some, field="hemi")
            kind = "gifti"
        elif exts & {".nii", ".nii.gz"}:
            kind = "nifti"
        else:
            kind = "table"
        if None not in hemis and kind != "gifti":
            some = next(iter(hemis.values()))
            raise DatasetError(f"hemisphere-split files are only supported for GIfTI ({pid})", file=some, field="hemi")
        parts.append((run, kind, hemis))
    per_run = [r for r, _, _ in parts if r is not None]
    if per_run and len(per_run) != len(parts):
        some = next(iter(parts[0][2].values()))
        raise DatasetError(f"{pid} mixes per-run files with an all-runs file", file=some, field="run")
    if per_run:
        unknown = [r for r in per_run if r not in stim_runs]
        if unknown:
            some = next(iter(parts[0][2].values()))
            raise DatasetError(f"{pid}: runs {unknown} have no words (runs in the words table: {stim_runs})", file=some.parent, field="run")
        parts.sort(key=lambda p: stim_runs.index(p[0]))
    return {"parts": parts, "per_run": bool(per_run), "spec": spec, "stim_runs": stim_runs}


def _volume_space(plans: dict, mask_arr, template: str) -> Space:
    import nibabel as nib

    ref = None
    keep = None
    for pid, plan in plans.items():
        for _, _, hemis in plan["parts"]:
            p = hemis[None]
            try:
                img = nib.load(str(p))
            except Exception as exc:
                raise DatasetError(f"unreadable NIfTI ({exc})", file=p) from None
            if len(img.shape) != 4:
                raise DatasetError(f"must be 4-D (x, y, z, TRs), got shape {img.shape}", file=p, field="shape")
            if ref is None:
                ref = (img.shape[:3], np.asarray(img.affine, dtype=float), p)
            elif img.shape[:3] != ref[0] or not np.allclose(img.affine, ref[1], atol=1e-4):
                raise DatasetError(f"grid {img.shape[:3]} / affine differ from {ref[2].name}; a volume dataset needs one grid", file=p, field="affine")
            if mask_arr is None:
                first = np.asarray(img.dataobj[..., 0])
                nz = np.isfinite(first) & (first != 0)
                keep = nz if keep is None else keep & nz
    shape, affine, _ = ref
    if mask_arr is not None:
        m, maff = mask_arr
        if m.shape != tuple(shape) or not np.allclose(maff, affine, atol=1e-4):
            raise DatasetError(f"mask grid {m.shape} / affine differ from the data's {tuple(shape)}", field="mask")
        keep = m
    coords = np.argwhere(keep).astype(np.int64)
    if coords.size == 0:
        raise DatasetError("no voxel selected (mask empty / all-zero first volumes)", field="mask")
    return Space(kind="volume", template=template, affine=affine, shape=tuple(int(s) for s in shape), coords=coords)


def _n_rows(kind: str, hemis: dict) -> int:
    import nibabel as nib

    if kind == "nifti":
        return int(nib.load(str(hemis[None])).shape[3])
    if kind == "table":
        arr, _ = _read_2d(hemis[None])
        return int(arr.shape[0])
    raise AssertionError


def _convert(pid: str, plan: dict, kind: str, space: str, vol_space: Space | None, work: WorkDir, tr: float, progress: Progress) -> FMRIRecording:
    import nibabel as nib

    from brainviz.data.atlases import to_fsaverage5

    loaded = []  # (run label, array-like, names)
    for run, _, hemis in plan["parts"]:
        if kind == "gifti":
            loaded.append((run, _read_gifti(hemis["L"], hemis["R"]), None, hemis["L"]))
        elif kind == "table":
            arr, names = _read_2d(hemis[None])
            loaded.append((run, arr, names, hemis[None]))
        else:
            loaded.append((run, nib.load(str(hemis[None])), None, hemis[None]))
    # run segments
    spec, stim_runs = plan["spec"], plan["stim_runs"]
    rows = [int(a.shape[0]) if kind != "nifti" else int(a.shape[3]) for _, a, _, _ in loaded]
    if plan["per_run"]:
        runs = [Run(r, n, spec.get(r, (None, 0.0))[1]) for (r, _, _, _), n in zip(loaded, rows)]
        for (r, _, _, f), n in zip(loaded, rows):
            want = spec.get(r, (None, 0.0))[0]
            if want is not None and want != n:
                raise DatasetError(f"run {r!r} has {n} TRs but the runs table says {want}", file=f, field="n_trs")
    else:
        total = rows[0]
        f = loaded[0][3]
        if len(stim_runs) == 1 and not spec:
            runs = [Run(stim_runs[0], total, 0.0)]
        else:
            missing = [r for r in stim_runs if spec.get(r, (None, 0.0))[0] is None]
            if missing:
                raise DatasetError(
                    f"the words table has runs {stim_runs}: give their lengths in runs.tsv (run, n_trs) or --run-lengths "
                    f"(missing {missing}), or use one file per run (<id>_run-<run>)", file=f, field="run",
                )
            runs = [Run(r, spec[r][0], spec[r][1]) for r in stim_runs]
            if sum(r.n_trs for r in runs) != total:
                raise DatasetError(f"run lengths add up to {sum(r.n_trs for r in runs)} but the file has {total} TRs", file=f, field="n_trs")
    total = int(sum(rows))
    # space + conversion
    if kind == "gifti":
        target = "fsaverage5"
        if space not in ("auto", "fsaverage5", "fsaverage6", "fsaverage"):
            raise DatasetError(f"GIfTI data become fsaverage5, not {space!r}", file=loaded[0][3], field="space")
        sp = Space(kind="fsaverage5")
        n_units = N_VERTICES_FSAVERAGE5
    elif kind == "nifti":
        if vol_space is not None:
            sp = vol_space
            n_units = int(vol_space.coords.shape[0])
            target = "volume"
        else:
            sp = Space(kind="fsaverage5")
            n_units = N_VERTICES_FSAVERAGE5
            target = "fsaverage5"
    else:
        n_cols = int(loaded[0][1].shape[1])
        names = loaded[0][2]
        for _, a, _, f in loaded[1:]:
            if a.shape[1] != n_cols:
                raise DatasetError(f"has {a.shape[1]} columns but the first run file has {n_cols}", file=f, field="data")
        target = space
        if space == "auto":
            target = "fsaverage5" if n_cols == N_VERTICES_FSAVERAGE5 else ("rois" if names else None)
            if target is None:
                raise DatasetError(f"{n_cols} columns: say what they are with --space (fsaverage5 has 20484, fsaverage6 81924, "
                                   "fsaverage 327684; 'rois' for regions)", file=loaded[0][3], field="space")
        if target == "volume":
            raise DatasetError("array files carry no voxel coordinates: use NIfTI for volume data, or --space rois", file=loaded[0][3], field="space")
        if target == "fsaverage5":
            if n_cols != N_VERTICES_FSAVERAGE5:
                raise DatasetError(f"has {n_cols} columns; fsaverage5 has {N_VERTICES_FSAVERAGE5} (left 10,242 then right)", file=loaded[0][3], field="data")
            sp, n_units = Space(kind="fsaverage5"), N_VERTICES_FSAVERAGE5
        elif target in _FS_SIZES:
            if n_cols != 2 * _FS_SIZES[target]:
                raise DatasetError(f"has {n_cols} columns; {target} has {2 * _FS_SIZES[target]} (both hemispheres)", file=loaded[0][3], field="data")
            sp, n_units = Space(kind="fsaverage5"), N_VERTICES_FSAVERAGE5
        else:
            sp = Space(kind="rois", roi_names=names or [f"v{i:06d}" for i in range(n_cols)])
            n_units = n_cols
    data = work.array(pid, (total, n_units))
    row = 0
    for (run, a, _, f), n in zip(loaded, rows):
        if progress:
            progress(f"converting {pid} {run or ''} ({n} TRs)")
        if kind == "nifti":
            if target == "volume":
                c = sp.coords
                for t0 in range(0, n, 64):
                    t1 = min(n, t0 + 64)
                    block = np.asarray(a.dataobj[..., t0:t1], dtype=np.float64)[c[:, 0], c[:, 1], c[:, 2]].T
                    bad = ~np.isfinite(block)
                    if bad.any():
                        raise DatasetError(f"non-finite value in TR {t0 + int(np.argwhere(bad)[0][0])}", file=f, field="data")
                    data[row + t0: row + t1] = block
            else:
                from brainviz.data.importers.narratives import _project_nifti

                _project_nifti(f, data, row)
        elif kind == "table" and target in _FS_SIZES:
            half = _FS_SIZES[target]
            for s in range(0, n, 256):
                block = np.asarray(a[s:s + 256], dtype=np.float64)
                if not np.all(np.isfinite(block)):
                    raise DatasetError("non-finite value", file=f, field="data")
                data[row + s: row + s + block.shape[0]] = np.concatenate(
                    [to_fsaverage5(block[:, :half]), to_fsaverage5(block[:, half:])], axis=1)
        else:
            copy_rows_into(data, row, a, file=f, field="data")
        row += n
    data.flush()
    return FMRIRecording(pid, data, tr, runs, sp)
