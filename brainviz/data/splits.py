"""Cross-validation splits that never shuffle TRs, shared by ``train``, ``evaluate`` and ``encode``.

fMRI time series are autocorrelated: a model scored on TRs drawn at random between its training
TRs reads the answer from the neighbours. Every split here holds out *contiguous* time:

* ``"runs"`` - leave-one-run-out (needs >= 2 runs);
* ``"blocks:K"`` - the rows (in time order) cut into ``K`` contiguous blocks of about equal size;
  training rows closer than ``buffer`` TRs to the held-out block (same run, by acquisition
  index) are dropped, so no training TR shares the held-out block's slow drifts or the
  haemodynamic response of its edge;
* ``"auto"`` (default) - ``"runs"`` when there are >= 2 runs, else ``"blocks:4"``.

Score each held-out fold (run or block) on its own and average the fold scores: concatenating
the predictions of several blocks before correlating mixes each block's intercept, which comes
from the other blocks (see docs/encoding.md). Normalise features (and, when needed, targets)
with the training rows' statistics only.

:func:`make_folds` gives the outer folds; :func:`inner_folds` gives the inner splits (ridge
alphas, layer choice) strictly inside a fold's training rows, with the same rules.

Examples
--------
>>> import numpy as np
>>> from brainviz.data.splits import make_folds
>>> runs = np.array(["run1"] * 100)
>>> folds = make_folds(runs, cv="blocks:4", buffer=5)
>>> [f.name for f in folds]
['block-1of4', 'block-2of4', 'block-3of4', 'block-4of4']
>>> int(folds[1].test.min()), int(folds[1].test.max()), int(len(folds[1].train))
(25, 49, 65)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from brainviz.config import ConfigError

CV_CHOICES_HELP = "auto (runs if >= 2 runs, else blocks:4), runs (leave-one-run-out) or blocks:K (K contiguous blocks)"
DEFAULT_BLOCKS = 4
DEFAULT_BUFFER = 5
MIN_TEST_ROWS = 10
MIN_TRAIN_ROWS = 20
_BLOCKS_RE = re.compile(r"^blocks:(\d+)$")


class SplitError(ConfigError):
    """A requested split cannot be made; the message says what to do instead."""


@dataclasses.dataclass
class Fold:
    """One cross-validation fold: row indices into an examples object.

    Attributes
    ----------
    test_run : str
        Run of the held-out rows (for a block spanning several runs: the labels joined by ``+``).
    train, test : int arrays
        Rows used to fit and rows held out (buffer rows removed from ``train``).
    name : str
        ``test_run`` for leave-one-run-out, ``block-<i>of<K>`` for blocks. Unique within a
        split; use it to name per-fold files.
    kind : {"runs", "blocks"}
    """

    test_run: str
    train: np.ndarray
    test: np.ndarray
    name: str = ""
    kind: str = "runs"

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.test_run)

    def masks(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Boolean ``(train, test)`` masks over ``n_rows`` rows."""
        tr = np.zeros(n_rows, dtype=bool)
        te = np.zeros(n_rows, dtype=bool)
        tr[self.train] = True
        te[self.test] = True
        return tr, te


def parse_cv(spec: str) -> tuple[str, int | None]:
    """``"auto"`` -> ``("auto", None)``, ``"runs"`` -> ``("runs", None)``, ``"blocks:4"`` -> ``("blocks", 4)``.

    Raises
    ------
    ConfigError
        For anything else (``K`` must be >= 2).
    """
    spec = str(spec).strip().lower()
    if spec in ("auto", "runs"):
        return spec, None
    if spec == "blocks":
        return "blocks", DEFAULT_BLOCKS
    m = _BLOCKS_RE.match(spec)
    if not m or int(m.group(1)) < 2:
        raise ConfigError(f"cv: expected {CV_CHOICES_HELP}, got {spec!r}")
    return "blocks", int(m.group(1))


def resolve_cv(spec: str, runs: np.ndarray | Sequence[str]) -> tuple[str, int | None]:
    """The concrete split (``("runs", None)`` or ``("blocks", K)``) that ``spec`` means for these rows."""
    kind, k = parse_cv(spec)
    labels = list(dict.fromkeys(np.asarray(runs).astype(str).tolist()))
    if kind == "auto":
        return ("runs", None) if len(labels) >= 2 else ("blocks", DEFAULT_BLOCKS)
    return kind, k


def describe_cv(spec: str, runs: np.ndarray | Sequence[str], buffer: int = DEFAULT_BUFFER) -> str:
    """One line saying which split ``spec`` resolves to (for logs, summaries, run cards)."""
    kind, k = resolve_cv(spec, runs)
    if kind == "runs":
        n = len(dict.fromkeys(np.asarray(runs).astype(str).tolist()))
        return f"leave-one-run-out ({n} runs)"
    return f"{k} contiguous blocks, {buffer} buffer TRs dropped from training on each side of the held-out block"


