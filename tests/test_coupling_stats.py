"""Coupling statistics: Eqs. 1-2, permutation p-values (uniform under the null), FDR, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainviz.coupling.couple import anchor_counts, couple, layer_summary, pearson_matrix
from brainviz.coupling.neurons import CouplingError


def _circular_noise(rng, t, n):
    """Circularly stationary smooth noise (random phases): exact invariance under circular shifts."""
    spec = np.exp(-np.arange(t // 2 + 1) / 10.0)[:, None] * np.exp(2j * np.pi * rng.uniform(size=(t // 2 + 1, n)))
    spec[0] = 0
    return np.fft.irfft(spec, n=t, axis=0)


def test_pearson_matrix_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 7)), rng.standard_normal((50, 3))
    ref = np.corrcoef(np.c_[a, b].T)[:7, 7:]
    np.testing.assert_allclose(pearson_matrix(a, b), ref, atol=1e-5)
    a[:, 2] = 1.0  # constant: r = 0, not NaN
    assert np.all(pearson_matrix(a, b)[2] == 0)


@pytest.mark.parametrize("null", ["circular", "phase"])
def test_pvalues_uniform_under_the_null(null):
    rng = np.random.default_rng(1)
    t, n_ans, k = 120, 400, 3
    ans = _circular_noise(rng, t, n_ans)
    bns = _circular_noise(rng, t, k)
    st = couple(ans, bns, n_permutations=400, null=null, seed=2)
    ks = stats.kstest(st.an_p, "uniform")
    assert ks.pvalue > 0.01, ks
    assert (st.an_q < 0.05).sum() <= 0.05 * n_ans + 2


def test_circular_null_equals_explicit_loop():
    rng = np.random.default_rng(3)
    t = 60
    a, b = rng.standard_normal((t, 20)), rng.standard_normal((t, 4))
    st = couple(a, b, n_permutations=300, null="circular", seed=5)
    draws = np.random.default_rng(5).integers(1, t, size=300)
    r = pearson_matrix(a, b)
    best = r.max(1)
    exceed = sum((pearson_matrix(a, np.roll(b, d, axis=0)).max(1) >= best - 1e-6).astype(int) for d in draws)
    np.testing.assert_allclose(st.an_p, (1 + exceed) / 301)


def test_planted_coupling_is_found_and_significant():
    rng = np.random.default_rng(4)
    t = 200
    bns = _circular_noise(rng, t, 5)
    ans = _circular_noise(rng, t, 50)
    ans[:, 7] = bns[:, 3] + 0.3 * ans[:, 7] / ans[:, 7].std() * bns[:, 3].std()
    st = couple(ans, bns, n_permutations=1000, seed=0)
    assert st.an_best_bn[7] == 3 and st.an_r[7] > 0.9 and st.an_q[7] < 0.05
    assert st.bn_best_an[3] == 7 and st.bn_q[3] < 0.05
    # the per-pair null is less strict than the null of the maximum
    pair = couple(ans, bns, n_permutations=1000, seed=0, selection="pair")
    assert np.all(pair.an_p <= st.an_p + 1e-12) and np.all(pair.bn_p <= st.bn_p + 1e-12)
    # Eq. 1 / Eq. 2 are argmaxes of the r matrix
    np.testing.assert_array_equal(st.an_best_bn, st.r.argmax(1))
    np.testing.assert_array_equal(st.bn_best_an, st.r.argmax(0))


def test_summaries():
    pairs = pd.DataFrame({"an": range(6), "layer": [0, 0, 0, 1, 1, 1], "head": 0, "dim": [0, 1, 2, 0, 1, 2],
                          "bn": [1, 1, 0, 2, 1, 1], "r": [0.1, 0.3, 0.5, 0.2, 0.6, 0.26],
                          "q": [0.5, 0.01, 0.01, 0.2, 0.001, 0.04]})
    s = layer_summary(pairs, r_threshold=0.25, alpha=0.05)
    assert list(s["layer"]) == [0, 1]
    assert s.loc[0, "frac_below_threshold"] == pytest.approx(1 / 3)
    assert s.loc[1, "best_an"] == 4 and s.loc[1, "best_bn"] == 1
    assert s.loc[0, "mean_r"] == pytest.approx(0.3)
    assert list(anchor_counts(pairs, 3, 0.25)) == [1, 3, 0]


def test_bad_shapes():
    with pytest.raises(CouplingError, match="must share their TRs"):
        couple(np.zeros((10, 3)), np.zeros((11, 2)))
    with pytest.raises(CouplingError, match="unknown null"):
        couple(np.zeros((10, 3)), np.zeros((10, 2)), null="shuffle")
