"""Audio stimuli of listening datasets: one 16 kHz mono audio file per run.

A dataset may carry the sound its participants heard. ``dataset.json`` then has an ``audio``
entry (datasets without it load exactly as before)::

    "audio": {
      "sample_rate": 16000,
      "runs": {
        "<run>": {"file": "audio/<run>.flac", "onset": 0.0, "n_samples": 6800000,
                  "source": "...", "note": "..."}
      }
    }

``onset`` is the time (s, on the run's clock, the same clock as the word onsets and
``Run.start``) at which the file's first sample plays; before it and after the file's end the
run is silent. Several runs may name the same file (a story heard twice). Files are WAV or
FLAC, read with :mod:`soundfile`; the dataset writer stores 16-bit FLAC.

Input checks (:func:`read_audio_file`, :func:`check_track_covers_words`), done before anything
is written by an importer:

* missing / unreadable file → :class:`~brainviz.errors.DatasetError` naming the file;
* a sample rate other than 16 kHz → resampled (``scipy.signal.resample_poly``) with a note
  kept in the manifest (``note``) and returned to the caller;
* several channels → averaged to mono, with a note;
* clipped audio (3 or more consecutive samples at full scale) → error with the time;
* audio shorter than its run's words (the last word ends after the file) → error.

Examples
--------
>>> from brainviz.data import load_dataset                                  # doctest: +SKIP
>>> ds = load_dataset("data_cache/datasets/sim/listening")                  # doctest: +SKIP
>>> track = ds.audio["listening_1"]                                         # doctest: +SKIP
>>> x = track.window(30.0, 40.0)   # 10 s of the run clock, zero outside the file   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from brainviz.errors import DatasetError

SAMPLE_RATE = 16000
AUDIO_DIR = "audio"
AUDIO_SUFFIXES = (".wav", ".flac")
CLIP_LEVEL = 0.999  # |x| at or above this (of full scale) counts as clipped
CLIP_RUN = 3  # this many consecutive full-scale samples = clipped
WORD_SLACK_S = 0.05  # a word may end this much after the file (rounding of aligners)


@dataclasses.dataclass
class AudioTrack:
    """The audio of one run.

    Parameters
    ----------
    run : str
        Run label (as in the stimulus ``run`` column).
    path : Path or None
        File on disk (a loaded dataset, or an import source once checked).
    samples : numpy.ndarray or None
        float32 mono samples at :data:`SAMPLE_RATE` held in memory (e.g. simulated audio not
        yet saved, or a resampled import). When both are set, ``samples`` wins.
    onset : float
        Run-clock time (s) of the first sample.
    n_samples : int
        Number of samples at 16 kHz.
    source : str
        Where the sound comes from (file name, synthesizer); "simulated" for simulated audio.
    note : str
        Conversions applied on import (resampling, down-mixing).
    """

    run: str
    path: Path | None = None
    samples: np.ndarray | None = None
    onset: float = 0.0
    n_samples: int = 0
    source: str = ""
    note: str = ""

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / SAMPLE_RATE

    @property
    def end(self) -> float:
        """Run-clock time (s) at which the file ends."""
        return self.onset + self.duration

    def read(self) -> np.ndarray:
        """All samples (float32, mono, 16 kHz)."""
        if self.samples is not None:
            return np.asarray(self.samples, dtype=np.float32)
        if self.path is None:
            raise DatasetError(f"audio of run {self.run!r} has neither samples nor a file", field=f"audio.runs.{self.run}")
        x, _ = read_audio_file(self.path, field=f"audio.runs.{self.run}.file")
        return x

    def window(self, start: float, stop: float, samples: np.ndarray | None = None) -> np.ndarray:
        """Samples of run-clock times ``[start, stop)``, zero where the file has none.

        ``samples`` : the result of :meth:`read` (pass it when cutting many windows).
        """
        x = self.read() if samples is None else samples
        return cut_window(x, self.onset, start, stop)


def cut_window(x: np.ndarray, onset: float, start: float, stop: float) -> np.ndarray:
    """``[start, stop)`` s of a run clock from samples ``x`` whose first sample plays at
    ``onset``; zero-padded outside the file."""
    i0 = int(round((start - onset) * SAMPLE_RATE))
    n = int(round((stop - start) * SAMPLE_RATE))
    out = np.zeros(max(n, 0), dtype=np.float32)
    a, b = max(i0, 0), min(i0 + n, len(x))
    if b > a:
        out[a - i0 : b - i0] = x[a:b]
    return out


# --------------------------------------------------------------------------------------
# reading and checking files
# --------------------------------------------------------------------------------------


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    frac = Fraction(SAMPLE_RATE, int(rate)).limit_denominator(1000)
    up, down = frac.numerator, frac.denominator
    g = gcd(up, down)
    return resample_poly(x, up // g, down // g).astype(np.float32)


def audio_info(path: str | os.PathLike, field: str = "audio") -> Any:
    """``soundfile.info`` of an audio file, or a :class:`DatasetError` naming it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetError("audio file missing", file=path, field=field)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise DatasetError(f"unsupported audio file type {path.suffix!r}; use WAV or FLAC", file=path, field=field)
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        raise DatasetError(f"unreadable audio file ({exc})", file=path, field=field) from None
    if info.frames <= 0:
        raise DatasetError("audio file holds no samples", file=path, field=field)
    return info


