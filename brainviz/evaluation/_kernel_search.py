"""Grid search of weighted-kernel ridge on CPU, with the semantics of himalaya's random search.

:func:`search_weighted_kernels` is a numpy re-implementation of what
``himalaya.kernel_ridge.solve_multiple_kernel_ridge_random_search`` does for
``MultipleKernelRidgeCV(kernels="precomputed", fit_intercept=True)`` (and, with one kernel,
``KernelRidgeCV``): for every kernel weighting ``gamma`` and penalty ``alpha``, kernel ridge on
each inner training split (kernels and targets centred on that split), negative squared error
on the validation split, the mean over splits, the best ``(gamma, alpha)`` per unit (ties go to
the larger alpha; a later gamma must beat the best so far by more than float32 eps), then a
refit on all rows.

Why not call himalaya: on a 2-core CPU its loop spends most of its time outside the matrix
products that matter — it scores with a temporary ``(n_alphas, n_val, n_units)`` array, checks
it for NaNs, and refits the dual weights of every unit that improved after *every* gamma
(~n^2 x units flops per gamma). Here each alpha's validation error is accumulated in place,
and the refit is done once at the end, grouped by the chosen gamma. Same choices and
predictions (tested against himalaya in ``tests/test_encoding_search.py``), about 3x faster on
one fold of 20,484 vertices (docs/encoding.md, "Performance"). GPU backends keep using himalaya.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class KernelSearchResult:
    """Result of :func:`search_weighted_kernels`.

    ``gammas`` (n_kernels, n_units) chosen kernel weights; ``alphas`` (n_units,) chosen
    penalties; ``cv_scores`` (n_gammas, n_units) mean inner score of every gamma at its best
    alpha; ``dual`` (n_rows, n_units) dual weights of the refit on the centred kernels;
    ``kernel_rows`` (n_kernels, n_rows) column means of the training kernels and
    ``y_offset`` (n_units,) the targets' mean (together they give the intercept).
    """

    gammas: np.ndarray
    alphas: np.ndarray
    cv_scores: np.ndarray
    dual: np.ndarray
    kernel_rows: np.ndarray
    y_offset: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """Log kernel weights divided by the penalty, himalaya's ``deltas_``."""
        return np.log(self.gammas / self.alphas[None, :])

    def predict(self, kernels_test: np.ndarray) -> np.ndarray:
        """Predictions from test kernels ``(n_kernels, n_test, n_rows)`` (not centred)."""
        kt = np.asarray(kernels_test, dtype=np.float32)
        out = np.zeros((kt.shape[1], self.dual.shape[1]), dtype=np.float32)
        for k in range(kt.shape[0]):
            centred = kt[k] - self.kernel_rows[k][None, :]
            out += (centred @ self.dual) * self.gammas[k][None, :].astype(np.float32)
        return out + self.y_offset[None, :]


def _centre_kernel(k_train: np.ndarray, k_test: np.ndarray | None = None):
    """Centre a kernel in feature space (sklearn/himalaya ``KernelCenterer``)."""
    rows = k_train.mean(axis=0, dtype=np.float64)
    total = rows.mean()
    kc = k_train - rows[None, :] - rows[:, None] + total
    if k_test is None:
        return kc.astype(np.float32), rows
    kt = k_test - rows[None, :] - k_test.mean(axis=1, dtype=np.float64)[:, None] + total
    return kc.astype(np.float32), kt.astype(np.float32)


