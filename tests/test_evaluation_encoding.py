"""Encoding metrics on synthetic data with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from brainviz.evaluation import (
    cc_norm,
    inter_participant_ceiling,
    noise_ceiling,
    normalize_by_ceiling,
    pearson_r,
    repeat_ceiling,
    ridge_encoding,
    signal_power,
    variance_explained,
)
from brainviz.evaluation.encoding import himalaya_backend


def test_pearson_known_values_and_constant_units():
    x = np.linspace(-1, 1, 50)
    t = np.c_[x, x, x, np.ones(50)]
    p = np.c_[2 * x + 1, -x, x**2, x]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_r(p, t)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(-1.0)
    assert abs(r[2]) < 1e-12  # x**2 is uncorrelated with x on a symmetric grid
    assert np.isnan(r[3])  # constant target


def test_pearson_broadcasts_over_leading_axis():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((30, 4))
    p = rng.standard_normal((3, 30, 4))
    r = pearson_r(p, t, axis=-2)
    assert r.shape == (3, 4)
    assert r[2, 1] == pytest.approx(np.corrcoef(p[2, :, 1], t[:, 1])[0, 1])


def test_variance_explained_is_one_minus_mse_over_var():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((500, 4))
    t -= t.mean(axis=0)
    p = np.c_[t[:, 0], 0.5 * t[:, 1], 2 * t[:, 2], np.zeros(500)]
    pove = variance_explained(p, t)
    assert pove[0] == pytest.approx(1.0)
    assert pove[1] == pytest.approx(0.75)  # mse = 0.25 var
    assert pove[2] == pytest.approx(0.0)  # r = 1 but the scale is wrong: no variance explained
    assert pove[3] == pytest.approx(0.0)  # predicting the mean
    assert variance_explained(-t[:, :1], t[:, :1])[0] == pytest.approx(-3.0)
    assert np.isnan(variance_explained(np.zeros((5, 1)), np.ones((5, 1)))[0])


def test_ridge_recovers_known_encoding():
    rng = np.random.default_rng(2)
    n_rows, n_feat, n_units = 400, 10, 12
    x = rng.standard_normal((n_rows, n_feat))
    w = rng.standard_normal((n_feat, n_units))
    w[:, 6:] = 0  # null units
    signal = x @ w
    signal /= np.maximum(signal.std(axis=0), 1e-12)
    noise_sd = 0.7
    y = signal + noise_sd * rng.standard_normal((n_rows, n_units))
    runs = np.repeat(["r1", "r2", "r3", "r4"], 100)
    res = ridge_encoding(x, y, runs)
    expected_pove = 1 / (1 + noise_sd**2)  # 0.67
    expected_r = np.sqrt(expected_pove)
    assert res.predictions.shape == y.shape and res.predictions.dtype == np.float32
    assert res.alphas.shape == (4, n_units) and res.r_by_run.shape == (4, n_units)
    assert res.runs.tolist() == ["r1", "r2", "r3", "r4"]
    np.testing.assert_allclose(res.pove[:6], expected_pove, atol=0.08)
    np.testing.assert_allclose(res.r[:6], expected_r, atol=0.06)
    assert np.all(res.pove[6:] < 0.05)
    assert np.all(np.abs(res.r[6:]) < 0.2)
    # null units get strong regularisation, signal units little
    assert np.median(res.alphas[:, 6:]) > np.median(res.alphas[:, :6])


def test_ridge_needs_two_runs():
    with pytest.raises(ValueError, match="2 runs"):
        ridge_encoding(np.zeros((10, 2)), np.zeros((10, 1)), np.array(["a"] * 10))


def test_himalaya_backend_is_restored():
    from himalaya.backend import get_backend

    before = get_backend().name
    with himalaya_backend("numpy") as b:
        assert b.name == "numpy"
    assert get_backend().name == before


def test_inter_participant_ceiling_known_value():
    rng = np.random.default_rng(3)
    n_part, n_rows, n_units, noise = 5, 20000, 3, 1.0
    s = rng.standard_normal((n_rows, n_units))
    y = s + noise * rng.standard_normal((n_part, n_rows, n_units))
    c = inter_participant_ceiling(y)
    assert c.shape == (n_part, n_units)
    # corr(s + e_i, s + mean of others' e) = 1 / sqrt((1 + s2) (1 + s2 / (P - 1)))
    expected = 1 / np.sqrt((1 + noise**2) * (1 + noise**2 / (n_part - 1)))
    np.testing.assert_allclose(c, expected, atol=0.02)
    np.testing.assert_allclose(noise_ceiling(y), expected, atol=0.02)


def test_repeat_ceiling_schoppe():
    rng = np.random.default_rng(4)
    n_rep, n_rows, n_units = 4, 20000, 3
    noise = np.array([0.5, 1.0, 2.0])
    s = rng.standard_normal((n_rows, n_units))
    y = s + noise * rng.standard_normal((n_rep, n_rows, n_units))
    np.testing.assert_allclose(signal_power(y), 1.0, atol=0.1)
    expected = np.sqrt(1 / (1 + noise**2 / n_rep))
    np.testing.assert_allclose(repeat_ceiling(y), expected, atol=0.02)
    np.testing.assert_allclose(noise_ceiling(y, repeats=True), expected, atol=0.02)
    # the true signal reaches the ceiling: normalised correlation 1
    np.testing.assert_allclose(cc_norm(s, y), 1.0, atol=0.06)
    np.testing.assert_allclose(cc_norm(s, y), pearson_r(s, y.mean(axis=0)) / repeat_ceiling(y), rtol=1e-6)
    # pure noise: no signal power -> NaN ceiling, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pure = repeat_ceiling(rng.standard_normal((n_rep, 50, 2)) * 0 + rng.standard_normal((n_rep, 50, 1)) * 0)
    assert np.isnan(pure).all()


def test_normalize_by_ceiling():
    r = np.array([0.2, 0.4, 0.3, 0.1])
    c = np.array([0.4, 0.8, 0.0, np.nan])
    np.testing.assert_allclose(normalize_by_ceiling(r, c)[:2], [0.5, 0.5])
    assert np.isnan(normalize_by_ceiling(r, c)[2:]).all()
    np.testing.assert_allclose(normalize_by_ceiling(np.array([0.04]), np.array([0.4]), kind="pove"), [0.25])
    assert np.isnan(normalize_by_ceiling(r, c, min_ceiling=0.5)[0])
    with pytest.raises(ValueError):
        normalize_by_ceiling(r, c, kind="r2")


def test_fold_ridge_and_banded_ridge_match_himalaya_primal():
    """ridge_fold (kernel form when p > n) and banded_ridge_fold (MultipleKernelRidgeCV on scaled linear
    kernels) give the same predictions as himalaya's primal RidgeCV / BandedRidgeCV on z-scored features."""
    import warnings

    from himalaya.ridge import BandedRidgeCV, RidgeCV

    from brainviz.evaluation.encoding import (
        BANDED_ALPHAS, ENCODE_ALPHAS, band_weight_grid, banded_ridge_fold, ridge_fold, zscore_train,
    )

    rng = np.random.default_rng(0)
    x, low = rng.standard_normal((100, 150)), rng.standard_normal((100, 6))
    y = (x[:, :4].sum(1, keepdims=True) + low[:, :1] + rng.standard_normal((100, 3))).astype(np.float32)
    tr, te = np.arange(75), np.arange(75, 100)
    cv = [(np.arange(0, 50), np.arange(50, 75)), (np.arange(25, 75), np.arange(0, 25))]
    fit = ridge_fold(x[tr], y[tr], x[te], cv)
    xa, xb = zscore_train(x[tr], x[te])
    ref = RidgeCV(alphas=np.array(ENCODE_ALPHAS), fit_intercept=True, cv=cv).fit(xa, y[tr])
    np.testing.assert_allclose(fit.prediction, ref.predict(xb), atol=1e-3)
    np.testing.assert_allclose(fit.alphas, ref.best_alphas_, rtol=1e-4)
    band = banded_ridge_fold([x[tr], low[tr]], y[tr], [x[te], low[te]], cv)
    la, lb = zscore_train(low[tr], low[te])
    # the same model in primal form: scale each band by 1/sqrt(n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref2 = BandedRidgeCV(groups=np.r_[np.zeros(150), np.ones(6)].astype(int), fit_intercept=True, cv=cv,
                             solver_params=dict(n_iter=band_weight_grid(9), alphas=np.array(BANDED_ALPHAS),
                                                progress_bar=False)).fit(np.c_[xa / np.sqrt(150), la / np.sqrt(6)], y[tr])
    np.testing.assert_allclose(band.prediction, ref2.predict(np.c_[xb / np.sqrt(150), lb / np.sqrt(6)]), atol=1e-2)  # float32 kernels
    assert np.corrcoef(band.prediction[:, 0], y[te, 0])[0, 1] > 0.5
