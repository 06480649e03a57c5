"""From word times to the TR grid: Lanczos resampling and finite-impulse-response delays.

* :func:`lanczos_matrix` / :func:`lanczos_resample` - Huth et al. (2016) / LeBel et al. (2023)
  ``lanczosinterp2D``: each TR gets the Lanczos-weighted (window 3, cutoff = the TR rate) sum of
  the word vectors around it. No maintained library ships this (it lives in the papers' own
  research code), so it is written here, vectorised, with the same kernel.
* :class:`Delayer` - FIR delays as a scikit-learn transformer: ``[X(t - d) for d in delays]``
  side by side, zeros before the start. himalaya does not ship a Delayer (the one in
  ``voxelwise_tutorials`` pulls pycortex, datalad and opencv), so this is a 20-line equivalent
  with the same semantics; :func:`delay_by_run` applies it within each run so that no delay
  crosses a run boundary.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

DEFAULT_DELAYS = (1, 2, 3, 4)


def lanczos_kernel(t: np.ndarray, cutoff: float, window: int = 3) -> np.ndarray:
    """Lanczos kernel ``window sin(pi t c) sin(pi t c / window) / (pi t c)^2`` (1 at 0, 0 beyond ``window``)."""
    x = np.asarray(t, dtype=np.float64) * cutoff
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * x) * np.sin(np.pi * x / window) / (np.pi**2 * x**2)
    val = np.where(x == 0, 1.0, val)
    return np.where(np.abs(x) > window, 0.0, val)


def lanczos_matrix(
    old_times: np.ndarray, new_times: np.ndarray, *, window: int = 3, cutoff_mult: float = 1.0
) -> np.ndarray:
    """Matrix ``(n_new, n_old)`` that Lanczos-resamples values at ``old_times`` to ``new_times``.

    The cutoff is ``cutoff_mult / mean(diff(new_times))`` (the TR rate), as in Huth et al.'s
    ``lanczosinterp2D``: the result is a low-passed *sum* (word rate for a vector of ones).
    """
    old = np.asarray(old_times, dtype=np.float64)
    new = np.asarray(new_times, dtype=np.float64)
    if new.size < 2:
        raise ValueError("lanczos_matrix: need at least 2 new time points")
    cutoff = cutoff_mult / float(np.mean(np.diff(new)))
    return lanczos_kernel(new[:, None] - old[None, :], cutoff, window)


def lanczos_resample(values: np.ndarray, old_times: np.ndarray, new_times: np.ndarray, **kwargs) -> np.ndarray:
    """``lanczos_matrix(old_times, new_times) @ values`` (values: (n_old, ...))."""
    m = lanczos_matrix(old_times, new_times, **kwargs)
    v = np.asarray(values)
    return (m @ v.reshape(v.shape[0], -1)).reshape((m.shape[0],) + v.shape[1:])


class Delayer(TransformerMixin, BaseEstimator):
    """Finite-impulse-response delays: ``[X(t - d) for d in delays]`` along the feature axis.

    Parameters
    ----------
    delays : sequence of int
        Delays in samples (TRs); 0 is the undelayed copy. Rows shifted in from before the
        start are zero.
    """

    def __init__(self, delays: Sequence[int] = DEFAULT_DELAYS):
        self.delays = delays

    def fit(self, X, y=None):  # noqa: D102 - stateless
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X)
        n, p = X.shape
        out = np.zeros((n, p * len(self.delays)), dtype=X.dtype)
        for i, d in enumerate(self.delays):
            d = int(d)
            block = out[:, i * p : (i + 1) * p]
            if d == 0:
                block[:] = X
            elif d > 0 and d < n:
                block[d:] = X[:-d]
            elif d < 0 and -d < n:
                block[:d] = X[-d:]
        return out


def delay_by_run(features: np.ndarray, runs: np.ndarray, delays: Sequence[int] = DEFAULT_DELAYS) -> np.ndarray:
    """:class:`Delayer` applied separately within each run (rows of a run in time order)."""
    x = np.asarray(features)
    runs = np.asarray(runs).astype(str)
    out = np.zeros((x.shape[0], x.shape[1] * len(delays)), dtype=x.dtype)
    delayer = Delayer(delays)
    for r in dict.fromkeys(runs.tolist()):
        idx = np.flatnonzero(runs == r)
        out[idx] = delayer.fit_transform(x[idx])
    return out