def read_audio_file(path: str | os.PathLike, field: str = "audio", check_clipping: bool = True) -> tuple[np.ndarray, str]:
    """Read a WAV / FLAC file as float32 mono 16 kHz samples.

    Returns
    -------
    samples, note
        ``note`` says what was converted ("" when the file was already 16 kHz mono).

    Raises
    ------
    DatasetError
        Missing or unreadable file, clipped audio (naming the time of the first clipped
        samples), non-finite samples.
    """
    import soundfile as sf

    path = Path(path)
    info = audio_info(path, field)
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        raise DatasetError(f"unreadable audio file ({exc})", file=path, field=field) from None
    notes = []
    if not np.all(np.isfinite(x)):
        raise DatasetError("non-finite samples (NaN or inf)", file=path, field=field)
    if check_clipping:
        t = first_clip(x)
        if t is not None:
            raise DatasetError(f"clipped audio: {CLIP_RUN}+ consecutive samples at full scale at {t / rate:.3f} s "
                               "(re-export it at a lower gain)", file=path, field=field)
    if x.shape[1] > 1:
        notes.append(f"{x.shape[1]} channels averaged to mono")
        x = x.mean(axis=1, keepdims=True)
    x = x[:, 0]
    if rate != SAMPLE_RATE:
        notes.append(f"resampled from {rate} Hz to {SAMPLE_RATE} Hz ({info.format})")
        x = _resample(x, rate)
    return np.ascontiguousarray(x, dtype=np.float32), "; ".join(notes)


def first_clip(x: np.ndarray) -> int | None:
    """Index of the first run of :data:`CLIP_RUN` consecutive full-scale samples (any
    channel), or None."""
    x = np.asarray(x)
    full = np.abs(x) >= CLIP_LEVEL
    if x.ndim == 2:
        full = full.any(axis=1)
    if full.sum() < CLIP_RUN:
        return None
    run = np.convolve(full.astype(np.int8), np.ones(CLIP_RUN, dtype=np.int8), mode="valid")
    hit = np.flatnonzero(run >= CLIP_RUN)
    return int(hit[0]) if hit.size else None


