"""Preprocessing and example construction as in Schwartz, Toneva & Wehbe (2019).

fMRI, per run: drop the first ``trim_start`` (20) and last ``trim_end`` (15) TRs, then linearly
detrend and z-score every unit over the kept TRs. Each kept TR at time ``t`` is one example
whose input is the words of the same run with onset in ``[t - window, t)`` (window 10.1 s, about
20 words when reading at 2 words/s) and whose target is that TR.

MEG: epochs of the content words that appear in the windows of kept fMRI examples (words tied
to dropped TRs are not used), linearly detrended over words and standardised so that every
sensor x time-bin component has mean 0 and variance 1 over the content words of each run.

Cross-validation never shuffles TRs (:mod:`brainviz.data.splits`): leave-one-run-out with >= 2
runs, contiguous blocks with buffer TRs otherwise (``cv`` and ``buffer`` below; :func:`folds`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import detrend as _detrend

from brainviz.config import ConfigError, JobConfig
from brainviz.data.dataset import Dataset, DatasetError, FMRIRecording
from brainviz.data.splits import DEFAULT_BUFFER, Fold, SplitError, make_folds, parse_cv


@dataclasses.dataclass(frozen=True)
class PreprocessConfig(JobConfig):
    """Preprocessing options (defaults = the 2019 paper).

    Attributes
    ----------
    trim_start, trim_end : int
        TRs dropped at the start and end of every run.
    window : float
        Seconds of preceding words that form an fMRI example's input.
    detrend, zscore : bool
        Linear detrend / standardise each unit within run (over kept TRs).
    drop_empty : bool
        Drop examples whose window holds no word (e.g. during fixation).
    cv : str
        Cross-validation: ``auto`` (leave-one-run-out with >= 2 runs, else ``blocks:4``),
        ``runs`` or ``blocks:K`` (K contiguous blocks); see :mod:`brainviz.data.splits`.
    buffer : int
        Blocked CV: TRs dropped from training on each side of the held-out block.
    """

    trim_start: int = 20
    trim_end: int = 15
    window: float = 10.1
    detrend: bool = True
    zscore: bool = True
    drop_empty: bool = True
    cv: str = "auto"
    buffer: int = DEFAULT_BUFFER

    def validate(self) -> None:
        if self.trim_start < 0 or self.trim_end < 0:
            raise ConfigError("PreprocessConfig.trim_start/trim_end must be >= 0")
        if not self.window > 0:
            raise ConfigError(f"PreprocessConfig.window must be > 0 seconds, got {self.window}")
        parse_cv(self.cv)  # raises ConfigError naming the field
        if int(self.buffer) != self.buffer or self.buffer < 0:
            raise ConfigError(f"PreprocessConfig.buffer must be a whole number of TRs >= 0, got {self.buffer}")


@dataclasses.dataclass
class FMRIExamples:
    """fMRI examples of one participant after preprocessing.

    Attributes
    ----------
    data : float32 array (n_examples, n_units)
        Targets (detrended, z-scored within run).
    tr_index : int array (n_examples,)
        Row of each example in the participant's full recording.
    runs : array of str (n_examples,)
    times : float array (n_examples,)
        Acquisition time of each TR on its run's clock.
    windows : list of int arrays
        Stimulus rows (words) that form each example's input, in time order.
    """

    participant: str
    data: np.ndarray
    tr_index: np.ndarray
    runs: np.ndarray
    times: np.ndarray
    windows: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.tr_index)

    def subset(self, index: np.ndarray) -> "FMRIExamples":
        index = np.asarray(index)
        return FMRIExamples(
            self.participant, self.data[index], self.tr_index[index], self.runs[index],
            self.times[index], [self.windows[i] for i in index],
        )


@dataclasses.dataclass
class MEGExamples:
    """MEG epochs of content words: ``data`` (n_words, n_sensors, n_bins), float32."""

    participant: str
    data: np.ndarray
    word_rows: np.ndarray
    runs: np.ndarray


def standardize_within_runs(
    data: np.ndarray, runs: np.ndarray, detrend: bool = True, zscore: bool = True
) -> np.ndarray:
    """Linearly detrend and z-score along axis 0 separately within each run (float32 out).

    Constant units become 0 rather than NaN.
    """
    out = np.array(data, dtype=np.float64, copy=True)
    for run in dict.fromkeys(runs):
        idx = np.flatnonzero(runs == run)
        block = out[idx]
        if detrend and len(idx) > 1:
            block = _detrend(block, axis=0, type="linear")
        if zscore:
            block = block - block.mean(axis=0)
            sd = block.std(axis=0)
            block = np.divide(block, sd, out=np.zeros_like(block), where=sd > 1e-12 * (1 + np.abs(block).max(initial=0)))
        out[idx] = block
    return out.astype(np.float32)


def kept_tr_mask(recording: FMRIRecording, config: PreprocessConfig) -> np.ndarray:
    """Boolean mask of the TRs kept after trimming every run."""
    mask = np.zeros(recording.data.shape[0], dtype=bool)
    start = 0
    for run in recording.runs:
        if run.n_trs <= config.trim_start + config.trim_end:
            raise DatasetError(
                f"run {run.name!r} of participant {recording.participant!r} has {run.n_trs} TRs, "
                f"not more than trim_start + trim_end = {config.trim_start + config.trim_end}",
                field="runs",
            )
        mask[start + config.trim_start : start + run.n_trs - config.trim_end] = True
        start += run.n_trs
    return mask


def word_windows(
    dataset: Dataset, runs: np.ndarray, times: np.ndarray, window: float
) -> list[np.ndarray]:
    """Stimulus rows with onset in ``[t - window, t)`` in the same run, for each (run, t)."""
    stim = dataset.stimulus
    stim_runs = stim["run"].astype(str).to_numpy()
    onsets = stim["onset"].to_numpy(dtype=float)
    by_run = {r: np.flatnonzero(stim_runs == r) for r in dict.fromkeys(stim_runs)}
    out = []
    for run, t in zip(runs, times):
        rows = by_run.get(str(run), np.array([], dtype=int))
        o = onsets[rows]  # sorted within run (validated on load)
        lo = np.searchsorted(o, t - window, side="left")
        hi = np.searchsorted(o, t, side="left")
        out.append(rows[lo:hi])
    return out


def fmri_examples(
    dataset: Dataset, participant: str, config: PreprocessConfig | None = None
) -> FMRIExamples:
    """Preprocessed fMRI examples (targets + word windows) of one participant."""
    config = config or PreprocessConfig()
    rec = dataset.fmri_of(participant)
    keep = kept_tr_mask(rec, config)
    tr_index = np.flatnonzero(keep)
    runs = rec.run_labels[keep].astype(str)
    times = rec.times[keep]
    windows = word_windows(dataset, runs, times, config.window)
    if config.drop_empty:
        nonempty = np.array([len(w) > 0 for w in windows], dtype=bool)
        tr_index, runs, times = tr_index[nonempty], runs[nonempty], times[nonempty]
        windows = [w for w, k in zip(windows, nonempty) if k]
    if len(tr_index) == 0:
        raise DatasetError(f"participant {participant!r} has no examples left after preprocessing", field="runs")
    data = standardize_within_runs(np.asarray(rec.data[tr_index]), runs, config.detrend, config.zscore)
    return FMRIExamples(participant, data, tr_index, runs, times, windows)


def leave_one_run_out(runs: np.ndarray) -> list[Fold]:
    """One fold per run label: train on the other runs, test on this one."""
    try:
        return make_folds(runs, "runs", min_test=1, min_train=1)
    except SplitError as exc:
        raise DatasetError(str(exc), field="runs") from None


def folds(examples: FMRIExamples, config: PreprocessConfig | None = None) -> list[Fold]:
    """Cross-validation folds of preprocessed examples following ``config.cv`` / ``config.buffer``.

    Leave-one-run-out with >= 2 runs (``cv="auto"``), contiguous blocks with buffers otherwise;
    buffers count acquisition TRs (``examples.tr_index``), so trimmed or dropped TRs are gaps.
    An impossible split raises :class:`DatasetError` saying which option to use instead.
    """
    config = config or PreprocessConfig()
    try:
        return make_folds(examples.runs, config.cv, config.buffer, tr_index=examples.tr_index,
                          what=f"participant {examples.participant!r}")
    except SplitError as exc:
        raise DatasetError(str(exc), field="cv") from None


def meg_word_rows(dataset: Dataset, config: PreprocessConfig | None = None) -> np.ndarray:
    """Stimulus rows of the content words usable for MEG training.

    Content words that fall in the window of at least one kept fMRI example (of the first
    fMRI participant; all share the stimulus timing). Without fMRI: all content words.
    """
    config = config or PreprocessConfig()
    from brainviz.data.features import annotate_stimulus

    stim = dataset.stimulus if "is_content" in dataset.stimulus else annotate_stimulus(dataset.stimulus)
    content = stim["is_content"].to_numpy(dtype=bool)
    if dataset.fmri:
        ex = fmri_examples(dataset, dataset.participants[0], config)
        used = np.zeros(len(stim), dtype=bool)
        for w in ex.windows:
            used[w] = True
        content = content & used
    return np.flatnonzero(content)


def meg_examples(
    dataset: Dataset, participant: str, config: PreprocessConfig | None = None
) -> MEGExamples:
    """Content-word MEG epochs, detrended and standardised within run."""
    config = config or PreprocessConfig()
    rec = dataset.meg_of(participant)
    rows = meg_word_rows(dataset, config)
    epoch_of_row = {int(r): i for i, r in enumerate(rec.word_index)}
    have = np.array([int(r) in epoch_of_row for r in rows], dtype=bool)
    rows = rows[have]
    if rows.size == 0:
        raise DatasetError(f"MEG participant {participant!r} has no content-word epochs", field="meg")
    epochs = np.asarray(rec.data[[epoch_of_row[int(r)] for r in rows]])
    runs = dataset.stimulus["run"].astype(str).to_numpy()[rows]
    flat = epochs.reshape(len(rows), -1)
    flat = standardize_within_runs(flat, runs, config.detrend, config.zscore)
    return MEGExamples(participant, flat.reshape(epochs.shape), rows, runs)
