"""The 20-vs-20 test: semantics, backends, NaN handling, draws."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from brainviz.evaluation import draw_indices, twenty_vs_twenty, twenty_vs_twenty_by_run
from brainviz.evaluation import _backends

BACKENDS = ["numba", "numpy", "torch"]


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def backends():
    return [b for b in BACKENDS if b != "torch" or _have_torch()]


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------

# targets t = [0, 1, 3], predictions p = [0.5, 3, 3] (one unit), k = 2
HAND_T = np.array([[0.0], [1.0], [3.0]])
HAND_P = np.array([[0.5], [3.0], [3.0]])
HAND_TRUE = np.array([[0, 1], [0, 2], [1, 1], [2, 0]])
HAND_DISTR = np.array([[2, 2], [0, 2], [0, 0], [0, 0]])
# draw 0: d_correct = 0.25 + 4 = 4.25, d_distractor = 9 + 4 = 13      -> 1
# draw 1: distractors are the true rows: 0.25 + 0 == 0.25 + 0        -> 0.5 (tie)
# draw 2: d_correct = 4 + 4 = 8, d_distractor = 0.25 + 0.25 = 0.5    -> 0
# draw 3: d_correct = 0 + 0.25, d_distractor = 6.25 + 0.25 = 6.5     -> 1
HAND_SCORES = [1.0, 0.5, 0.0, 1.0]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_computed_with_ties(backend, dtype):
    for i in range(len(HAND_TRUE)):
        acc = twenty_vs_twenty(HAND_P.astype(dtype), HAND_T.astype(dtype),
                               indices=(HAND_TRUE[i : i + 1], HAND_DISTR[i : i + 1]), backend=backend)
        assert acc.tolist() == [HAND_SCORES[i]]
    acc = twenty_vs_twenty(HAND_P.astype(dtype), HAND_T.astype(dtype), indices=(HAND_TRUE, HAND_DISTR), backend=backend)
    assert acc.tolist() == [np.mean(HAND_SCORES)] == [0.625]


def test_not_the_symmetric_two_vs_two():
    # Only the predictions are swapped: the distractor rows' targets never enter.
    t = HAND_T.copy()
    p = HAND_P.copy()
    idx = (HAND_TRUE, HAND_DISTR)
    base = twenty_vs_twenty(p, t, indices=idx, backend="numpy")
    t2 = t.copy()
    t2[2] = 100.0  # in draws 0 and 2, row 2 is only ever a distractor
    changed = twenty_vs_twenty(p, t2, indices=(HAND_TRUE[[0, 2]], HAND_DISTR[[0, 2]]), backend="numpy")
    same = twenty_vs_twenty(p, t, indices=(HAND_TRUE[[0, 2]], HAND_DISTR[[0, 2]]), backend="numpy")
    assert base.tolist() == [0.625]
    assert changed.tolist() == same.tolist() == [0.5]  # row 2's target is irrelevant when it is a distractor


def test_perfect_predictions_score_one():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((60, 40)).astype(np.float32)
    acc = twenty_vs_twenty(t.copy(), t, n_samples=200, rng=1)
    assert acc.shape == (40,)
    assert np.all(acc == 1.0)


def test_independent_predictions_near_chance():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((100, 300)).astype(np.float32)
    p = rng.standard_normal((100, 300)).astype(np.float32)
    acc = twenty_vs_twenty(p, t, n_samples=300, rng=2)
    assert abs(acc.mean() - 0.5) < 0.02
    assert 0.2 < acc.min() and acc.max() < 0.8


def test_signal_above_chance():
    rng = np.random.default_rng(2)
    t = rng.standard_normal((100, 50)).astype(np.float32)
    p = (0.5 * t + rng.standard_normal((100, 50))).astype(np.float32)
    assert twenty_vs_twenty(p, t, n_samples=200, rng=0).mean() > 0.8


# --------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float32", "float64", "small-ints", "near-ties", "tiny"])
def test_all_backends_agree_on_same_draws(kind):
    rng = np.random.default_rng(3)
    n_rows, n_units = 40, 200  # > one numba block of 128 units, not a multiple of it
    if kind == "small-ints":  # exactly representable, many exact ties
        t = rng.integers(-2, 3, (n_rows, n_units)).astype(np.float32)
        p = rng.integers(-2, 3, (2, n_rows, n_units)).astype(np.float32)
    else:
        t = rng.standard_normal((n_rows, n_units))
        p = 0.3 * t + rng.standard_normal((2, n_rows, n_units))
        if kind == "near-ties":  # duplicated rows make exact and near ties in float32
            p[:, 1::2] = p[:, ::2][:, : n_rows // 2]
            t[1::2] = t[::2][: n_rows // 2] + 1e-7
        if kind == "tiny":  # squared differences underflow to float32 subnormals and zero
            t, p = t * 1e-21, p * 1e-21
        dtype = np.float64 if kind == "float64" else np.float32
        t, p = t.astype(dtype), p.astype(dtype)
    idx = draw_indices(n_rows, k=20, n_samples=100, rng=4)
    results = {b: twenty_vs_twenty(p, t, indices=idx, backend=b) for b in backends()}
    ref = results["numpy"]
    assert ref.shape == (2, n_units)
    for b, acc in results.items():
        np.testing.assert_array_equal(acc, ref, err_msg=f"backend {b} differs from the numpy reference")


def test_leading_axes_equal_separate_calls():
    rng = np.random.default_rng(5)
    t = rng.standard_normal((30, 20)).astype(np.float32)
    p = rng.standard_normal((2, 3, 30, 20)).astype(np.float32)
    idx = draw_indices(30, n_samples=50, rng=0)
    acc = twenty_vs_twenty(p, t, indices=idx)
    assert acc.shape == (2, 3, 20)
    np.testing.assert_array_equal(acc[1, 2], twenty_vs_twenty(p[1, 2], t, indices=idx))


def test_mixed_dtypes_and_non_contiguous_inputs():
    rng = np.random.default_rng(6)
    t = rng.standard_normal((30, 40))
    p = rng.standard_normal((40, 30)).T  # non-contiguous view
    idx = draw_indices(30, n_samples=60, rng=0)
    ref = twenty_vs_twenty(np.ascontiguousarray(p), t, indices=idx, backend="numpy")
    np.testing.assert_array_equal(twenty_vs_twenty(p, t, indices=idx), ref)
    np.testing.assert_array_equal(twenty_vs_twenty(p.astype(np.float16), t.astype(np.float16), indices=idx),
                                  twenty_vs_twenty(p.astype(np.float16).astype(np.float64),
                                                   t.astype(np.float16).astype(np.float64), indices=idx, backend="numpy"))


@pytest.mark.parametrize("backend", backends())
def test_non_finite_unit_gives_nan(backend):
    rng = np.random.default_rng(7)
    t = rng.standard_normal((30, 5)).astype(np.float32)
    p = (t + 0.1 * rng.standard_normal((30, 5))).astype(np.float32)
    p[3, 1] = np.nan
    t[29, 3] = np.inf  # a row possibly never drawn still makes the unit NaN
    idx = draw_indices(30, n_samples=40, rng=0)
    acc = twenty_vs_twenty(p, t, indices=idx, backend=backend)
    assert np.isnan(acc[1]) and np.isnan(acc[3])
    clean = twenty_vs_twenty(p[:, [0, 2, 4]], t[:, [0, 2, 4]], indices=idx, backend=backend)
    np.testing.assert_array_equal(acc[[0, 2, 4]], clean)


def test_numba_import_failure_falls_back_to_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "brainviz.evaluation._kernel_numba", raising=False)
    _backends.get_counts.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba"):
            fn = _backends.get_counts("numba")
        assert fn.__module__.endswith("_kernel_numpy")
    finally:
        _backends.get_counts.cache_clear()


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        twenty_vs_twenty(HAND_P, HAND_T, n_samples=2, rng=0, backend="cupy")


# --------------------------------------------------------------------------------------
# draws
# --------------------------------------------------------------------------------------


def test_draw_indices_shapes_seeds_and_independence():
    a = draw_indices(50, k=20, n_samples=100, rng=3)
    b = draw_indices(50, k=20, n_samples=100, rng=np.random.default_rng(3))
    assert a[0].shape == a[1].shape == (100, 20)
    assert a[0].dtype == np.int64
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert a[0].min() >= 0 and a[0].max() < 50
    # with replacement: some draw repeats a row
    assert any(len(set(row)) < 20 for row in a[0])


def test_global_random_state_untouched():
    state = np.random.get_state()[1].copy()
    twenty_vs_twenty(HAND_P, HAND_T, k=2, n_samples=5, rng=None)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize(
    "indices, match",
    [
        ((np.zeros((3, 2), int), np.zeros((3, 3), int)), "differ in shape"),
        ((np.zeros((3, 2), int), np.full((3, 2), 3)), r"\[0, 3\)"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), "integers"),
        ((np.zeros(3, int), np.zeros(3, int)), "shape"),
    ],
)
def test_bad_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        twenty_vs_twenty(HAND_P, HAND_T, indices=indices)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="predictions"):
        twenty_vs_twenty(np.zeros((4, 2)), np.zeros((4, 3)))


def test_by_run_draws_within_each_run():
    rng = np.random.default_rng(8)
    runs = np.array(["b"] * 30 + ["a"] * 25)
    t = rng.standard_normal((55, 10)).astype(np.float32)
    p = (t + rng.standard_normal((55, 10))).astype(np.float32)
    acc, labels = twenty_vs_twenty_by_run(p, t, runs, n_samples=80, rng=9)
    assert labels.tolist() == ["b", "a"]
    assert acc.shape == (2, 10)
    gen = np.random.default_rng(9)
    idx_b = draw_indices(30, n_samples=80, rng=gen)
    idx_a = draw_indices(25, n_samples=80, rng=gen)
    np.testing.assert_array_equal(acc[0], twenty_vs_twenty(p[:30], t[:30], indices=idx_b))
    np.testing.assert_array_equal(acc[1], twenty_vs_twenty(p[30:], t[30:], indices=idx_a))
    acc2, _ = twenty_vs_twenty_by_run(p, t, runs, indices={"a": idx_a, "b": idx_b})
    np.testing.assert_array_equal(acc, acc2)


def test_no_warnings_on_clean_input():
    rng = np.random.default_rng(10)
    t = rng.standard_normal((30, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twenty_vs_twenty(t, t, n_samples=20, rng=0)
