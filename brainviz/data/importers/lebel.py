"""LeBel et al. 2023 (OpenNeuro ds003020) story listening, preprocessed responses.

Inputs (``SRC`` is the ds003020 root or its ``derivative/`` folder)
-------------------------------------------------------------------
* ``derivative/preprocessed_data/UTS0X/{story}.hf5`` - HDF5 with dataset ``data`` (TRs x
  voxels, the subject's cortical voxels in native space).
* ``derivative/TextGrids/{story}.TextGrid`` - Praat TextGrid (read with praatio); the word tier
  is the tier named ``word``/``words`` (else the second tier). Non-words (``sp``, ``sil``,
  ``{LG}``, ``{BR}``, ``{NS}``, ``{LS}``, ``sentence_start``/``sentence_end``, empty) are dropped
  as in the dataset's own code (``make_word_ds``). TextGrid time 0 = start of the story audio.
* ``derivative/respdict.json`` - story -> number of TRs ``N`` (optional but checked).
* Voxel mask (optional): ``derivative/pycortex-db/UTS0X/transforms/*/mask_thick.nii.gz`` or
  ``mask=``; the responses' columns are the mask's voxels in pycortex order (C order of the
  ``(z, y, x)`` volume). Without a mask (``mask='none'``) units are anonymous voxels (``rois``).

Timing assumption (the dataset authors' ``load_simulated_trfiles`` + trimming convention):
the TR series of a story has ``N - 5`` TRs of ``tr = 2.0`` s whose first trigger is 10 s before
the audio starts, and the responses drop the first 10 and last 5 TRs of that series, so
``data`` has ``N - 20`` rows and row ``j`` is the TR starting ``first_tr_time + j * tr`` =
``10 + 2 j`` s after the audio onset. brainviz therefore stores each story as one run on the
TextGrid clock with ``Run.start = first_tr_time`` (10 s) and ``tr`` 2.0 s (the scanner's TR is
2.0045 s; pass ``tr=2.0045`` to use it). A ``respdict.json`` count that disagrees with the
number of rows raises an error (``check_respdict=False`` skips the check).

Each subject has its own native voxel set, so every participant is a separate dataset under
``--out`` (``collection.json`` lists them).

Audio (optional, issue 15): ``stimuli/{story}.wav`` of the ds003020 root is attached to the
story's run with onset 0.0 on the TextGrid clock (TextGrid time 0 = start of the story audio);
see :func:`import_lebel`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from brainviz.data.dataset import Dataset, DatasetError, FMRIRecording, Run, Space
from brainviz.errors import OutputExistsError
from brainviz.data.importers._common import (
    ImportResult,
    WorkDir,
    copy_rows_into,
    check_participant_id,
    meta_for,
    save_collection,
    select,
)

BAD_WORDS = frozenset({"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp", "sil", ""})
TR = 2.0
FIRST_TR_TIME = 10.0  # (5 + trim 5) TRs x 2 s - 10 s sound start
RESPDICT_EXTRA = 20  # N (respdict) - rows (hf5) = 5 padding + 10 + 5 trimmed TRs

Progress = Callable[[str], None] | None


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def read_textgrid_words(path: Path) -> pd.DataFrame:
    """Words (onset, duration, word) of the word tier of a Praat TextGrid."""
    from praatio import textgrid

    if not path.is_file():
        raise DatasetError("TextGrid not found", file=path)
    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence", duplicateNamesMode="rename")
    except Exception as exc:  # praatio raises many types on malformed files
        raise DatasetError(f"unreadable TextGrid ({type(exc).__name__}: {exc})", file=path) from None
    names = list(tg.tierNames)
    if not names:
        raise DatasetError("no tiers", file=path, field="tiers")
    word_tier = next((n for n in names if n.strip().lower() in ("word", "words")), None)
    if word_tier is None:
        word_tier = next((n for n in names if "word" in n.lower()), names[1] if len(names) > 1 else names[0])
    tier = tg.getTier(word_tier)
    entries = getattr(tier, "entries", None)
    if entries is None:
        raise DatasetError(f"tier {word_tier!r} is not an interval tier", file=path, field=word_tier)
    rows = []
    for e in entries:
        start, end, label = float(e[0]), float(e[1]), str(e[2]).strip()
        if label.lower().strip("{}").strip() in BAD_WORDS:
            continue
        rows.append((start, max(0.0, end - start), label))
    if not rows:
        raise DatasetError(f"tier {word_tier!r} holds no words", file=path, field=word_tier)
    df = pd.DataFrame(rows, columns=["onset", "duration", "word"]).sort_values("onset", kind="stable").reset_index(drop=True)
    return df


def _derivative_root(src: Path) -> Path:
    if (src / "derivative").is_dir():
        return src / "derivative"
    if (src / "preprocessed_data").is_dir():
        return src
    raise DatasetError("not a ds003020 folder (no derivative/ or preprocessed_data/)", file=src)


def _find_mask(deriv: Path, subject: str) -> Path | None:
    base = deriv / "pycortex-db" / subject / "transforms"
    if not base.is_dir():
        return None
    hits = sorted(base.glob("*/mask_thick.nii.gz")) or sorted(base.glob("*/mask_thick.nii"))
    return hits[0] if hits else None


def _mask_space(mask_path: Path, n_cols: int, hf5: Path) -> Space:
    import nibabel as nib

    try:
        img = nib.load(str(mask_path))
        mask = np.asarray(img.dataobj) != 0
    except Exception as exc:
        raise DatasetError(f"unreadable mask ({exc})", file=mask_path) from None
    if mask.ndim != 3:
        raise DatasetError(f"mask must be 3-D, got shape {mask.shape}", file=mask_path, field="shape")
    zyx = np.argwhere(mask.T)  # pycortex order: C order over (z, y, x)
    coords = zyx[:, ::-1].astype(np.int64)
    if coords.shape[0] != n_cols:
        raise DatasetError(f"mask has {coords.shape[0]} voxels but {hf5.name} has {n_cols} columns", file=mask_path, field="voxels")
    return Space(kind="volume", template="native", affine=np.asarray(img.affine, dtype=float), shape=tuple(int(s) for s in mask.shape), coords=coords)


def _audio_tracks(pre: Path, subjects: Sequence[str], stories: Sequence[str] | None, grids: Path,
                  words_cache: dict[str, pd.DataFrame], audio_root: Path, audio: bool | None):
    """Audio of every story to import (issue 15): ``(tracks by story, notes)``, read and checked
    before anything is written (:func:`brainviz.data.audio.load_audio_tracks`, onset 0.0)."""
    from brainviz.data.audio import AUDIO_SUFFIXES, load_audio_tracks

    if audio is False:
        return {}, []
    wanted: list[str] = []
    for subj in subjects:
        for p in sorted((pre / subj).glob("*.hf5")):
            if (not stories or p.stem in stories) and p.stem not in wanted:
                wanted.append(p.stem)
    files: dict[str, Path] = {}
    missing: list[str] = []
    for story in wanted:
        found = [audio_root / f"{story}{suf}" for suf in AUDIO_SUFFIXES if (audio_root / f"{story}{suf}").is_file()]
        if found:
            files[story] = found[0]
        else:
            missing.append(story)
    if missing and audio:
        raise DatasetError(f"stimulus audio of story {missing[0]!r} not found (audio=True requires it)",
                           file=audio_root / f"{missing[0]}.wav", field="audio")
    notes = []
    if missing:
        notes.append(f"no stimulus audio found for stories {missing} (looked for {audio_root}/<story>.wav or .flac); "
                     "imported without it")
    if not files:
        return {}, notes
    parts = []
    for story in files:
        if story not in words_cache:
            words_cache[story] = read_textgrid_words(grids / f"{story}.TextGrid")
        parts.append(words_cache[story].assign(run=story))
    tracks, audio_notes = load_audio_tracks(files, pd.concat(parts, ignore_index=True), {s: 0.0 for s in files})
    for story, track in tracks.items():
        track.source = f"ds003020 stimulus {files[story].name}"
    return tracks, notes + audio_notes


def import_lebel(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    participants: Sequence[str] | None = None,
    stories: Sequence[str] | None = None,
    mask: str | os.PathLike | None = None,
    tr: float = TR,
    first_tr_time: float = FIRST_TR_TIME,
    check_respdict: bool = True,
    audio: bool | None = None,
    audio_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    name: str | None = None,
    progress: Progress = None,
) -> ImportResult:
    """Import ds003020 preprocessed responses; one dataset per participant under ``out``.

    ``mask``: a mask NIfTI (voxel order as pycortex), ``'none'`` for an anonymous-voxel
    ``rois`` space, or ``None`` to use ``pycortex-db/<subject>/transforms/*/mask_thick.nii.gz``.

    Audio (issue 15): ``audio_dir/{story}.wav`` (or ``.flac``; ``audio_dir`` defaults to the
    ds003020 root's ``stimuli/``) is attached to the story's run with onset 0.0 (the TextGrid
    clock), as ``import generic --audio`` does. ``audio=None`` (default) attaches the files
    present and notes the missing ones, ``True`` requires them, ``False`` skips audio.
    Unreadable, clipped or too-short files raise :class:`DatasetError` naming the file before
    anything is written; other sample rates are resampled to 16 kHz with a note.
    """
    import h5py

    src, out = Path(src), Path(out)
    if not tr > 0:
        raise DatasetError(f"TR must be > 0 s, got {tr}", field="tr")
    deriv = _derivative_root(src)
    pre = deriv / "preprocessed_data"
    if not pre.is_dir():
        raise DatasetError("preprocessed_data/ folder missing", file=pre)
    subjects = sorted(p.name for p in pre.iterdir() if p.is_dir())
    if not subjects:
        raise DatasetError("no subject folders (UTS01 ...)", file=pre)
    chosen = select(subjects, participants, "participants", pre, aliases=lambda w: [f"UTS{w}", f"UTS0{w}"])
    grids = deriv / "TextGrids"
    respdict = None
    rd_path = deriv / "respdict.json"
    if rd_path.is_file():
        try:
            respdict = json.loads(rd_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"not valid JSON ({exc})", file=rd_path) from None
        if not isinstance(respdict, dict):
            raise DatasetError("must map story -> number of TRs", file=rd_path)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    words_cache: dict[str, pd.DataFrame] = {}
    root = src if deriv != src else src.parent  # the ds003020 root (SRC may be its derivative/ folder)
    tracks, notes = _audio_tracks(pre, chosen, stories, grids, words_cache,
                                  Path(audio_dir) if audio_dir else root / "stimuli", audio)
    with WorkDir(out) as work:
        datasets = {}
        for subj in chosen:
            pid = check_participant_id(subj, pre)
            files = {p.stem: p for p in sorted((pre / subj).glob("*.hf5"))}
            if not files:
                raise DatasetError("no .hf5 response files", file=pre / subj)
            story_list = list(files)
            if stories:
                missing = [s for s in stories if s not in files]
                if missing:
                    raise DatasetError(f"no responses for stories {missing}", file=pre / subj, field="stories")
                story_list = [s for s in story_list if s in stories]
            handles = []
            try:
                arrays, runs, stim_parts, n_cols = [], [], [], None
                for story in story_list:
                    f = files[story]
                    try:
                        h = h5py.File(f, "r")
                    except OSError as exc:
                        raise DatasetError(f"not a readable HDF5 file ({exc})", file=f) from None
                    handles.append(h)
                    if "data" not in h:
                        raise DatasetError(f"dataset missing (keys: {list(h.keys())})", file=f, field="data")
                    d = h["data"]
                    if d.ndim != 2:
                        raise DatasetError(f"must be 2-D (TRs x voxels), got shape {d.shape}", file=f, field="data")
                    if n_cols is None:
                        n_cols = d.shape[1]
                    elif d.shape[1] != n_cols:
                        raise DatasetError(f"has {d.shape[1]} voxels but {story_list[0]}.hf5 has {n_cols}", file=f, field="data")
                    if respdict is not None and check_respdict and story in respdict:
                        try:
                            n_resp = int(respdict[story])
                        except (TypeError, ValueError):
                            raise DatasetError(f"must be a number, got {respdict[story]!r}", file=rd_path, field=story) from None
                        if d.shape[0] != n_resp - RESPDICT_EXTRA:
                            raise DatasetError(
                                f"respdict says {n_resp} TRs, so {story}.hf5 should have {n_resp - RESPDICT_EXTRA} rows "
                                f"(N - 20: 5 padding + first 10 + last 5 TRs trimmed) but it has {d.shape[0]}; "
                                "pass check_respdict=False (--ignore-respdict) to import with first_tr_time anyway",
                                file=rd_path, field=story,
                            )
                    if story not in words_cache:
                        words_cache[story] = read_textgrid_words(grids / f"{story}.TextGrid")
                    w = words_cache[story].copy()
                    w["run"] = story
                    w["story"] = story
                    stim_parts.append(w)
                    runs.append(Run(story, int(d.shape[0]), float(first_tr_time)))
                    arrays.append((f, d))
                if mask is not None and str(mask).lower() == "none":
                    space = Space(kind="rois", roi_names=[f"v{i:06d}" for i in range(n_cols)])
                else:
                    mpath = Path(mask) if mask is not None else _find_mask(deriv, subj)
                    if mpath is None:
                        raise DatasetError(
                            f"voxel mask for {subj} not found (expected pycortex-db/{subj}/transforms/*/mask_thick.nii.gz); "
                            "pass --mask FILE, or --mask none for anonymous voxels",
                            file=deriv / "pycortex-db" / subj, field="mask",
                        )
                    space = _mask_space(mpath, n_cols, arrays[0][0])
                total = sum(d.shape[0] for _, d in arrays)
                data = work.array(pid, (total, n_cols))
                row = 0
                for f, d in arrays:
                    _say(progress, f"converting {subj}/{f.name} ({d.shape[0]} TRs x {d.shape[1]} voxels)")
                    copy_rows_into(data, row, d, file=f, field="data")
                    row += d.shape[0]
                data.flush()
            finally:
                for h in handles:
                    h.close()
            stimulus = pd.concat(stim_parts, ignore_index=True)
            rec = FMRIRecording(pid, data, float(tr), runs, space)
            meta = meta_for(
                "lebel", f"{name or 'lebel'}-{pid}", "listening",
                f"LeBel et al. 2023 story listening, subject {subj}, {len(runs)} stories; words from TextGrids on the audio clock; "
                f"row j of a story = TR starting {first_tr_time:g} + {tr:g} j s after audio onset (authors' trimming convention).",
            )
            own = {story: tracks[story] for story in story_list if story in tracks}
            datasets[pid] = Dataset(meta, stimulus, {pid: rec}, audio=own)
        return save_collection(
            datasets, out, overwrite, fmt="lebel",
            note=("Each ds003020 subject has its own native voxel set, and a brainviz dataset has one shared space, so every "
                  "participant is a separate dataset."),
            notes=notes,
        )
