"""The 20-vs-20 classification test of Schwartz, Toneva & Wehbe (2019), per unit.

Semantics (those of the 2019 code, which are *not* the symmetric 2-vs-2 test of Mitchell et
al. 2008 / Wehbe et al. 2014): each draw picks ``k`` held-out rows ``true_idx`` and,
independently, ``k`` rows ``distractor_idx``, both with replacement. For every unit::

    d_correct    = sum_j (targets[true_idx_j] - predictions[true_idx_j]) ** 2
    d_distractor = sum_j (targets[true_idx_j] - predictions[distractor_idx_j]) ** 2

The draw scores 1 when ``d_distractor > d_correct``, 0.5 when they are equal and 0 otherwise;
the accuracy is the mean score over draws (chance = 0.5). Only the predictions are swapped:
the distractor's *targets* never enter, unlike the 2-vs-2 test, which also compares the
distractor's prediction with the distractor's own target.

Examples
--------
>>> from brainviz.evaluation import draw_indices, twenty_vs_twenty
>>> idx = draw_indices(n_rows=170, rng=0)                    # doctest: +SKIP
>>> acc_a = twenty_vs_twenty(pred_a, targets, indices=idx)   # doctest: +SKIP
>>> acc_b = twenty_vs_twenty(pred_b, targets, indices=idx)   # same draws, paired comparison
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from brainviz.evaluation._backends import DEFAULT_BACKEND, check_backend, get_counts

Indices = tuple[np.ndarray, np.ndarray]
RNGLike = int | np.random.Generator | np.random.SeedSequence | Sequence[int] | None

#: Upper bound (bytes) on the per-chunk copies made when inputs need a dtype/layout change.
CHUNK_BYTES = 1 << 26
#: Most draw cells (``n_samples * k``) one call may draw (two int64 arrays: 800 MB at the cap).
MAX_DRAW_CELLS = 50_000_000
#: Most squared differences one call may sum (``n_samples * k * n_units * n_models``); the
#: paper's setting (1,000 draws x 20 rows x 20,484 vertices x 2 models) needs 8.2e8.
MAX_WORK = 200_000_000_000


def as_generator(rng: RNGLike) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a seed, a seed sequence or a Generator.

    ``None`` gives a generator seeded from fresh OS entropy (not reproducible). The global
    numpy random state is never used.
    """
    if isinstance(rng, np.random.RandomState):
        raise TypeError("rng: legacy numpy RandomState is not supported; pass an int seed or a numpy.random.Generator")
    return np.random.default_rng(rng)


def draw_indices(n_rows: int, k: int = 20, n_samples: int = 1000, rng: RNGLike = None) -> Indices:
    """Draw the rows of ``n_samples`` 20-vs-20 draws.

    Parameters
    ----------
    n_rows : int
        Number of held-out rows to draw from.
    k : int
        Rows per draw (20 in the paper).
    n_samples : int
        Number of draws.
    rng : int, Generator or None
        Seed or generator.

    Returns
    -------
    true_idx, distractor_idx : int64 arrays of shape (n_samples, k)
        Drawn uniformly with replacement and independently of each other (``true_idx``
        first, then ``distractor_idx``, from the same generator).
    """
    _check_positive(n_rows=n_rows, k=k, n_samples=n_samples)
    if k > n_rows:
        from brainviz.errors import ConfigError

        raise ConfigError(f"k = {k} rows per draw exceeds the {n_rows} held-out rows available (per run); "
                          f"choose k <= {n_rows}", field="k")
    if n_samples * k > MAX_DRAW_CELLS:
        from brainviz.errors import ResourceLimitError

        raise ResourceLimitError(f"{n_samples} draws x k = {k} rows = {n_samples * k:,} draw cells exceed the limit of "
                                 f"{MAX_DRAW_CELLS:,}; lower n_samples or k", field="n_samples")
    gen = as_generator(rng)
    true_idx = gen.integers(0, n_rows, size=(n_samples, k), dtype=np.int64)
    distractor_idx = gen.integers(0, n_rows, size=(n_samples, k), dtype=np.int64)
    return true_idx, distractor_idx


