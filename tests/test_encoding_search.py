"""The CPU kernel search of encode (``_kernel_search``) makes himalaya's choices.

``banded_ridge_fold`` / ``ridge_fold`` use :func:`search_weighted_kernels` on the numpy backend
and himalaya's ``MultipleKernelRidgeCV`` / ``KernelRidgeCV`` otherwise; both must give the
same penalties, band weights, inner scores and held-out predictions.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.data.splits import inner_folds
from brainviz.evaluation import encoding
from brainviz.evaluation._kernel_search import search_weighted_kernels


def _problem(n_bands: int, seed: int = 0, n_rows: int = 150, n_units: int = 300):
    rng = np.random.default_rng(seed)
    widths = [60, 8, 20][:n_bands]
    bands = [rng.standard_normal((n_rows, w)) for w in widths]
    # units read out each band with a different strength, so the band weights matter
    signal = sum(b @ rng.standard_normal((b.shape[1], n_units)) * s / np.sqrt(b.shape[1])
                 for b, s in zip(bands, rng.uniform(0.0, 1.0, (n_bands, 1, n_units))))
    y = (signal + rng.standard_normal((n_rows, n_units)) * 1.0 + 3.0).astype(np.float32)
    runs = np.repeat(["r1", "r2", "r3"], n_rows // 3)
    train = np.flatnonzero(runs != "r3")
    test = np.flatnonzero(runs == "r3")
    inner = inner_folds(runs[train], 0)
    return bands, y, train, test, inner


def _himalaya_banded(bands_train, y_train, bands_test, inner, n_ratios=9):
    """The himalaya path of banded_ridge_fold, forced (it is taken on non-numpy backends)."""
    from himalaya.kernel_ridge import MultipleKernelRidgeCV

    k_train, k_test = [], []
    for a, b in zip(bands_train, bands_test):
        xa, xb = encoding.zscore_train(a, b)
        k_train.append(xa @ xa.T / xa.shape[1])
        k_test.append(xb @ xa.T / xa.shape[1])
    n_iter = encoding.band_weight_grid(n_ratios) if len(k_train) == 2 else 30
    model = MultipleKernelRidgeCV(kernels="precomputed", fit_intercept=True, cv=inner, random_state=0,
                                  solver_params=dict(n_iter=n_iter, alphas=np.asarray(encoding.BANDED_ALPHAS),
                                                     progress_bar=False))
    model.fit(np.stack(k_train).astype(np.float32), y_train)
    return model, model.predict(np.stack(k_test).astype(np.float32))


@pytest.mark.parametrize("n_bands", [2, 3])
def test_banded_search_matches_himalaya(n_bands):
    bands, y, train, test, inner = _problem(n_bands)
    with encoding.himalaya_backend("numpy"):
        fast = encoding.banded_ridge_fold([b[train] for b in bands], y[train], [b[test] for b in bands], inner)
        model, reference = _himalaya_banded([b[train] for b in bands], y[train], [b[test] for b in bands], inner)
    same_alpha = np.isclose(fast.alphas, model.best_alphas_, rtol=1e-4)
    same_deltas = np.all(np.isclose(fast.deltas, model.deltas_, atol=1e-3), axis=0)
    assert same_alpha.mean() >= 0.99 and same_deltas.mean() >= 0.99
    chosen = same_alpha & same_deltas
    # float32 round-off only: within 1 % of the predictions' spread
    atol = 0.01 * float(np.std(reference))
    np.testing.assert_allclose(fast.prediction[:, chosen], reference[:, chosen], rtol=1e-3, atol=atol)
    np.testing.assert_allclose(fast.inner_score, np.asarray(model.cv_scores_).max(axis=0), rtol=1e-3, atol=1e-4)
    # the band weights really vary across units (the test would be weak if one gamma won everywhere)
    assert len(np.unique(np.round(fast.deltas[0] - fast.deltas[1], 3))) >= 3


def test_single_kernel_search_matches_kernel_ridge_cv():
    from himalaya.kernel_ridge import KernelRidgeCV

    bands, y, train, test, inner = _problem(1, seed=1)
    x = bands[0]
    with encoding.himalaya_backend("numpy"):
        fast = encoding.ridge_fold(x[train], y[train], x[test], inner)
        xa, xb = encoding.zscore_train(x[train], x[test])
        model = KernelRidgeCV(alphas=np.asarray(encoding.ENCODE_ALPHAS), kernel="linear", fit_intercept=True,
                              cv=inner, warn=False).fit(xa, y[train])
        reference = model.predict(xb)
    same = np.isclose(fast.alphas, model.best_alphas_, rtol=1e-4)
    assert same.mean() >= 0.99
    np.testing.assert_allclose(fast.prediction[:, same], reference[:, same], rtol=1e-3,
                               atol=0.01 * float(np.std(reference)))
    assert fast.deltas is None


def test_unit_batches_give_the_same_result():
    bands, y, train, test, inner = _problem(2, seed=2)
    kernels = []
    for b in bands:
        z = encoding.zscore_train(b[train], b[test])[0]
        kernels.append(z @ z.T / z.shape[1])
    grid = encoding.band_weight_grid(5)
    whole = search_weighted_kernels(np.stack(kernels), y[train], grid, encoding.BANDED_ALPHAS, inner)
    batched = search_weighted_kernels(np.stack(kernels), y[train], grid, encoding.BANDED_ALPHAS, inner,
                                      n_units_batch=64)
    np.testing.assert_array_equal(whole.alphas, batched.alphas)
    np.testing.assert_array_equal(whole.gammas, batched.gammas)
    np.testing.assert_allclose(whole.dual, batched.dual, rtol=1e-5, atol=1e-6)


def test_bad_gamma_shape_and_empty_split_are_refused():
    bands, y, train, test, inner = _problem(2, seed=3)
    k = np.stack([np.eye(len(train))] * 2)
    with pytest.raises(ValueError, match="gammas must have shape"):
        search_weighted_kernels(k, y[train], np.ones((3, 3)), [1.0], inner)
    with pytest.raises(ValueError, match="empty"):
        search_weighted_kernels(k, y[train], np.ones((1, 2)) / 2, [1.0], [(np.arange(5), np.array([], int))])
