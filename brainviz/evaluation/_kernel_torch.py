"""20-vs-20 decisions with torch (GPU when present), in float64.

Every operation is an elementwise IEEE operation done in the same order as the numpy
reference (difference, square, running sum over the ``k`` rows of a draw), so the decisions
are identical to the reference on CPU and GPU alike.
"""

from __future__ import annotations

import numpy as np

#: Elements of one (models x draws x units) work tensor; bounds memory per chunk.
WORK_ELEMENTS = 1 << 23


def counts(
    pred: np.ndarray, targ: np.ndarray, true_idx: np.ndarray, distr_idx: np.ndarray, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Backend entry point: ``(counts (m, n_units) int64, finite (n_units,) bool)``."""
    import torch

    from brainviz.backend import default_device

    dev = torch.device(device or default_device())
    m, _, n_units = pred.shape
    n_samples, k = true_idx.shape
    out = np.zeros((m, n_units), dtype=np.int64)
    finite = np.ones(n_units, dtype=bool)
    if m == 0 or n_units == 0 or n_samples == 0:
        return out, finite
    ti = torch.as_tensor(np.ascontiguousarray(true_idx), device=dev)
    di = torch.as_tensor(np.ascontiguousarray(distr_idx), device=dev)
    chunk = max(1, WORK_ELEMENTS // (m * n_samples))
    with torch.no_grad():
        for c0 in range(0, n_units, chunk):
            c1 = min(c0 + chunk, n_units)
            t = torch.as_tensor(np.ascontiguousarray(targ[:, c0:c1]), device=dev).to(torch.float64)
            p = torch.as_tensor(np.ascontiguousarray(pred[:, :, c0:c1]), device=dev).to(torch.float64)
            fin = torch.isfinite(t).all(dim=0) & torch.isfinite(p).all(dim=1).all(dim=0)
            diff = t.unsqueeze(0) - p
            r2 = diff * diff  # (m, n_rows, c)
            d_correct = torch.zeros((m, n_samples, c1 - c0), dtype=torch.float64, device=dev)
            d_distractor = torch.zeros_like(d_correct)
            for j in range(k):
                d_correct += r2[:, ti[:, j], :]
                x = t[ti[:, j]].unsqueeze(0) - p[:, di[:, j], :]
                d_distractor += x * x
            score = 2 * (d_distractor > d_correct).to(torch.int64) + (d_distractor == d_correct).to(torch.int64)
            out[:, c0:c1] = score.sum(dim=1).cpu().numpy()
            finite[c0:c1] = fin.cpu().numpy()
    return out, finite