def twenty_vs_twenty(
    predictions: np.ndarray,
    targets: np.ndarray,
    *,
    k: int = 20,
    n_samples: int = 1000,
    rng: RNGLike = None,
    indices: Indices | None = None,
    backend: str = DEFAULT_BACKEND,
) -> np.ndarray:
    """20-vs-20 accuracy of every unit (see the module docstring for the exact test).

    Parameters
    ----------
    predictions : float array (..., n_rows, n_units)
        Predicted responses of the held-out rows. Leading axes (models, seeds) are evaluated
        on the same draws in one pass.
    targets : float array (n_rows, n_units)
        Measured responses of the same rows.
    k : int
        Rows per draw; ignored when ``indices`` is given.
    n_samples : int
        Number of draws; ignored when ``indices`` is given.
    rng : int, Generator or None
        Seed or generator for the draws; ignored when ``indices`` is given.
    indices : (true_idx, distractor_idx), optional
        Two int arrays of shape (n_samples, k) from :func:`draw_indices`. Pass the same
        indices to compare two models on the same draws.
    backend : {"numba", "numpy", "torch"}
        ``"numba"`` (default): compiled kernel, parallel over blocks of units; falls back
        to ``"numpy"`` with a warning when numba cannot be imported. ``"numpy"``: the
        straightforward float64 reference. ``"torch"``: float64 on the GPU when present.
        All backends take identical decisions, ties included.

    Returns
    -------
    accuracy : float64 array (..., n_units)
        Mean score over draws; NaN for every unit with a non-finite value in ``targets``
        or in any of the ``predictions`` (all leading axes).

    Notes
    -----
    float32 and float64 inputs are accepted (other numeric types are computed in float64).
    Memory stays bounded: the kernels work on blocks/chunks of units.
    """
    check_backend(backend)
    pred, targ = _as_inputs(predictions, targets)
    lead = pred.shape[:-2]
    n_rows, n_units = targ.shape
    if indices is None:
        indices = draw_indices(n_rows, k=k, n_samples=n_samples, rng=rng)
    true_idx, distr_idx = check_indices(indices, n_rows)
    pred3 = pred.reshape((-1, n_rows, n_units))
    work = true_idx.size * n_units * pred3.shape[0]
    if work > MAX_WORK:
        from brainviz.errors import ResourceLimitError

        raise ResourceLimitError(
            f"{true_idx.shape[0]} draws x k = {true_idx.shape[1]} rows x {n_units} units x {pred3.shape[0]} prediction sets "
            f"= {work:.2g} squared differences exceed the limit of {MAX_WORK:.2g}; lower n_samples or k, or evaluate "
            "fewer units (an ROI)", field="n_samples")
    counts_fn = get_counts(backend)
    n_draws = true_idx.shape[0]
    acc = np.empty((pred3.shape[0], n_units), dtype=np.float64)
    for c0, c1, p_chunk, t_chunk in _unit_chunks(pred3, targ):
        counts, finite = counts_fn(p_chunk, t_chunk, true_idx, distr_idx)
        block = counts / (2.0 * n_draws)
        block[:, ~finite] = np.nan
        acc[:, c0:c1] = block
    return acc.reshape(lead + (n_units,))