def search_weighted_kernels(
    kernels: np.ndarray,
    targets: np.ndarray,
    gammas: np.ndarray,
    alphas: Sequence[float],
    cv: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_units_batch: int = 4096,
) -> KernelSearchResult:
    """Choose kernel weights and a penalty per unit by inner cross-validation; refit on all rows.

    Parameters
    ----------
    kernels : array (n_kernels, n_rows, n_rows)
        Training kernels (one linear kernel per feature band), not centred.
    targets : array (n_rows, n_units)
    gammas : array (n_gammas, n_kernels)
        Candidate kernel weightings (rows are tried in order).
    alphas : sequence of float
        Candidate ridge penalties.
    cv : list of (train, validation) index arrays into the rows
    n_units_batch : int
        Units per batch (memory).
    """
    ks = np.asarray(kernels, dtype=np.float32)
    y = np.asarray(targets, dtype=np.float32)
    g = np.asarray(gammas, dtype=np.float32)
    a = np.asarray(alphas, dtype=np.float32)
    n_kernels, n_rows, _ = ks.shape
    n_units = y.shape[1]
    if g.ndim != 2 or g.shape[1] != n_kernels:
        raise ValueError(f"gammas must have shape (n_gammas, {n_kernels}), got {g.shape}")
    for train, val in cv:
        if len(train) == 0 or len(val) == 0:
            raise ValueError("empty training or validation split in the inner cross-validation")

    # centre over all rows once (the intercept of the refit), as himalaya does
    centred = np.empty_like(ks)
    kernel_rows = np.empty((n_kernels, n_rows), dtype=np.float64)
    for k in range(n_kernels):
        c, rows = _centre_kernel(ks[k])
        centred[k], kernel_rows[k] = c, rows
    y_offset = y.mean(axis=0)
    yc = y - y_offset[None, :]

    best_scores = np.full(n_units, -np.inf, dtype=np.float32)
    best_gamma = np.zeros(n_units, dtype=np.int64)
    best_alpha = np.ones(n_units, dtype=np.float32)
    cv_scores = np.zeros((len(g), n_units), dtype=np.float32)
    eps = np.finfo(np.float32).eps
    slope = (np.log(a.astype(np.float64)) * 1e-10)[:, None]

    for ii, gamma in enumerate(g):
        kernel = np.tensordot(gamma, centred, axes=1).astype(np.float32)
        scores = np.zeros((len(cv), len(a), n_units), dtype=np.float32)
        for jj, (train, val) in enumerate(cv):
            train, val = np.asarray(train), np.asarray(val)
            k_train, k_val = _centre_kernel(kernel[np.ix_(train, train)], kernel[np.ix_(val, train)])
            eigenvalues, vectors = np.linalg.eigh(k_train)
            weighting = (1.0 / (a[:, None] + eigenvalues[None, :])).astype(np.float32)
            unusable = np.zeros(len(a), dtype=bool)
            if eigenvalues[0] < 0:  # float32 round-off: alphas that do not compensate are unusable
                unusable = a < -2 * eigenvalues[0]
            val_vectors = k_val @ vectors
            # (n_alphas, n_val, n_train): validation predictions = resolvent @ centred training targets
            resolvents = np.matmul(val_vectors[None, :, :] * weighting[:, None, :], vectors.T[None, :, :])
            for start in range(0, n_units, n_units_batch):
                cols = slice(start, start + n_units_batch)
                y_train = yc[train, cols]
                mean = y_train.mean(axis=0)
                y_train = y_train - mean
                y_val = yc[val, cols] - mean
                for ai in range(len(a)):
                    if unusable[ai]:
                        scores[jj, ai, cols] = -1e5
                        continue
                    error = resolvents[ai] @ y_train
                    error -= y_val
                    scores[jj, ai, cols] = -np.einsum("ij,ij->j", error, error) / len(val)
        mean_scores = scores.mean(axis=0, dtype=np.float64) + slope
        alpha_index = mean_scores.argmax(axis=0)
        best = np.take_along_axis(mean_scores, alpha_index[None, :], axis=0)[0].astype(np.float32)
        cv_scores[ii] = best
        better = best > best_scores + eps
        best_scores[better] = best[better]
        best_gamma[better] = ii
        best_alpha[better] = a[alpha_index[better]]

    # refit on all rows, once per chosen gamma (each unit with its own alpha)
    dual = np.zeros((n_rows, n_units), dtype=np.float32)
    for ii in np.unique(best_gamma):
        units = np.flatnonzero(best_gamma == ii)
        kernel = np.tensordot(g[ii], centred, axes=1).astype(np.float32)
        eigenvalues, vectors = np.linalg.eigh(kernel)
        eigenvalues = np.maximum(eigenvalues, 0)
        for start in range(0, len(units), n_units_batch):
            batch = units[start:start + n_units_batch]
            rotated = vectors.T @ yc[:, batch]
            rotated /= eigenvalues[:, None] + best_alpha[batch][None, :]
            dual[:, batch] = vectors @ rotated
    return KernelSearchResult(
        gammas=g[best_gamma].T.astype(np.float64), alphas=best_alpha.astype(np.float64), cv_scores=cv_scores,
        dual=dual, kernel_rows=kernel_rows.astype(np.float32), y_offset=y_offset,
    )
