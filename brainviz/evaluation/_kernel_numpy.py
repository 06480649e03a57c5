"""The straightforward numpy reference of the 20-vs-20 decisions.

One loop over draws, vectorised over units, in float64, chunked over units to bound memory.
It is the definition the other backends are checked against (see ``bench/twenty_vs_twenty.py``).
"""

from __future__ import annotations

import numpy as np

#: Units per chunk: a chunk holds ``(n_models + 1) * n_rows * CHUNK_UNITS`` float64 values.
CHUNK_UNITS = 4096


def counts(pred: np.ndarray, targ: np.ndarray, true_idx: np.ndarray, distr_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backend entry point: ``(counts (m, n_units) int64, finite (n_units,) bool)``.

    ``counts`` holds 2 per draw won, 1 per tie and 0 per draw lost.
    """
    m, _, n_units = pred.shape
    out = np.zeros((m, n_units), dtype=np.int64)
    finite = np.ones(n_units, dtype=bool)
    for c0 in range(0, n_units, CHUNK_UNITS):
        c1 = min(c0 + CHUNK_UNITS, n_units)
        t = np.asarray(targ[:, c0:c1], dtype=np.float64)
        finite[c0:c1] = np.isfinite(t).all(axis=0)
        for mi in range(m):
            p = np.asarray(pred[mi, :, c0:c1], dtype=np.float64)
            finite[c0:c1] &= np.isfinite(p).all(axis=0)
            acc = out[mi, c0:c1]
            for a, d in zip(true_idx, distr_idx):
                ta = t[a]
                d_correct = ((ta - p[a]) ** 2).sum(axis=0)
                d_distractor = ((ta - p[d]) ** 2).sum(axis=0)
                acc += 2 * (d_distractor > d_correct)
                acc += d_distractor == d_correct
    return out, finite
