"""Lanczos resampling and FIR delays (brainviz.features.resample)."""

from __future__ import annotations

import numpy as np

from brainviz.features.resample import Delayer, delay_by_run, lanczos_kernel, lanczos_matrix, lanczos_resample


def _reference_lanczosinterp2d(data, oldtime, newtime, window=3, cutoff_mult=1.0):
    """Loop version of Huth et al.'s lanczosinterp2D (their research code), for comparison."""
    cutoff = 1 / np.mean(np.diff(newtime)) * cutoff_mult
    out = np.zeros((len(newtime), data.shape[1]))
    for i, t in enumerate(newtime):
        for j, o in enumerate(oldtime):
            x = (t - o) * cutoff
            if x == 0:
                w = 1.0
            elif abs(x) > window:
                w = 0.0
            else:
                w = window * np.sin(np.pi * x) * np.sin(np.pi * x / window) / (np.pi**2 * x**2)
            out[i] += w * data[j]
    return out


def test_lanczos_matches_reference_and_counts_words():
    rng = np.random.default_rng(0)
    old = np.sort(rng.uniform(0, 100, 120))
    new = np.arange(50) * 2.0 + 1.0
    data = rng.standard_normal((120, 3))
    np.testing.assert_allclose(lanczos_resample(data, old, new), _reference_lanczosinterp2d(data, old, new), atol=1e-10)
    # a vector of ones gives the word rate: words per TR on a steady stream of 1.5 words / s
    onsets = np.arange(0, 200, 1 / 1.5)
    rate = lanczos_matrix(onsets, np.arange(100) * 2.0) @ np.ones(len(onsets))
    assert abs(np.median(rate[10:-10]) - 3.0) < 0.05
    assert lanczos_kernel(np.array([0.0]), 0.5)[0] == 1.0 and lanczos_kernel(np.array([7.0]), 0.5)[0] == 0.0


def test_delayer_and_runs():
    x = np.arange(1, 7, dtype=float)[:, None]
    d = Delayer((0, 1, 2)).fit_transform(x)
    np.testing.assert_array_equal(d[:, 0], x[:, 0])
    np.testing.assert_array_equal(d[:, 1], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(d[:, 2], [0, 0, 1, 2, 3, 4])
    runs = np.array(["a"] * 3 + ["b"] * 3)
    db = delay_by_run(x, runs, (1,))
    np.testing.assert_array_equal(db[:, 0], [0, 1, 2, 0, 4, 5])  # nothing crosses from run a into run b