def twenty_vs_twenty_by_run(
    predictions: np.ndarray,
    targets: np.ndarray,
    runs: np.ndarray,
    *,
    k: int = 20,
    n_samples: int = 1000,
    rng: RNGLike = None,
    indices: Mapping[str, Indices] | None = None,
    backend: str = DEFAULT_BACKEND,
) -> tuple[np.ndarray, np.ndarray]:
    """20-vs-20 accuracy within each held-out run separately (as in the paper).

    Parameters
    ----------
    predictions : float array (..., n_rows, n_units)
    targets : float array (n_rows, n_units)
    runs : array (n_rows,)
        Run label of every row.
    k, n_samples, rng, backend
        As in :func:`twenty_vs_twenty`. One generator is made from ``rng`` and the runs draw
        from it in order of first appearance.
    indices : dict run label -> (true_idx, distractor_idx), optional
        Draws per run (indices into that run's rows, in their order in ``targets``).

    Returns
    -------
    accuracy : float64 array (n_runs, ..., n_units)
    run_labels : str array (n_runs,)
        Labels in order of first appearance.
    """
    pred, targ = _as_inputs(predictions, targets)
    runs = np.asarray(runs).astype(str)
    if runs.shape != (targ.shape[0],):
        raise ValueError(f"runs: shape {runs.shape} does not match {targ.shape[0]} rows")
    labels = list(dict.fromkeys(runs.tolist()))
    gen = as_generator(rng) if indices is None else None
    out = []
    for label in labels:
        rows = np.flatnonzero(runs == label)
        if indices is not None:
            if label not in indices:
                raise ValueError(f"indices: no draws for run {label!r}")
            idx = indices[label]
        else:
            idx = draw_indices(len(rows), k=k, n_samples=n_samples, rng=gen)
        out.append(twenty_vs_twenty(pred[..., rows, :], targ[rows], indices=idx, backend=backend))
    return np.stack(out), np.asarray(labels, dtype=str)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def check_indices(indices: Indices, n_rows: int) -> Indices:
    """Validate a pair of draw arrays and return them as C-contiguous int64."""
    try:
        true_idx, distr_idx = indices
    except (TypeError, ValueError):
        raise ValueError("indices: expected a pair (true_idx, distractor_idx)") from None
    true_idx = np.asarray(true_idx)
    distr_idx = np.asarray(distr_idx)
    for name, arr in (("true_idx", true_idx), ("distractor_idx", distr_idx)):
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"indices: {name} must have shape (n_samples, k) with both >= 1, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"indices: {name} must be integers, got {arr.dtype}")
        if arr.min() < 0 or arr.max() >= n_rows:
            raise ValueError(f"indices: {name} must lie in [0, {n_rows}), got [{arr.min()}, {arr.max()}]")
    if true_idx.shape != distr_idx.shape:
        raise ValueError(f"indices: true_idx {true_idx.shape} and distractor_idx {distr_idx.shape} differ in shape")
    return (np.ascontiguousarray(true_idx, dtype=np.int64), np.ascontiguousarray(distr_idx, dtype=np.int64))


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _as_inputs(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(predictions)
    targ = np.asarray(targets)
    if targ.ndim != 2:
        raise ValueError(f"targets: must be 2-D (n_rows, n_units), got shape {targ.shape}")
    if pred.ndim < 2 or pred.shape[-2:] != targ.shape:
        raise ValueError(f"predictions: shape {pred.shape} must end with the targets' shape {targ.shape}")
    if targ.shape[0] < 1:
        raise ValueError("targets: no rows")
    for name, arr in (("predictions", pred), ("targets", targ)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"{name}: must be numeric, got dtype {arr.dtype}")
    return pred, targ


def _compute_dtype(*arrays: np.ndarray) -> np.dtype:
    if all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _unit_chunks(pred3: np.ndarray, targ: np.ndarray):
    """Yield ``(c0, c1, pred_chunk, targ_chunk)`` ready for a backend.

    Inputs already in a compute dtype and C-contiguous are passed whole (no copy);
    otherwise they are converted chunk by chunk, each chunk at most :data:`CHUNK_BYTES`.
    """
    dtype = _compute_dtype(pred3, targ)
    m, n_rows, n_units = pred3.shape
    ready = all(a.dtype == dtype and a.flags.c_contiguous for a in (pred3, targ))
    if ready or n_units == 0:
        yield 0, n_units, pred3, targ
        return
    per_unit = (m + 1) * n_rows * dtype.itemsize
    chunk = max(128, CHUNK_BYTES // max(per_unit, 1))
    for c0 in range(0, n_units, chunk):
        c1 = min(c0 + chunk, n_units)
        yield (
            c0, c1,
            np.ascontiguousarray(pred3[:, :, c0:c1], dtype=dtype),
            np.ascontiguousarray(targ[:, c0:c1], dtype=dtype),
        )
