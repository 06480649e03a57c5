"""Per-unit tests, FDR control, block permutations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats

from brainviz.evaluation import (
    block_permutation,
    block_permutation_test,
    draw_indices,
    fdr_correction,
    paired_test,
    test_against_chance,
    twenty_vs_twenty,
    wilcoxon_signed_rank,
)


@pytest.mark.parametrize("method", ["bh", "by"])
def test_fdr_equals_scipy_and_keeps_nan(method):
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200) ** 3
    q = fdr_correction(p, method)
    np.testing.assert_allclose(q, scipy.stats.false_discovery_control(p, method=method))
    p_nan = p.copy()
    p_nan[[3, 50, 199]] = np.nan
    q_nan = fdr_correction(p_nan, method)
    assert np.isnan(q_nan[[3, 50, 199]]).all()
    ok = np.isfinite(p_nan)
    np.testing.assert_allclose(q_nan[ok], scipy.stats.false_discovery_control(p_nan[ok], method=method))
    assert np.isnan(fdr_correction(np.full(4, np.nan), method)).all()


def test_fdr_default_is_bh_and_unknown_rejected():
    p = np.array([0.001, 0.01, 0.02, 0.5])
    np.testing.assert_allclose(fdr_correction(p), scipy.stats.false_discovery_control(p, method="bh"))
    with pytest.raises(ValueError, match="fdr"):
        fdr_correction(p, "holm")


def test_paired_ttest_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 50))
    b = a + rng.normal(0.3, 1, size=(8, 50))
    res = paired_test(a, b, alpha=0.05)
    ref = scipy.stats.ttest_rel(a, b, axis=0)
    np.testing.assert_allclose(res.statistic, ref.statistic)
    np.testing.assert_allclose(res.p, ref.pvalue)
    np.testing.assert_allclose(res.q, scipy.stats.false_discovery_control(ref.pvalue))
    np.testing.assert_array_equal(res.significant, res.q <= 0.05)
    np.testing.assert_allclose(res.effect, (a - b).mean(axis=0))
    assert res.test == "ttest_rel" and res.fdr == "bh" and res.alpha == 0.05 and res.n_samples == 8
    # the sample axis can be any axis
    res_t = paired_test(a.T, b.T, axis=1, alpha=0.05)
    np.testing.assert_allclose(res_t.p, res.p)


@pytest.mark.parametrize("n", [4, 9, 20])
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_wilcoxon_matches_scipy_per_column(n, alternative):
    rng = np.random.default_rng(n)
    d = np.round(rng.normal(0.3, 1, size=(n, 8)), 1)  # rounding makes ties and zeros
    d[:, 0] = np.arange(1, n + 1)  # no ties
    stat, p = wilcoxon_signed_rank(d, alternative=alternative)
    for c in range(d.shape[1]):
        if not np.any(d[:, c] != 0):
            assert np.isnan(p[c])
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = scipy.stats.wilcoxon(d[:, c], alternative=alternative)
        assert p[c] == pytest.approx(ref.pvalue, rel=1e-6), c
        assert stat[c] == pytest.approx(ref.statistic), c


def test_identical_models_p_nan_without_warnings():
    rng = np.random.default_rng(2)
    t = rng.standard_normal((40, 30)).astype(np.float32)
    p = (t + rng.standard_normal((3, 40, 30))).astype(np.float32)
    idx = draw_indices(40, n_samples=50, rng=0)
    acc_a = twenty_vs_twenty(p, t, indices=idx)
    acc_b = twenty_vs_twenty(p.copy(), t, indices=idx)
    np.testing.assert_array_equal(acc_a, acc_b)
    for method in ("ttest", "wilcoxon"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = paired_test(acc_a, acc_b, method=method)
        assert np.isnan(res.p).all() and np.isnan(res.q).all()
        assert not res.significant.any()
        assert res.counts()["n_tested"] == 0


def test_nan_units_not_tested():
    rng = np.random.default_rng(3)
    a = rng.normal(0.7, 0.01, size=(5, 6))
    a[:, 2] = np.nan
    res = test_against_chance(a)
    assert np.isnan(res.p[2]) and not res.significant[2]
    assert res.significant[[0, 1, 3, 4, 5]].all()
    assert res.alternative == "greater" and res.test == "ttest_1samp"


def test_against_chance_matches_scipy():
    rng = np.random.default_rng(4)
    acc = rng.normal(0.52, 0.03, size=(6, 40))
    res = test_against_chance(acc, chance=0.5, alternative="greater")
    ref = scipy.stats.ttest_1samp(acc, 0.5, axis=0, alternative="greater")
    np.testing.assert_allclose(res.p, ref.pvalue)
    np.testing.assert_allclose(res.effect, acc.mean(axis=0) - 0.5)


def test_fdr_controlled_on_null_units_and_planted_units_found():
    """Mean false discovery proportion over seeds stays <= q; planted units are detected."""
    q_level = 0.1
    fdps, power = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n_units, n_signal = 1000, 100
        a = rng.normal(0.5, 0.05, size=(8, n_units))
        b = rng.normal(0.5, 0.05, size=(8, n_units))
        a[:, :n_signal] += 0.12  # planted: model A better
        res = paired_test(a, b, alpha=q_level)
        sig = res.significant
        false = sig[n_signal:].sum()
        fdps.append(false / max(sig.sum(), 1))
        power.append(sig[:n_signal].mean())
    assert np.mean(fdps) <= q_level
    assert np.mean(power) > 0.8
    # BY is more conservative than BH
    res_by = paired_test(a, b, alpha=q_level, fdr="by")
    assert res_by.significant.sum() <= res.significant.sum()


def test_block_permutation_keeps_blocks_within_runs():
    rng = np.random.default_rng(5)
    runs = np.array(["r1"] * 25 + ["r2"] * 30)
    perm = block_permutation(55, 10, rng, runs)
    assert sorted(perm.tolist()) == list(range(55))
    assert set(perm[:25]) == set(range(25))  # stays within its run
    # every block of 10 (the last one of a run shorter) stays contiguous and in order
    starts = [0, 10, 20, 25, 35, 45]
    for s in starts:
        e = min(s + 10, 25 if s < 25 else 55)
        pos = np.flatnonzero(np.isin(perm, np.arange(s, e)))
        assert np.all(np.diff(pos) == 1)
        np.testing.assert_array_equal(perm[pos], np.arange(s, e))


def test_block_permutation_test_signal_and_null():
    rng = np.random.default_rng(6)
    n_rows, n_units = 200, 40
    t = rng.standard_normal((n_rows, n_units)).astype(np.float32)
    p = rng.standard_normal((n_rows, n_units)).astype(np.float32)
    p[:, :10] += 0.8 * t[:, :10]
    res = block_permutation_test(p, t, statistic="pearson", n_permutations=199, rng=0, alpha=0.05)
    assert res.significant[:10].all()
    assert res.significant[10:].sum() <= 2
    assert res.p.min() >= 1 / 200
    res20 = block_permutation_test(p[:, :12], t[:, :12], statistic="twenty_vs_twenty", n_permutations=19,
                                   n_samples=50, rng=0, alpha=0.1)
    assert res20.test == "block_permutation[twenty_vs_twenty]"
    assert (res20.p[:10] == 1 / 20).all()
    assert res20.n_samples == 19


# --------------------------------------------------------------------------------------
# sign-flip, group and reachability (issue: statistics you can trust)
# --------------------------------------------------------------------------------------


def test_sign_flip_matches_scipy_permutation_test_exactly():
    from scipy.stats import permutation_test

    from brainviz.evaluation.stats import sign_flip_test

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 5)) + np.array([0.0, 0.3, 0.8, 1.5, -1.0])
    res = sign_flip_test(x, n_permutations=10000, alpha=0.05)
    assert res.exact and res.n_permutations == 256
    for u in range(5):
        ref = permutation_test((x[:, u],), np.mean, permutation_type="samples", n_resamples=np.inf,
                               alternative="two-sided")
        assert res.p[u] == pytest.approx(ref.pvalue, abs=1e-12)
    greater = sign_flip_test(x, alternative="greater")
    ref = permutation_test((x[:, 3],), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="greater")
    assert greater.p[3] == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_monte_carlo_is_seeded_and_never_zero():
    from brainviz.evaluation.stats import sign_flip_test

    x = np.random.default_rng(0).standard_normal((30, 4)) + 3.0
    a = sign_flip_test(x, n_permutations=500, rng=1)
    b = sign_flip_test(x, n_permutations=500, rng=1)
    assert not a.exact and a.n_permutations == 500
    np.testing.assert_array_equal(a.p, b.p)
    assert np.all(a.p == pytest.approx(1 / 501))  # floor of a Monte-Carlo p-value


def test_group_test_uses_participants_and_reports_reachability():
    from brainviz.evaluation.stats import group_test, min_discoveries, smallest_p, smallest_q

    rng = np.random.default_rng(1)
    eff = rng.standard_normal((9, 200)) * 0.5
    eff[:, :50] += 1.0
    t = group_test(eff, alpha=0.05)
    assert t.test == "group:ttest" and t.n_samples == 9
    assert t.significant[:50].mean() > 0.8 and t.significant[50:].sum() <= 3
    sf = group_test(eff, method="sign-flip", alpha=0.05)
    assert sf.exact and sf.n_permutations == 512
    r = sf.reachability()
    assert r["min_achievable_p"] == pytest.approx(2 / 512)
    assert r["min_achievable_q"] == pytest.approx(min(1.0, 2 / 512 * 200))
    assert r["min_discoveries_needed"] == int(np.ceil(2 / 512 * 200 / 0.05))
    assert smallest_p("group:ttest", 9) == 0.0
    assert smallest_p("block-sign-flip", 30, 1000) == pytest.approx(1 / 1001)
    assert smallest_q(0.002, 2304, "bh") == 1.0 and min_discoveries(0.002, 2304, 0.05) == 93
    assert min_discoveries(0.5, 10, 0.05) is None
    with pytest.raises(ValueError, match="at least 2 participants"):
        group_test(eff[:1])
