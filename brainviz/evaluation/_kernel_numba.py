"""Compiled 20-vs-20 kernels (numba), parallel over blocks of units.

Importing this module imports numba; :mod:`brainviz.evaluation._backends` does so only when
the ``"numba"`` backend is asked for, and falls back to numpy when the import fails.

How it is fast and still exact
------------------------------
Units are processed in blocks of :data:`BLOCK` (128) units, two blocks never share memory, and
blocks are spread over threads (``prange``). Within a block the targets, the predictions of
every model and the squared residuals ``(target - prediction)**2`` of every row are copied into
small row-major buffers (a few hundred kB, cache resident); each draw then touches ``k`` rows
of those buffers with contiguous, vectorised loops over the block's units. All models (e.g.
model A and B, every seed) sharing the targets and the draws are evaluated in one pass.

Arithmetic is done in the input's precision (float32 or float64), summing the rows of a draw
four at a time, and every decision whose two distances differ by less than a safe bound on the
rounding error is recomputed in float64 in exactly the order of the numpy reference, so
decisions (ties included) are identical to the float64 reference at the speed of the input's
precision. The bound, with u the unit roundoff (2**-24 or 2**-53): each squared difference
carries a relative error <= 3u and summing k non-negative terms in any order adds <= (k - 1)u of
the sum, so each distance is within (k + 2)u of its exact value; decisions with
``|dd - dc| <= 2 (k + 2) u (dd + dc) + (k + 2) tiny`` are redone (the last term covers
underflow to subnormals; ``tiny`` is the smallest normal number), so float32 data of extremely
small magnitude (squared differences near 1e-38) is decided entirely in float64 (correct, slow).
Non-finite units are skipped (their accuracy is NaN anyway).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

BLOCK = 128
_LOCK = threading.Lock()  # numba's workqueue threading layer forbids concurrent parallel calls


@njit(cache=True, nogil=True)
def _load_block(pred, targ, u0, nb, t, p, r2, finite):  # pragma: no cover - compiled
    """Copy units ``u0:u0+nb`` into the block buffers; squared residuals; finiteness."""
    m, n_rows, _ = pred.shape
    for u in range(BLOCK):
        finite[u] = True
    for r in range(n_rows):
        for u in range(nb):
            v = targ[r, u0 + u]
            t[r, u] = v
            if not np.isfinite(v):
                finite[u] = False
    for mi in range(m):
        for r in range(n_rows):
            for u in range(nb):
                v = pred[mi, r, u0 + u]
                p[mi, r, u] = v
                if not np.isfinite(v):
                    finite[u] = False
                x = t[r, u] - v
                r2[mi, r, u] = x * x


@njit(cache=True, nogil=True)
def _exact_decision(pred, targ, mi, unit, true_idx, distr_idx, s):  # pragma: no cover - compiled
    """2 / 1 / 0 (win / tie / loss, doubled) of one model, unit and draw, in float64."""
    k = true_idx.shape[1]
    dc = 0.0
    dd = 0.0
    for j in range(k):
        a = true_idx[s, j]
        d = distr_idx[s, j]
        t = np.float64(targ[a, unit])
        x = t - np.float64(pred[mi, a, unit])
        dc += x * x
        y = t - np.float64(pred[mi, d, unit])
        dd += y * y
    if dd > dc:
        return 2
    if dd == dc:
        return 1
    return 0


@njit(parallel=True, cache=True, nogil=True)
def counts_kernel(pred, targ, true_idx, distr_idx, tol, floor, out_counts, out_finite):  # pragma: no cover - compiled
    """Fill ``out_counts[m, unit]`` with twice the 20-vs-20 score summed over draws.

    Parameters
    ----------
    pred : float32 or float64 array (m, n_rows, n_units), C-contiguous
    targ : array (n_rows, n_units) of the same dtype, C-contiguous
    true_idx, distr_idx : int64 arrays (n_samples, k)
    tol, floor : scalars of the data's dtype
        Decisions with ``|dd - dc| <= tol * (dd + dc) + floor`` are recomputed exactly (see the
        module docstring).
    out_counts : int64 array (m, n_units)
        2 per win, 1 per tie, 0 per loss, summed over draws.
    out_finite : bool array (n_units,)
        Whether every value of the unit (targets and all predictions) is finite.
    """
    m, n_rows, n_units = pred.shape
    n_samples, k = true_idx.shape
    n_blocks = (n_units + BLOCK - 1) // BLOCK
    for b in prange(n_blocks):
        u0 = b * BLOCK
        nb = min(BLOCK, n_units - u0)
        t = np.zeros((n_rows, BLOCK), dtype=targ.dtype)
        p = np.zeros((m, n_rows, BLOCK), dtype=targ.dtype)
        r2 = np.zeros((m, n_rows, BLOCK), dtype=targ.dtype)
        finite = np.ones(BLOCK, dtype=np.bool_)
        _load_block(pred, targ, u0, nb, t, p, r2, finite)
        dc = np.zeros((m, BLOCK), dtype=targ.dtype)
        dd = np.zeros((m, BLOCK), dtype=targ.dtype)
        cnt = np.zeros((m, BLOCK), dtype=np.int64)
        close = np.zeros(BLOCK, dtype=np.bool_)
        for s in range(n_samples):
            dc[:] = 0
            dd[:] = 0
            j = 0
            while j + 3 < k:  # four rows at a time: fewer accumulator loads and stores
                a0 = true_idx[s, j]
                a1 = true_idx[s, j + 1]
                a2 = true_idx[s, j + 2]
                a3 = true_idx[s, j + 3]
                d0 = distr_idx[s, j]
                d1 = distr_idx[s, j + 1]
                d2 = distr_idx[s, j + 2]
                d3 = distr_idx[s, j + 3]
                for mi in range(m):
                    for u in range(BLOCK):
                        dc[mi, u] += (r2[mi, a0, u] + r2[mi, a1, u]) + (r2[mi, a2, u] + r2[mi, a3, u])
                        x0 = t[a0, u] - p[mi, d0, u]
                        x1 = t[a1, u] - p[mi, d1, u]
                        x2 = t[a2, u] - p[mi, d2, u]
                        x3 = t[a3, u] - p[mi, d3, u]
                        dd[mi, u] += (x0 * x0 + x1 * x1) + (x2 * x2 + x3 * x3)
                j += 4
            while j < k:
                a = true_idx[s, j]
                d = distr_idx[s, j]
                for mi in range(m):
                    for u in range(BLOCK):
                        dc[mi, u] += r2[mi, a, u]
                        x = t[a, u] - p[mi, d, u]
                        dd[mi, u] += x * x
                j += 1
            for mi in range(m):
                # vectorised fast path; decisions inside the rounding margin are redone exactly
                n_close = 0
                for u in range(BLOCK):
                    diff = dd[mi, u] - dc[mi, u]
                    bound = tol * (dd[mi, u] + dc[mi, u]) + floor
                    win = diff > bound
                    lose = diff < -bound
                    close[u] = not (win | lose)
                    n_close += 1 - (win | lose)
                    cnt[mi, u] += 2 * win
                if n_close:
                    for u in range(nb):
                        if close[u] and finite[u]:
                            cnt[mi, u] += _exact_decision(pred, targ, mi, u0 + u, true_idx, distr_idx, s)
        for u in range(nb):
            out_finite[u0 + u] = finite[u]
            for mi in range(m):
                out_counts[mi, u0 + u] = cnt[mi, u]


def counts(pred: np.ndarray, targ: np.ndarray, true_idx: np.ndarray, distr_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backend entry point: ``(counts (m, n_units) int64, finite (n_units,) bool)``.

    ``pred`` (m, n_rows, n_units) and ``targ`` (n_rows, n_units) are C-contiguous arrays of
    one float dtype (float32 or float64); indices are C-contiguous int64.
    """
    m, _, n_units = pred.shape
    k = true_idx.shape[1]
    out_counts = np.zeros((m, n_units), dtype=np.int64)
    out_finite = np.ones(n_units, dtype=bool)
    if m == 0 or n_units == 0:
        return out_counts, out_finite
    # unit roundoff of the data's precision: 2**-24 (float32) or 2**-53 (float64)
    info = np.finfo(pred.dtype)
    tol = pred.dtype.type(2.0 * (k + 2) * info.eps / 2)
    floor = pred.dtype.type((k + 2) * info.tiny)  # absolute errors of (sub)normal underflow
    group = 4  # small groups of models keep a block's buffers in the per-core cache
    for g0 in range(0, m, group):
        sub = np.zeros((min(group, m - g0), n_units), dtype=np.int64)
        fin = np.ones(n_units, dtype=bool)
        with _LOCK:
            counts_kernel(pred[g0 : g0 + group], targ, true_idx, distr_idx, tol, floor, sub, fin)
        out_counts[g0 : g0 + group] = sub
        out_finite &= fin
    return out_counts, out_finite
