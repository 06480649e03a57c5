"""Training data for brain-tuning: word windows (sequences) with fMRI and MEG targets.

A :class:`Corpus` holds every distinct word window used by a job once (participants who
share the stimulus timing share windows), tokenised once, plus

- per fMRI participant, the preprocessed targets of its kept TRs and the sequence of each;
- per MEG participant, the standardised content-word epochs (flattened sensors x bins) and
  a map from stimulus row to epoch;
- per sequence, the token positions of the first word piece of every word and that word's
  stimulus row, length and log frequency (the MEG head's inputs).

Folds select sequences by run, so a held-out run's words never reach training.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from brainviz.data.dataset import Dataset, DatasetError
from brainviz.data.preprocess import PreprocessConfig, fmri_examples, meg_examples
from brainviz.models.brain_model import TokenizedWindows, tokenize_windows


@dataclasses.dataclass
class FMRITargets:
    """Targets of one fMRI participant.

    ``data`` is what training sees (shuffled in time within run for the null control),
    ``real`` the preprocessed recording (for held-out metrics).
    """

    participant: str
    seq: np.ndarray          # (n,) sequence of each example
    data: np.ndarray         # (n, units) float32
    real: np.ndarray         # (n, units) float32
    tr_index: np.ndarray     # (n,) rows into the full recording
    runs: np.ndarray         # (n,) run labels
    row_of_seq: np.ndarray   # (n_seq,) example index of each sequence or -1

    @property
    def n_units(self) -> int:
        return int(self.data.shape[1])


@dataclasses.dataclass
class MEGTargets:
    participant: str
    data: np.ndarray         # (n_words, sensors * bins) float32
    row_of_word: np.ndarray  # (n_stimulus_rows,) epoch index or -1
    n_sensors: int
    n_bins: int


@dataclasses.dataclass
class Corpus:
    rows: list[np.ndarray]           # stimulus rows of each sequence
    runs: np.ndarray                 # run of each sequence
    tokens: TokenizedWindows
    fp_pos: list[np.ndarray]         # token positions of first word pieces, per sequence
    fp_row: list[np.ndarray]         # stimulus rows of those words, per sequence
    fp_offset: np.ndarray            # (n_seq + 1,) offsets into the flattened first pieces
    fmri: dict[str, FMRITargets]
    meg: dict[str, MEGTargets]
    word_features: np.ndarray | None  # (n_stimulus_rows, 2) length, log frequency
    meg_seq: np.ndarray              # sequences whose windows carry MEG words (all windows)
    units: np.ndarray | None          # unit indices kept by the ROI mask (None: all)

    def __len__(self) -> int:
        return len(self.rows)


def shuffle_within_runs(data: np.ndarray, runs: np.ndarray, seed: int) -> np.ndarray:
    """Rows of ``data`` permuted at random within each run (null control)."""
    rng = np.random.default_rng(seed)
    out = np.array(data, copy=True)
    for run in dict.fromkeys(runs):
        idx = np.flatnonzero(runs == run)
        out[idx] = data[rng.permutation(idx)]
    return out


def annotated(dataset: Dataset) -> Dataset:
    """A shallow copy of ``dataset`` whose stimulus has POS, content flags, length, log freq.

    Columns already in the stimulus are kept (spaCy / wordfreq run only for missing ones).
    """
    from brainviz.data.features import annotate_stimulus

    return Dataset(dataset.meta, annotate_stimulus(dataset.stimulus), dataset.fmri, dataset.meg, path=dataset.path)


def build_corpus(
    dataset: Dataset,
    fmri_participants: list[str],
    meg_participants: list[str],
    tokenizer,
    preprocess: PreprocessConfig,
    max_length: int,
    units: np.ndarray | None = None,
    shuffle_seed: int | None = None,
) -> Corpus:
    """Windows, tokens and targets of the given participants (see module docstring)."""
    key_to_seq: dict[tuple[int, ...], int] = {}
    rows: list[np.ndarray] = []
    runs: list[str] = []

    def seq_of(window: np.ndarray, run: str) -> int:
        key = tuple(int(r) for r in window)
        if key not in key_to_seq:
            key_to_seq[key] = len(rows)
            rows.append(np.asarray(window, dtype=np.int64))
            runs.append(str(run))
        return key_to_seq[key]

    examples = {}
    for pid in fmri_participants:
        ex = fmri_examples(dataset, pid, preprocess)
        examples[pid] = (ex, np.array([seq_of(w, r) for w, r in zip(ex.windows, ex.runs)], dtype=np.int64))
    meg_seq = np.array([], dtype=np.int64)
    if meg_participants:
        if not dataset.participants:
            raise DatasetError("MEG training uses the windows of the fMRI examples; this dataset has no fMRI", file=dataset.path, field="participants")
        ex0 = fmri_examples(dataset, dataset.participants[0], preprocess)
        meg_seq = np.unique([seq_of(w, r) for w, r in zip(ex0.windows, ex0.runs)])

    n_seq = len(rows)
    fmri = fmri_targets(examples, n_seq, units, shuffle_seed)

    meg = {}
    word_features = None
    n_rows = len(dataset.stimulus)
    if meg_participants:
        stim = dataset.stimulus
        word_features = np.c_[stim["length"].to_numpy(dtype=float), stim["log_freq"].to_numpy(dtype=float)].astype(np.float32)
        for pid in meg_participants:
            me = meg_examples(dataset, pid, preprocess)
            flat = me.data.reshape(len(me.word_rows), -1).astype(np.float32)
            finite = np.isfinite(flat).all(axis=1)
            row_of_word = np.full(n_rows, -1, dtype=np.int64)
            row_of_word[me.word_rows[finite]] = np.arange(int(finite.sum()))
            meg[pid] = MEGTargets(pid, np.ascontiguousarray(flat[finite]), row_of_word, int(me.data.shape[1]), int(me.data.shape[2]))

    words = dataset.stimulus["word"].astype(str).to_numpy()
    tokens = tokenize_windows(tokenizer, [words[r].tolist() for r in rows], max_length=max_length)
    fp_pos, fp_row = [], []
    for r, wids in zip(rows, tokens.word_ids):
        pos, wrow, prev = [], [], None
        for t, wid in enumerate(wids):
            if wid is not None and wid != prev:
                pos.append(t)
                wrow.append(int(r[wid]))
            prev = wid
        fp_pos.append(np.asarray(pos, dtype=np.int64))
        fp_row.append(np.asarray(wrow, dtype=np.int64))
    offset = np.concatenate([[0], np.cumsum([len(p) for p in fp_pos])]).astype(np.int64)
    return Corpus(rows, np.asarray(runs), tokens, fp_pos, fp_row, offset, fmri, meg, word_features, meg_seq, units)


def fmri_targets(examples: dict, n_seq: int, units: np.ndarray | None = None,
                 shuffle_seed: int | None = None) -> dict[str, FMRITargets]:
    """:class:`FMRITargets` of every participant from ``{pid: (FMRIExamples, seq)}`` (``seq``:
    the sequence of each example among ``n_seq``), restricted to ``units``; training targets
    shuffled in time within run when ``shuffle_seed`` is set (null control)."""
    fmri = {}
    for pid, (ex, seq) in examples.items():
        data = ex.data if units is None else np.ascontiguousarray(ex.data[:, units])
        row_of_seq = np.full(n_seq, -1, dtype=np.int64)
        row_of_seq[seq] = np.arange(len(seq))
        train = data
        if shuffle_seed is not None:
            train = shuffle_within_runs(data, ex.runs, shuffle_seed + _stable_int(pid))
        fmri[pid] = FMRITargets(pid, seq, train, data, ex.tr_index, ex.runs, row_of_seq)
    return fmri


def _stable_int(text: str) -> int:
    from brainviz._io import content_hash

    return int(content_hash(text, length=8), 16)


# --------------------------------------------------------------------------------------
# Glasser-ROI targets (--roi-mask glasser:PATH[:SET], issue 15)
# --------------------------------------------------------------------------------------

GLASSER_PREFIX = "glasser:"
DEFAULT_GLASSER_SET = "late-language"


@dataclasses.dataclass(frozen=True)
class GlasserRoi:
    """A resolved ``--roi-mask glasser:PATH[:SET]``.

    Attributes
    ----------
    path : str
        The atlas file or folder as given (``load_glasser`` accepts either).
    roi_set : str
        Key of :data:`brainviz.data.atlases.ROI_SETS` (a Glasser set).
    atlas_file : str
        The label file the atlas was read from (``Atlas.source``).
    parcels : tuple of str
        Parcel names of the set, both hemispheres.
    units : np.ndarray
        Selected fsaverage5 vertex indices (int64, sorted).
    n_left, n_right : int
        Selected vertices per hemisphere.
    size : int
        Vertices of the atlas (20,484 on fsaverage5).
    """

    path: str
    roi_set: str
    atlas_file: str
    parcels: tuple[str, ...]
    units: np.ndarray
    n_left: int
    n_right: int
    size: int = 20484

    def card(self) -> dict:
        """What the checkpoint card records about the ROI."""
        return {"atlas": "glasser", "atlas_path": self.path, "atlas_file": self.atlas_file, "roi_set": self.roi_set,
                "parcels": list(self.parcels), "n_left": self.n_left, "n_right": self.n_right}


def is_glasser_spec(spec: object) -> bool:
    """True when a ``roi_mask`` value is a ``glasser:PATH[:SET]`` spec."""
    return isinstance(spec, str) and spec.startswith(GLASSER_PREFIX)


def parse_glasser_spec(spec: str) -> tuple[str, str]:
    """``glasser:PATH[:SET]`` -> ``(PATH, SET)``; SET defaults to ``late-language``.

    A trailing ``:SET`` is taken as the set unless ``PATH:SET`` as a whole names an existing
    file or folder. Raises :class:`~brainviz.errors.DatasetError` (field ``roi_mask``) for an
    empty path or a SET that is not a Glasser key of ``ROI_SETS``.
    """
    from pathlib import Path

    from brainviz.data.atlases import ROI_SETS

    if not is_glasser_spec(spec):
        raise ValueError(f"not a glasser ROI spec: {spec!r}")
    rest = spec[len(GLASSER_PREFIX):]
    path, roi_set = rest, DEFAULT_GLASSER_SET
    if ":" in rest and not Path(rest).exists():
        path, roi_set = rest.rsplit(":", 1)
    glasser_sets = sorted(k for k, v in ROI_SETS.items() if v.atlas == "glasser")
    if not path:
        raise DatasetError(f"{spec!r}: expected glasser:PATH[:SET] with PATH a Glasser fsaverage5 atlas file or "
                           "folder (e.g. the ENIGMA toolbox folder)", field="roi_mask")
    if roi_set not in glasser_sets:
        raise DatasetError(f"{spec!r}: unknown Glasser ROI set {roi_set!r}; expected one of {glasser_sets}",
                           field="roi_mask")
    return path, roi_set


def glasser_roi(spec: str, n_units: int | None = None) -> GlasserRoi:
    """Resolve ``glasser:PATH[:SET]``: the fsaverage5 vertices of a Glasser ROI set.

    Parameters
    ----------
    spec : str
        ``glasser:PATH[:SET]``; PATH as :func:`brainviz.data.atlases.load_glasser` accepts it
        (an ENIGMA-style folder, an ``lh.HCP-MMP1.annot`` pair, a label vector with its name
        list beside it), SET a Glasser key of ``ROI_SETS`` (default ``late-language``;
        ``early-auditory`` is the low-level control).
    n_units : int, optional
        Units of the data; must equal the atlas's 20,484 fsaverage5 vertices when given.

    Returns
    -------
    GlasserRoi

    Raises
    ------
    brainviz.errors.DatasetError
        Field ``roi_mask``: a wrong path, an unreadable atlas, an unknown set, a set that
        selects nothing, or data not on fsaverage5.
    """
    roi = _resolve_glasser(str(spec))
    if n_units is not None and roi.size != int(n_units):
        raise DatasetError(f"{spec!r}: the Glasser atlas has {roi.size} fsaverage5 vertices, the data "
                           f"{n_units} units (Glasser targets need fsaverage5 data)", file=roi.path, field="roi_mask")
    return roi


@functools.lru_cache(maxsize=8)  # the job resolves it at its checks, the card again when it is written
def _resolve_glasser(spec: str) -> GlasserRoi:
    from brainviz.data.atlases import ROI_SETS, load_glasser, roi_mask
    from brainviz.surface import N_PER_HEMI

    path, roi_set = parse_glasser_spec(spec)
    try:
        atlas = load_glasser(path)
        mask = roi_mask(atlas, roi_set)
    except (DatasetError, OSError, ValueError) as exc:
        raise DatasetError(f"{spec!r}: cannot resolve the Glasser ROI ({exc})", file=path, field="roi_mask") from None
    units = np.flatnonzero(mask).astype(np.int64)
    units.setflags(write=False)
    return GlasserRoi(path, roi_set, str(atlas.source), tuple(ROI_SETS[roi_set].names()), units,
                      int(np.sum(units < N_PER_HEMI)), int(np.sum(units >= N_PER_HEMI)), int(mask.shape[0]))