def check_track_covers_words(track: AudioTrack, stimulus, file: Any = None) -> None:
    """Raise when the run's last word ends after the audio (beyond :data:`WORD_SLACK_S`)."""
    rows = stimulus["run"].astype(str).to_numpy() == track.run
    if not rows.any():
        raise DatasetError(f"audio for run {track.run!r}, which has no words in the stimulus", file=file,
                           field=f"audio.runs.{track.run}")
    ends = stimulus["onset"].to_numpy(dtype=float)[rows] + stimulus["duration"].to_numpy(dtype=float)[rows]
    last = float(ends.max())
    if last > track.end + WORD_SLACK_S:
        raise DatasetError(f"audio too short for its words: it ends at {track.end:.2f} s (run clock) but the last word "
                           f"of run {track.run!r} ends at {last:.2f} s", file=file or track.path,
                           field=f"audio.runs.{track.run}")
    first = float(stimulus["onset"].to_numpy(dtype=float)[rows].min())
    if first < track.onset - WORD_SLACK_S:
        raise DatasetError(f"audio starts at {track.onset:.2f} s (run clock), after the first word of run "
                           f"{track.run!r} ({first:.2f} s)", file=file or track.path, field=f"audio.runs.{track.run}.onset")


def track_from_file(run: str, path: str | os.PathLike, onset: float = 0.0, field: str | None = None) -> AudioTrack:
    """Read and check one run's audio file (see :func:`read_audio_file`); samples stay in memory."""
    field = field or f"audio.{run}"
    x, note = read_audio_file(path, field=field)
    return AudioTrack(run=str(run), path=Path(path), samples=x, onset=float(onset), n_samples=int(len(x)),
                      source=Path(path).name, note=note)


def load_audio_tracks(spec: Mapping[str, Any] | str | os.PathLike | None, stimulus, onsets: Mapping[str, float] | None = None,
                      ) -> tuple[dict[str, AudioTrack], list[str]]:
    """Audio tracks of an import, all read and checked before anything is written.

    Parameters
    ----------
    spec : mapping run -> file, a single file (the stimulus must have one run), a folder
        holding ``<run>.wav`` / ``<run>.flac`` for every run, or None.
    stimulus : DataFrame
        The words (``run``, ``onset``, ``duration``).
    onsets : mapping run -> float, optional
        Run-clock time of each file's first sample (default 0).

    Returns
    -------
    tracks, notes
    """
    if spec is None or (isinstance(spec, (Mapping, list, tuple)) and not spec):
        return {}, []
    runs = list(dict.fromkeys(stimulus["run"].astype(str)))
    files: dict[str, Path] = {}
    if isinstance(spec, Mapping):
        files = {str(k): Path(v) for k, v in spec.items()}
    else:
        p = Path(spec)
        if p.is_dir():
            for run in runs:
                found = [p / f"{run}{s}" for s in AUDIO_SUFFIXES if (p / f"{run}{s}").is_file()]
                if not found:
                    raise DatasetError(f"no audio file for run {run!r} ({run}.wav or {run}.flac)", file=p, field="audio")
                files[run] = found[0]
        else:
            if len(runs) != 1:
                raise DatasetError(f"one audio file given for {len(runs)} runs {runs}; pass RUN=FILE for each run",
                                   file=p, field="audio")
            files[runs[0]] = p
    unknown = [r for r in files if r not in runs]
    if unknown:
        raise DatasetError(f"audio for unknown run(s) {unknown}; the stimulus runs are {runs}", field="audio")
    missing = [r for r in runs if r not in files]
    if missing:
        raise DatasetError(f"no audio for run(s) {missing}: give one file per run (RUN=FILE)", field="audio")
    tracks, notes = {}, []
    for run, path in files.items():
        track = track_from_file(run, path, (onsets or {}).get(run, 0.0), field=f"audio.{run}")
        check_track_covers_words(track, stimulus, file=path)
        tracks[run] = track
        if track.note:
            notes.append(f"{path}: {track.note}")
    return tracks, notes


# --------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------


