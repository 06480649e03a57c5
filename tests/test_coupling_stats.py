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
    r = pearson_matrix(a, b)
    best = r.max(1)
    # fewer draws than lags: random lags, weighted
    st = couple(a, b, n_permutations=40, null="circular", seed=5)
    draws = np.random.default_rng(5).integers(1, t, size=40)
    exceed = sum((pearson_matrix(a, np.roll(b, d, axis=0)).max(1) >= best - 1e-6).astype(int) for d in draws)
    np.testing.assert_allclose(st.an_p, (1 + exceed) / 41)
    # at least T - 1 permutations: every lag once, exact p = (1 + #exceeding lags) / T
    st = couple(a, b, n_permutations=300, null="circular", seed=5)
    exceed = sum((pearson_matrix(a, np.roll(b, d, axis=0)).max(1) >= best - 1e-6).astype(int) for d in range(1, t))
    np.testing.assert_allclose(st.an_p, (1 + exceed) / t)
    assert st.n_permutations == t - 1


def test_reachability_says_when_fdr_cannot_be_reached():
    from brainviz.coupling.couple import reachability

    r = reachability(2304, 300, 5000, 0.05)
    assert r["min_achievable_p"] == pytest.approx(1 / 300)
    assert r["min_discoveries_needed"] == int(np.ceil(2304 / 300 / 0.05))
    assert "at least" in r["message"]
    ok = reachability(32, 300, 5000, 0.05)
    assert ok["min_discoveries_needed"] == 3
    assert reachability(4, 300, 5000, 0.05)["message"] is None


def test_cross_story_pairs_find_planted_and_not_null():
    from brainviz.coupling.couple import cross_story_pairs

    rng = np.random.default_rng(11)
    t1, t2, n_ans, k = 200, 220, 300, 6
    stories = []
    for t in (t1, t2):
        bns = _circular_noise(rng, t, k)
        ans = _circular_noise(rng, t, n_ans)
        ans[:, 17] = -bns[:, 2] + 0.5 * ans[:, 17] / ans[:, 17].std() * bns[:, 2].std()  # negative coupling
        stories.append((ans, bns))
    cs = cross_story_pairs(stories[0][0], stories[0][1], stories[1][0], stories[1][1], null="circular")
    assert cs.an[2] == 17 and cs.r_select[2] < -0.5 and cs.r_test[2] < -0.5
    assert cs.q[2] <= 0.05 and cs.ci_high[2] < 0
    assert cs.n_permutations == t2 - 1
    others = np.delete(cs.q, 2)
    assert (others <= 0.05).sum() <= 1  # selected on story 1, nothing to replicate on story 2


def test_planted_coupling_is_found_and_significant():
    rng = np.random.default_rng(4)
    t = 400  # exact circular null: p >= 1/T, so BH over 10 ANs can reach q = 10/400
    bns = _circular_noise(rng, t, 5)
    ans = _circular_noise(rng, t, 10)
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
