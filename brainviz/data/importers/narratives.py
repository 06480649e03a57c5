"""Narratives (Nastase et al. 2021, OpenNeuro ds002345): BIDS story listening, fsaverage5 output.

Inputs
------
* ``participants.tsv`` - its ``task`` column lists each participant's stories (comma-separated,
  aligned with ``condition``).
* BOLD derivatives under ``derivatives/{afni-smooth,afni-nosmooth,fmriprep}/sub-*/func/`` (or
  ``sub-*/func/``): ``sub-X_task-{story}[_run-N]_space-fsaverage6_hemi-{L,R}[_desc-*].func.gii``
  (fsaverage6, reduced to fsaverage5 by icosahedral nesting: first 10,242 vertices per
  hemisphere) or ``..._space-MNI152NLin2009cAsym_res-native_desc-*_bold.nii.gz`` (projected with
  nilearn's ``vol_to_surf`` sampling onto fsaverage5; vertices without a valid sample are 0).
* TR: ``RepetitionTime`` of the raw sidecar ``sub-X/func/sub-X_task-{story}[_run-N]_bold.json``
  (BIDS inheritance: ``task-{story}_bold.json`` at the root; then the derivative's sidecar).
* Timing: ``sub-X/func/..._events.tsv``: the row with ``trial_type == 'story'`` and the stimulus
  audio file it names.
* Words: Gentle forced-aligner output ``stimuli/gentle/{story}/align.csv`` (word, aligned word
  or ``<unk>``, onset, offset; no header) or ``align.json``. Words Gentle did not find in the
  audio keep their place with onsets interpolated between their aligned neighbours
  (``aligned = False``, duration 0). Condition-specific transcripts (``milkywayvodka``) are used
  when they exist.

Clocks: word onsets are kept on the transcript's clock and each participant's run gets
``Run.start = -audio_onset``, where ``audio_onset`` is when the transcript's zero happened in
the scan: with ``word_clock='audio'`` (default) the transcripts are timed from the start of the
stimulus audio file, which starts at the earliest ``events.tsv`` row naming that file (0 s for
pieman: the file holds the music intro); with ``word_clock='story'`` they are timed from the
``story`` event onset.

Audio (optional): ``stimuli/{stim_file}`` (the file the story row of ``events.tsv`` names), on
the run clock at ``file start - transcript zero`` (0 with ``word_clock='audio'``); see
:func:`import_narratives`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from brainviz.data.dataset import N_VERTICES_FSAVERAGE5, Dataset, DatasetError, FMRIRecording, Run, Space
from brainviz.errors import OutputExistsError
from brainviz.data.importers._common import (
    ImportResult,
    WorkDir,
    check_participant_id,
    meta_for,
    numeric_column,
    read_table,
    save_dataset,
)

DERIVATIVES = ("afni-smooth", "afni-nosmooth", "fmriprep")
SOURCES = ("auto", "fsaverage6", "MNI")
WORD_CLOCKS = ("audio", "story")
N_HEMI = N_VERTICES_FSAVERAGE5 // 2
_TR_CHUNK = 64

Progress = Callable[[str], None] | None


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _split(cell: str) -> list[str]:
    return [c.strip() for c in str(cell).split(",")] if str(cell).strip() not in ("", "n/a") else []


def read_participants(path: Path) -> list[tuple[str, str, str]]:
    """``(participant, story, condition)`` for every story listed in ``participants.tsv``."""
    df = read_table(path, ["participant_id", "task"], what="participants table")
    out = []
    for i, row in df.iterrows():
        pid = row["participant_id"].strip()
        if not pid:
            raise DatasetError(f"empty participant_id in row {i + 2}", file=path, field="participant_id")
        tasks = _split(row["task"])
        conds = _split(row.get("condition", "")) if "condition" in df.columns else []
        for j, t in enumerate(tasks):
            cond = conds[j] if j < len(conds) else "n/a"
            out.append((pid, t, cond))
    if not out:
        raise DatasetError("no participant lists a story", file=path, field="task")
    return out


# --------------------------------------------------------------------------------------
# Transcripts
# --------------------------------------------------------------------------------------


def read_gentle(path: Path) -> pd.DataFrame:
    """Words of a Gentle ``align.csv`` / ``align.json`` with onsets, durations and ``aligned``."""
    if not path.is_file():
        raise DatasetError("transcript not found", file=path)
    if path.suffix == ".json":
        try:
            obj = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not valid JSON ({exc})", file=path) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("words"), list):
            raise DatasetError("expected an object with a 'words' list", file=path, field="words")
        rows = []
        for i, w in enumerate(obj["words"]):
            if not isinstance(w, dict) or "word" not in w:
                raise DatasetError(f"word {i} has no 'word'", file=path, field="words")
            ok = w.get("case", "success") == "success" and "start" in w and "end" in w
            rows.append((str(w["word"]), float(w["start"]) if ok else np.nan, float(w["end"]) if ok else np.nan))
        words = [r[0] for r in rows]
        on = np.array([r[1] for r in rows], dtype=float)
        off = np.array([r[2] for r in rows], dtype=float)
    else:
        try:
            raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not a readable CSV ({exc})", file=path) from None
        if raw.shape[1] < 4:
            raise DatasetError(f"expected 4 columns (word, aligned word, onset, offset), got {raw.shape[1]}", file=path, field="columns")
        if raw.shape[0] and pd.to_numeric(pd.Series([raw.iloc[0, 2]]), errors="coerce").isna().all() and raw.iloc[0, 2] != "":
            raw = raw.iloc[1:]  # header row
        words = raw.iloc[:, 0].tolist()
        on = pd.to_numeric(raw.iloc[:, 2], errors="coerce").to_numpy(dtype=float)
        off = pd.to_numeric(raw.iloc[:, 3], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero((raw.iloc[:, 2].to_numpy() != "") & np.isnan(on))
        if bad.size:
            raise DatasetError(f"non-numeric onset {raw.iloc[bad[0], 2]!r} in row {bad[0] + 1}", file=path, field="onset")
    words = [str(w).strip() for w in words]
    keep = np.array([bool(w) for w in words])
    words = [w for w, k in zip(words, keep) if k]
    on, off = on[keep], off[keep]
    aligned = np.isfinite(on) & np.isfinite(off)
    if not aligned.any():
        raise DatasetError("no word is aligned to the audio", file=path, field="onset")
    if np.any(off[aligned] < on[aligned]):
        i = int(np.flatnonzero(aligned & (off < on))[0])
        raise DatasetError(f"word {i + 1} ({words[i]!r}) ends before it starts", file=path, field="offset")
    on_a = on[aligned]
    back = np.flatnonzero(np.diff(on_a) < -1e-6)
    if back.size:
        i = int(np.flatnonzero(aligned)[back[0] + 1])
        raise DatasetError(f"aligned words out of time order at word {i + 1} ({words[i]!r})", file=path, field="onset")
    idx = np.arange(len(words))
    onset = on.copy()
    onset[~aligned] = np.interp(idx[~aligned], idx[aligned], on[aligned])
    dur = np.where(aligned, off - on, 0.0)
    onset = np.maximum.accumulate(onset)
    return pd.DataFrame({"onset": onset, "duration": dur, "word": words, "aligned": aligned})


# --------------------------------------------------------------------------------------
# Files of one (participant, story, run)
# --------------------------------------------------------------------------------------


def _bold_candidates(roots: list[Path], pid: str, story: str, source: str) -> dict[str, dict[str, list[Path]]]:
    """run entity ('' or '_run-N') -> {'fsaverage6': [L, R], 'MNI': [nii]} from the first root with files."""
    for root in roots:
        func = root / pid / "func"
        if not func.is_dir():
            continue
        found: dict[str, dict[str, list[Path]]] = {}
        pat = re.compile(rf"^{re.escape(pid)}_task-{re.escape(story)}(_run-\d+)?_(.*)$")
        for f in sorted(func.iterdir()):
            m = pat.match(f.name)
            if not m:
                continue
            run, rest = m.group(1) or "", m.group(2)
            if "space-fsaverage" in rest and rest.endswith(".func.gii") and source in ("auto", "fsaverage6"):
                hemi = re.search(r"hemi-([LR])", rest)
                if hemi:
                    found.setdefault(run, {}).setdefault("fs" + hemi.group(1), []).append(f)
            elif "space-MNI" in rest and re.search(r"_bold\.nii(\.gz)?$", rest) and source in ("auto", "MNI"):
                found.setdefault(run, {}).setdefault("MNI", []).append(f)
        if found:
            return found
    return {}


def _sidecar_tr(src: Path, pid: str, story: str, run: str, bold: Path) -> float:
    candidates = [
        src / pid / "func" / f"{pid}_task-{story}{run}_bold.json",
        src / f"task-{story}{run}_bold.json",
        src / f"task-{story}_bold.json",
        bold.with_name(re.sub(r"(\.func\.gii|\.nii\.gz|\.nii)$", ".json", bold.name)),
    ]
    for c in candidates:
        if c.is_file():
            try:
                obj = json.loads(c.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DatasetError(f"not valid JSON ({exc})", file=c) from None
            if "RepetitionTime" not in obj:
                continue
            try:
                tr = float(obj["RepetitionTime"])
            except (TypeError, ValueError):
                raise DatasetError(f"must be a number, got {obj['RepetitionTime']!r}", file=c, field="RepetitionTime") from None
            if not tr > 0:
                raise DatasetError(f"must be > 0 s, got {tr}", file=c, field="RepetitionTime")
            return tr
    raise DatasetError("BOLD sidecar with RepetitionTime not found", file=candidates[0], field="RepetitionTime")


def _story_timing(src: Path, pid: str, story: str, run: str) -> tuple[float, float, str | None, Path]:
    """``(story onset, audio file start, stim_file or None, events path)`` in scan seconds.

    The audio file starts at the earliest ``events.tsv`` row naming the story row's ``stim_file``
    (the story onset when the table has no ``stim_file`` column).
    """
    path = src / pid / "func" / f"{pid}_task-{story}{run}_events.tsv"
    df = read_table(path, ["onset", "trial_type"], what="events table")
    onsets = numeric_column(df, "onset", path)
    rows = np.flatnonzero(df["trial_type"].str.strip().str.lower() == "story")
    if rows.size == 0:
        raise DatasetError(f"no row with trial_type 'story' (trial types: {sorted(set(df['trial_type']))})", file=path, field="trial_type")
    story_onset = float(onsets[rows[0]])
    if "stim_file" not in df.columns:
        return story_onset, story_onset, None, path
    stim_file = str(df["stim_file"].iloc[rows[0]]).strip()
    same = np.flatnonzero(df["stim_file"].to_numpy() == df["stim_file"].iloc[rows[0]])
    return story_onset, float(onsets[same].min()), (stim_file if stim_file not in ("", "n/a") else None), path


def _audio_tracks(plan: dict[str, list[dict[str, Any]]], stimulus: pd.DataFrame, audio_root: Path, audio: bool | None):
    """Stimulus audio of every run (issue 15): ``(tracks, notes)``, read and checked before anything is
    written (:func:`brainviz.data.audio.load_audio_tracks`).

    The file of a run is ``audio_root / stim_file`` (``{story}_audio.wav`` when the events table
    names none). Its first sample plays at ``file start - transcript zero`` on the run's clock
    (the transcript clock): 0 with ``word_clock='audio'``, ``file start - story onset`` with
    ``'story'``. ``audio=None`` attaches the files that exist and notes the others, ``True``
    requires every file, ``False`` attaches none.
    """
    from brainviz.data.audio import load_audio_tracks

    if audio is False:
        return {}, []
    files: dict[str, Path] = {}
    onsets: dict[str, float] = {}
    notes: list[str] = []
    for items in plan.values():
        for it in items:
            rn = it["run_name"]
            path = audio_root / (it["stim_file"] or f"{it['story']}_audio.wav")
            onset = float(it["file_start"]) - float(it["offset"])
            if rn not in files:
                files[rn], onsets[rn] = path, onset
            elif files[rn] != path or abs(onsets[rn] - onset) > 1e-6:
                notes.append(f"{rn}: participants' events disagree on the audio ({files[rn].name} at {onsets[rn]:g} s vs "
                             f"{path.name} at {onset:g} s on the transcript clock); used the first")
    missing = {rn: p for rn, p in files.items() if not p.is_file()}
    if missing and audio:
        rn, p = next(iter(missing.items()))
        raise DatasetError(f"stimulus audio of run {rn!r} not found (audio=True requires it)", file=p, field="audio")
    if missing:
        notes.append(f"no stimulus audio found for run(s) {sorted(missing)} (looked for "
                     f"{sorted({str(p) for p in missing.values()})}); imported without it")
    present = {rn: p for rn, p in files.items() if rn not in missing}
    if not present:
        return {}, notes
    words = stimulus[stimulus["run"].isin(list(present))]
    tracks, audio_notes = load_audio_tracks(present, words, onsets)
    for rn, track in tracks.items():
        track.source = f"Narratives stimulus {present[rn].name}"
    return tracks, notes + audio_notes


def _read_gifti_pair(lh: Path, rh: Path) -> np.ndarray:
    """(TRs, 20484) float32 from a hemisphere pair on any fsaverage mesh (first 10,242 vertices)."""
    import nibabel as nib

    from brainviz.data.atlases import to_fsaverage5

    parts = []
    for path in (lh, rh):
        try:
            img = nib.load(str(path))
        except Exception as exc:
            raise DatasetError(f"unreadable GIfTI ({exc})", file=path) from None
        darrays = getattr(img, "darrays", None)
        if not darrays:
            raise DatasetError("GIfTI without data arrays", file=path, field="darrays")
        if len(darrays) == 1 and np.asarray(darrays[0].data).ndim == 2:
            arr = np.asarray(darrays[0].data)  # (vertices, TRs)
            part = to_fsaverage5(arr, axis=0, file=path, field="vertices").T
        else:
            cols = []
            for i, d in enumerate(darrays):
                v = np.asarray(d.data).reshape(-1)
                cols.append(to_fsaverage5(v, file=path, field=f"darrays[{i}]"))
            part = np.stack(cols)
        part = part.astype(np.float32)
        bad = ~np.isfinite(part)
        if bad.any():
            t, v = np.argwhere(bad)[0]
            raise DatasetError(f"non-finite value at TR {int(t)}, vertex {int(v)}", file=path, field="data")
        parts.append(part)
    if parts[0].shape[0] != parts[1].shape[0]:
        raise DatasetError(f"{parts[1].shape[0]} TRs but the left hemisphere has {parts[0].shape[0]}", file=rh, field="darrays")
    return np.concatenate(parts, axis=1)


_PROJECTORS: dict[tuple, Any] = {}


def _project_nifti(path: Path, out: np.ndarray, row0: int, n_expected: int | None = None) -> int:
    """Project a 4-D MNI NIfTI onto fsaverage5 into ``out[row0:...]`` in chunks; return n TRs."""
    import nibabel as nib

    from brainviz.data.atlases import SurfaceProjector

    try:
        img = nib.load(str(path), keep_file_open=True)
    except TypeError:
        img = nib.load(str(path))
    except Exception as exc:
        raise DatasetError(f"unreadable NIfTI ({exc})", file=path) from None
    if len(img.shape) != 4:
        raise DatasetError(f"must be 4-D (x, y, z, TRs), got shape {img.shape}", file=path, field="shape")
    shape, n_t = img.shape[:3], img.shape[3]
    key = (tuple(shape), np.round(img.affine, 6).tobytes())
    if key not in _PROJECTORS:
        _PROJECTORS.clear()
        _PROJECTORS[key] = SurfaceProjector(img.affine, shape)
    proj = _PROJECTORS[key]
    for t0 in range(0, n_t, _TR_CHUNK):
        t1 = min(n_t, t0 + _TR_CHUNK)
        try:
            block = np.asarray(img.dataobj[..., t0:t1], dtype=np.float32)
        except Exception as exc:
            raise DatasetError(f"unreadable image data (truncated? {exc})", file=path, field="data") from None
        block = np.nan_to_num(block.reshape(-1, t1 - t0).T, nan=0.0, posinf=0.0, neginf=0.0)
        surf = proj.project(block)
        out[row0 + t0: row0 + t1] = np.nan_to_num(surf, nan=0.0)
    return n_t


def _nifti_n_trs(path: Path) -> int:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise DatasetError(f"unreadable NIfTI ({exc})", file=path) from None
    if len(img.shape) != 4:
        raise DatasetError(f"must be 4-D (x, y, z, TRs), got shape {img.shape}", file=path, field="shape")
    return int(img.shape[3])


# --------------------------------------------------------------------------------------
# Importer
# --------------------------------------------------------------------------------------


def import_narratives(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    stories: Sequence[str] | None = None,
    participants: Sequence[str] | None = None,
    source: str = "auto",
    derivative: str = "auto",
    word_clock: str = "audio",
    derivatives_dir: str | os.PathLike | None = None,
    transcripts_dir: str | os.PathLike | None = None,
    audio: bool | None = None,
    audio_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    name: str | None = None,
    progress: Progress = None,
) -> ImportResult:
    """Import Narratives stories as one fsaverage5 dataset (all participants share the space).

    ``source`` picks fsaverage6 GIfTI or MNI NIfTI derivatives (``auto``: fsaverage6 when
    present); ``derivative`` the pipeline folder (``auto``: afni-smooth, afni-nosmooth, fmriprep,
    then ``sub-*/func``). ``derivatives_dir`` / ``transcripts_dir`` default to
    ``SRC/derivatives`` and ``SRC/stimuli/gentle``. Without ``participants``/``stories``,
    (participant, story) pairs with no BOLD file are skipped (reported in the notes); named ones
    must exist.

    Audio (issue 15): each run's stimulus audio, ``audio_dir / stim_file`` (``audio_dir``
    defaults to ``SRC/stimuli``; ``stim_file`` is named by the story row of the run's
    ``events.tsv``, else ``{story}_audio.wav``), is attached as in ``import generic --audio``
    with its first sample at ``file start - transcript zero`` on the run clock (0.0 with
    ``word_clock='audio'``; e.g. -15 s for pieman with ``'story'``). ``audio=None`` (default)
    attaches the files present and notes the missing ones, ``True`` requires them, ``False``
    skips audio. Unreadable, clipped or too-short files raise :class:`DatasetError` naming the
    file before anything is written; other sample rates are resampled to 16 kHz with a note.
    """
    src, out = Path(src), Path(out)
    if source not in SOURCES:
        raise DatasetError(f"unknown source {source!r}; expected one of {SOURCES}", field="source")
    if word_clock not in WORD_CLOCKS:
        raise DatasetError(f"unknown word clock {word_clock!r}; expected one of {WORD_CLOCKS}", field="word_clock")
    if derivative != "auto" and derivative not in DERIVATIVES and derivative != "raw":
        raise DatasetError(f"unknown derivative {derivative!r}; expected auto, raw or one of {DERIVATIVES}", field="derivative")
    if not src.is_dir():
        raise DatasetError("BIDS root not found", file=src)
    deriv_root = Path(derivatives_dir) if derivatives_dir else src / "derivatives"
    gentle_root = Path(transcripts_dir) if transcripts_dir else src / "stimuli" / "gentle"
    roots = [deriv_root / d for d in (DERIVATIVES if derivative == "auto" else ((derivative,) if derivative != "raw" else ()))]
    if derivative in ("auto", "raw"):
        roots += [deriv_root, src]
    pairs = read_participants(src / "participants.tsv")
    all_stories = list(dict.fromkeys(t for _, t, _ in pairs))
    all_pids = list(dict.fromkeys(p for p, _, _ in pairs))
    if stories:
        unknown = [s for s in stories if s not in all_stories]
        if unknown:
            raise DatasetError(f"unknown stories {unknown}; participants.tsv lists {all_stories}", file=src / "participants.tsv", field="task")
        pairs = [p for p in pairs if p[1] in stories]
    if participants:
        unknown = [p for p in participants if p not in all_pids and f"sub-{p}" not in all_pids]
        if unknown:
            raise DatasetError(f"unknown participants {unknown}", file=src / "participants.tsv", field="participant_id")
        want = [p if p in all_pids else f"sub-{p}" for p in participants]
        pairs = [p for p in pairs if p[0] in want]
        missing_pairs = set(want) - {p[0] for p in pairs}
        if missing_pairs:
            raise DatasetError(f"participants {sorted(missing_pairs)} did not hear the selected stories", file=src / "participants.tsv", field="task")
    strict = bool(stories) and bool(participants)

    # Locate files for every (participant, story, run).
    plan: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    for pid, story, cond in pairs:
        check_participant_id(pid, src / "participants.tsv")
        found = _bold_candidates(roots, pid, story, source)
        if not found:
            expected = deriv_root / "afni-smooth" / pid / "func" / f"{pid}_task-{story}_space-fsaverage6_hemi-L_desc-sm6.func.gii"
            if strict:
                raise DatasetError(f"no BOLD derivative for {pid} / {story} (expected e.g. {expected})", file=deriv_root, field="bold")
            skipped.append(f"{pid}/{story}")
            continue
        for run in sorted(found, key=lambda r: int(r.split("-")[1]) if r else 0):
            files = found[run]
            use_fs = ("fsL" in files or "fsR" in files) and (source in ("auto", "fsaverage6"))
            if use_fs:
                for h in ("fsL", "fsR"):
                    if h not in files:
                        raise DatasetError(f"hemisphere {h[-1]} missing for {pid} {story}{run}", file=files[('fsR' if h == 'fsL' else 'fsL')][0].parent, field="bold")
                    if len(files[h]) > 1:
                        raise DatasetError(f"several candidate files {[f.name for f in files[h]]}; choose one pipeline with --derivative",
                                           file=files[h][0].parent, field="bold")
                bold = {"kind": "fsaverage6", "L": files["fsL"][0], "R": files["fsR"][0]}
            else:
                if len(files.get("MNI", [])) != 1:
                    raise DatasetError(f"expected one MNI BOLD file for {pid} {story}{run}, found {[f.name for f in files.get('MNI', [])]}",
                                       file=deriv_root, field="bold")
                bold = {"kind": "MNI", "path": files["MNI"][0]}
            ref = bold.get("L") or bold.get("path")
            tr = _sidecar_tr(src, pid, story, run, ref)
            story_onset, file_start, stim_file, _ = _story_timing(src, pid, story, run)
            audio_onset = story_onset if word_clock == "story" else file_start
            key = story
            if cond not in ("", "n/a") and ((gentle_root / f"{story}{cond}").is_dir()):
                key = f"{story}{cond}"
            plan.setdefault(pid, []).append({"story": story, "key": key, "run": run, "bold": bold, "tr": tr, "offset": audio_onset,
                                             "file_start": file_start, "stim_file": stim_file})
    example = deriv_root / "afni-smooth" / "sub-XXX" / "func" / "sub-XXX_task-STORY_space-fsaverage6_hemi-L_desc-sm6.func.gii"
    for pid in (want if participants else ()):
        if pid not in plan:
            raise DatasetError(f"no BOLD derivative for participant {pid} (expected e.g. {example})", file=deriv_root, field="bold")
    for story in (stories or ()):
        if not any(it["story"] == story for items in plan.values() for it in items):
            raise DatasetError(f"no BOLD derivative for story {story!r} (expected e.g. {example})", file=deriv_root, field="bold")
    if not plan:
        raise DatasetError(
            f"no BOLD derivatives found for the selected participants/stories (looked in {[str(r) for r in roots]})",
            file=deriv_root, field="bold",
        )

    # Transcripts (one per story key), stimulus rows per run name.
    transcripts: dict[str, pd.DataFrame] = {}
    for items in plan.values():
        for it in items:
            k = it["key"]
            if k not in transcripts:
                folder = gentle_root / k
                f = folder / "align.csv" if (folder / "align.csv").is_file() else folder / "align.json"
                if not f.is_file():
                    raise DatasetError(f"Gentle transcript for story {k!r} not found (align.csv or align.json)",
                                       file=folder / "align.csv", field="transcript")
                transcripts[k] = read_gentle(f)
    run_names: dict[str, str] = {}
    for items in plan.values():
        for it in items:
            it["run_name"] = it["key"] + it["run"]
            run_names[it["run_name"]] = it["key"]
    stim_parts = []
    for rn, k in run_names.items():
        t = transcripts[k].copy()
        t["run"] = rn
        t["story"] = k
        stim_parts.append(t)
    stimulus = pd.concat(stim_parts, ignore_index=True)[["onset", "duration", "word", "run", "story", "aligned"]]
    tracks, audio_notes = _audio_tracks(plan, stimulus, Path(audio_dir) if audio_dir else src / "stimuli", audio)

    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    with WorkDir(out) as work:
        fmri = {}
        for pid, items in plan.items():
            trs = {it["tr"] for it in items}
            if len(trs) != 1:
                raise DatasetError(f"{pid}'s runs have different TRs {sorted(trs)}", file=src / pid, field="RepetitionTime")
            tr = trs.pop()
            counts = []
            for it in items:
                if it["bold"]["kind"] == "MNI":
                    counts.append(_nifti_n_trs(it["bold"]["path"]))
                else:
                    counts.append(None)
            arrays = []
            for it, n in zip(items, counts):
                if n is None:
                    _say(progress, f"reading {pid} {it['run_name']} (fsaverage6 -> fsaverage5)")
                    arr = _read_gifti_pair(it["bold"]["L"], it["bold"]["R"])
                    arrays.append(arr)
                else:
                    arrays.append(None)
            sizes = [a.shape[0] if a is not None else n for a, n in zip(arrays, counts)]
            data = work.array(pid, (int(sum(sizes)), N_VERTICES_FSAVERAGE5))
            row = 0
            runs = []
            for it, a, n in zip(items, arrays, sizes):
                if a is not None:
                    data[row:row + n] = a
                else:
                    _say(progress, f"projecting {pid} {it['run_name']} (MNI -> fsaverage5, {n} TRs)")
                    _project_nifti(it["bold"]["path"], data, row)
                runs.append(Run(it["run_name"], int(n), 0.0 - float(it["offset"]) + 0.0))
                row += n
            data.flush()
            fmri[pid] = FMRIRecording(pid, data, tr, runs, Space(kind="fsaverage5"))
        notes = list(audio_notes)
        last_word = stimulus.groupby("run")["onset"].max().to_dict()
        for pid, rec in fmri.items():
            for r in rec.runs:
                end = r.start + r.n_trs * rec.tr
                if last_word.get(r.name, -np.inf) > end:
                    notes.append(f"{pid} {r.name}: the transcript runs {last_word[r.name] - end:.1f} s past the end of the scan "
                                 "(truncated scan or wrong --word-clock?)")
        used_runs = {r.name for rec in fmri.values() for r in rec.runs}
        stimulus = stimulus[stimulus["run"].isin(used_runs)].reset_index(drop=True)
        kinds = sorted({it["bold"]["kind"] for items in plan.values() for it in items})
        meta = meta_for(
            "narratives", name or "narratives", "listening",
            f"Narratives spoken stories {sorted(set(stimulus['story']))}; BOLD from {kinds} derivatives resampled to fsaverage5; "
            f"word onsets on the transcript clock ({word_clock}), Run.start = -(audio onset in the scan).",
        )
        if skipped:
            notes.append(f"skipped {len(skipped)} participant/story pairs without BOLD files")
        return save_dataset(Dataset(meta, stimulus, fmri, audio=tracks), out, overwrite, notes=notes)