def make_folds(
    runs: np.ndarray | Sequence[str],
    cv: str = "auto",
    buffer: int = DEFAULT_BUFFER,
    *,
    tr_index: np.ndarray | None = None,
    min_test: int = MIN_TEST_ROWS,
    min_train: int = MIN_TRAIN_ROWS,
    what: str = "data",
) -> list[Fold]:
    """Outer cross-validation folds over rows in time order.

    Parameters
    ----------
    runs : array of str (n_rows,)
        Run label of every row; rows must be in acquisition order within each run.
    cv : str
        ``"auto"``, ``"runs"`` or ``"blocks:K"`` (see module docstring).
    buffer : int
        Blocks only: training rows of the held-out block's run(s) whose acquisition index is
        within ``buffer`` TRs of a held-out row are dropped.
    tr_index : int array (n_rows,), optional
        Acquisition index of every row (e.g. ``FMRIExamples.tr_index``); gaps (trimmed or
        dropped TRs) then count towards the buffer. Default: consecutive rows.
    min_test, min_train : int
        Smallest held-out and training sets accepted.
    what : str
        Named in error messages (e.g. ``"participant sub-01"``).

    Returns
    -------
    list of Fold

    Raises
    ------
    SplitError
        When the split is impossible (one run with ``cv="runs"``, blocks too small, ...): the
        message says which option to use instead.
    """
    runs = np.asarray(runs).astype(str)
    n = runs.shape[0]
    if runs.ndim != 1 or n == 0:
        raise SplitError(f"{what}: no rows to split")
    pos = np.arange(n) if tr_index is None else np.asarray(tr_index, dtype=np.int64)
    if pos.shape != (n,):
        raise SplitError(f"{what}: tr_index has shape {pos.shape}, expected ({n},)")
    if buffer < 0:
        raise SplitError(f"{what}: buffer must be >= 0 TRs, got {buffer}")
    labels = list(dict.fromkeys(runs.tolist()))
    kind, k = resolve_cv(cv, runs)
    if kind == "runs":
        if len(labels) < 2:
            raise SplitError(
                f"{what}: leave-one-run-out needs at least 2 runs, got one ({labels[0]!r}). "
                f"Use contiguous blocks instead: --cv blocks:{DEFAULT_BLOCKS} (or cv='blocks:{DEFAULT_BLOCKS}' "
                "in the Python API; --cv auto does this for single-run data)"
            )
        folds = [Fold(r, np.flatnonzero(runs != r), np.flatnonzero(runs == r), name=r, kind="runs") for r in labels]
    else:
        assert k is not None
        if n < k * min_test:
            raise SplitError(
                f"{what}: {n} rows cannot make {k} held-out blocks of at least {min_test} rows; "
                f"use fewer blocks (--cv blocks:{max(2, n // max(min_test, 1))}) or keep more TRs (smaller --trim-start/--trim-end)"
            )
        edges = np.linspace(0, n, k + 1).round().astype(int)
        folds = []
        for i in range(k):
            test = np.arange(edges[i], edges[i + 1])
            keep = np.ones(n, dtype=bool)
            keep[test] = False
            for r in dict.fromkeys(runs[test].tolist()):
                in_run = runs == r
                tpos = pos[test][runs[test] == r]
                lo, hi = tpos.min() - buffer, tpos.max() + buffer
                keep &= ~(in_run & (pos >= lo) & (pos <= hi))
            test_runs = list(dict.fromkeys(runs[test].tolist()))
            folds.append(Fold("+".join(test_runs), np.flatnonzero(keep), test, name=f"block-{i + 1}of{k}", kind="blocks"))
    for f in folds:
        if len(f.train) < min_train:
            hint = (f"use a smaller --buffer (now {buffer}) or fewer blocks" if kind == "blocks"
                    else "add runs or use --cv blocks:K")
            raise SplitError(f"{what}: fold {f.name} keeps only {len(f.train)} training rows (< {min_train}); {hint}")
        if len(f.test) < (1 if kind == "runs" else min_test):
            raise SplitError(f"{what}: fold {f.name} holds out only {len(f.test)} rows")
    return folds


def inner_folds(
    runs: np.ndarray | Sequence[str],
    buffer: int = DEFAULT_BUFFER,
    *,
    tr_index: np.ndarray | None = None,
    n_blocks: int = 3,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner splits of a fold's *training rows* (for alphas and layer choice).

    Leave-one-run-out when the training rows hold >= 2 runs, else ``n_blocks`` contiguous
    blocks with the same buffer rule (pass the rows' ``tr_index`` so that the gap left by the
    outer held-out block is known). Returns ``[(train, validation), ...]`` index pairs relative
    to the training rows, the form scikit-learn / himalaya accept as ``cv=``.
    """
    runs = np.asarray(runs).astype(str)
    n_runs = len(dict.fromkeys(runs.tolist()))
    min_test = max(2, min(MIN_TEST_ROWS, len(runs) // (2 * n_blocks)))
    try:
        folds = make_folds(runs, "runs" if n_runs >= 2 else f"blocks:{n_blocks}", buffer, tr_index=tr_index,
                           min_test=min_test, min_train=max(5, min_test), what="inner cross-validation")
    except SplitError:
        if buffer == 0:
            raise
        folds = make_folds(runs, "runs" if n_runs >= 2 else f"blocks:{n_blocks}", 0, tr_index=tr_index,
                           min_test=min_test, min_train=max(5, min_test), what="inner cross-validation")
    return [(f.train, f.test) for f in folds]


def score_by_fold(predictions: np.ndarray, targets: np.ndarray, folds: Sequence[Fold], metric) -> np.ndarray:
    """``metric(pred[test], targets[test])`` for every fold: array (n_folds, n_units).

    Scoring each held-out fold on its own is the rule for blocked CV (average over axis 0).
    """
    return np.stack([metric(predictions[f.test], targets[f.test]) for f in folds])