def write_tracks(root: Path, tracks: Mapping[str, AudioTrack]) -> dict[str, Any]:
    """Write the tracks under ``root/audio/`` (16-bit FLAC; an already-converted file of a
    loaded dataset is copied) and return the manifest entry."""
    import soundfile as sf

    from brainviz._io import check_label

    (root / AUDIO_DIR).mkdir(exist_ok=True)
    entry: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "runs": {}}
    written: dict[int, str] = {}  # id of a samples array / resolved path -> relative file (shared files)
    for run, track in tracks.items():
        check_label(run, field="audio.runs", what="run name")
        key = id(track.samples) if track.samples is not None else hash(str(Path(track.path).resolve()))
        if key in written:
            rel = written[key]
        else:
            rel = f"{AUDIO_DIR}/{run}.flac"
            if track.samples is None and track.path is not None and track.note == "" and Path(track.path).suffix.lower() == ".flac":
                shutil.copyfile(track.path, root / rel)
            else:
                x = np.clip(track.read(), -1.0, 32767 / 32768)
                sf.write(str(root / rel), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            written[key] = rel
        entry["runs"][run] = {"file": rel, "onset": float(track.onset), "n_samples": int(track.n_samples),
                              "source": str(track.source), "note": str(track.note)}
    return entry


def tracks_from_manifest(entry: Any, root: Path, mf: Path) -> dict[str, AudioTrack]:
    """Tracks described by the manifest's ``audio`` entry (files checked by header only)."""
    from brainviz._io import check_label, confined

    if entry is None:
        return {}
    if not isinstance(entry, dict) or not isinstance(entry.get("runs"), dict):
        raise DatasetError("must be an object with 'sample_rate' and 'runs'", file=mf, field="audio")
    if entry.get("sample_rate") != SAMPLE_RATE:
        raise DatasetError(f"must be {SAMPLE_RATE}, got {entry.get('sample_rate')!r}", file=mf, field="audio.sample_rate")
    tracks = {}
    for run, item in entry["runs"].items():
        fld = f"audio.runs.{run}"
        check_label(run, file=mf, field="audio.runs")
        if not isinstance(item, dict) or "file" not in item:
            raise DatasetError("must be an object with a 'file'", file=mf, field=fld)
        path = confined(root, item["file"], file=mf, field=f"{fld}.file")
        info = audio_info(path, field=f"{fld}.file")
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise DatasetError(f"must be {SAMPLE_RATE} Hz mono, got {info.samplerate} Hz x {info.channels} channels",
                               file=path, field=f"{fld}.file")
        onset = item.get("onset", 0.0)
        if isinstance(onset, bool) or not isinstance(onset, (int, float)) or not np.isfinite(onset):
            raise DatasetError(f"must be a finite number of seconds, got {onset!r}", file=mf, field=f"{fld}.onset")
        tracks[run] = AudioTrack(run=run, path=path, onset=float(onset), n_samples=int(info.frames),
                                 source=str(item.get("source", "")), note=str(item.get("note", "")))
    return tracks


def validate_tracks(tracks: Mapping[str, AudioTrack], stimulus, file: Any = None) -> None:
    """Every track names a run of the stimulus and covers its words."""
    for run, track in tracks.items():
        if track.run != run:
            raise DatasetError(f"track of run {track.run!r} filed under {run!r}", file=file, field=f"audio.runs.{run}")
        check_track_covers_words(track, stimulus, file=file)


def audio_file_hashes(tracks: Mapping[str, AudioTrack]) -> list[Any]:
    """Content-hash parts of the tracks (for :meth:`Dataset.content_hash`)."""
    from brainviz._io import content_hash

    parts: list[Any] = []
    for run in sorted(tracks):
        t = tracks[run]
        if t.path is not None and t.samples is None:
            from brainviz.cache import cached_file_hash

            parts.append(["audio", run, t.onset, cached_file_hash(t.path)])
        else:
            parts.append(["audio", run, t.onset, content_hash(t.read())])
    return parts
