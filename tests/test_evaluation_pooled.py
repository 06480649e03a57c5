"""Group tests for models fitted on several participants' data (shared heads, group fits).

A held-out run of one participant is training data of the other folds' models, so with a
model fitted on all participants the participants' run-averaged scores are dependent and the
run-averaged t-test across participants is anti-conservative; the per-run test combined over
runs (``group:ttest-by-run``) is not. Everything here is simulated.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.evaluation import stats
from brainviz.evaluation.compare import CompareConfig, comparison_from_accuracies, resolve_tests


def _pooled_null_scores(rng, n_participants=12, n_runs=4, n_rows=60, n_units=600, n_features=12, alpha=1.0,
                        leave_one_out=False):
    """Per participant, run and unit: r between a group-fitted ridge prediction (trained on the
    mean of all participants' other runs, or of the *other* participants' with
    ``leave_one_out``, as ``encode --fit-to others``) and the participant's held-out data; pure noise."""
    from scipy.signal import lfilter

    n = n_runs * n_rows
    runs = np.repeat(np.arange(n_runs), n_rows)
    x = lfilter([1.0], [1.0, -0.8], rng.standard_normal((n + 50, n_features)), axis=0)[50:]
    y = lfilter([1.0], [1.0, -0.5], rng.standard_normal((n_participants, n + 50, n_units)), axis=1)[:, 50:]
    total = y.sum(axis=0)
    r = np.zeros((n_participants, n_runs, n_units))
    for k in range(n_runs):
        tr, te = runs != k, runs == k
        xt = x[tr] - x[tr].mean(0)
        solve = np.linalg.solve(xt.T @ xt + alpha * np.eye(n_features), xt.T)
        for p in range(n_participants):
            if p == 0 or leave_one_out:  # a shared fit predicts the same for everyone
                mean = (total - y[p]) / (n_participants - 1) if leave_one_out else total / n_participants
                pred = (x[te] - x[tr].mean(0)) @ (solve @ (mean[tr] - mean[tr].mean(0)))
                a = pred - pred.mean(0)
                a /= np.linalg.norm(a, axis=0)
            b = y[p, te] - y[p, te].mean(0)
            r[p, k] = (a * b).sum(0) / np.linalg.norm(b, axis=0)
    return r


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_run_averaged_ttest_is_anti_conservative_for_pooled_fits_and_by_run_is_not(leave_one_out):
    rng = np.random.default_rng(0)
    rates_avg, rates_run = [], []
    for _ in range(3):
        r = _pooled_null_scores(rng, leave_one_out=leave_one_out)
        rates_avg.append(np.mean(stats.group_test(r.mean(axis=1), method="ttest").p < 0.05))
        rates_run.append(np.mean(stats.group_test_by_run(r).p < 0.05))
    assert np.mean(rates_avg) > 0.08  # the problem this test exists for (measured ~0.1-0.2)
    assert np.mean(rates_run) <= 0.07


def test_by_run_test_finds_a_consistent_effect():
    rng = np.random.default_rng(1)
    d = rng.standard_normal((10, 4, 200)) * 0.05
    d[:, :, :50] += 0.08
    res = stats.group_test_by_run(d)
    assert res.test == "group:ttest-by-run" and res.n_samples == 10
    assert res.significant[:50].mean() > 0.8 and res.significant[50:].mean() < 0.05
    assert np.allclose(res.effect, d.mean(axis=(0, 1)))


def test_cauchy_combination():
    p = np.array([[0.01, 0.5, np.nan], [0.01, 0.5, 0.2]])
    out = stats.cauchy_combination(p, axis=0)
    assert out[0] == pytest.approx(0.01, rel=1e-6) and out[1] == pytest.approx(0.5, abs=1e-9)
    assert out[2] == pytest.approx(0.2, rel=1e-6)  # NaN left out
    assert stats.cauchy_combination(np.array([1.0, 1e-4]))[()] < 0.001  # one p of 1 does not swamp the evidence
    # independent uniform p-values stay uniform
    u = np.random.default_rng(2).uniform(size=(4, 20000))
    assert abs(np.mean(stats.cauchy_combination(u) < 0.05) - 0.05) < 0.01


def test_one_run_falls_back_to_the_plain_ttest():
    d = np.random.default_rng(3).standard_normal((6, 1, 30))
    res = stats.group_test_by_run(d)
    assert res.test == "group:ttest"
    assert np.allclose(res.p, stats.group_test(d[:, 0], method="ttest").p)


def test_pooled_fits_choose_the_by_run_test_by_default():
    cfg = CompareConfig(level="group")
    assert resolve_tests(cfg, 4)[1] == "ttest" and resolve_tests(cfg, 4, pooled_fits=True)[1] == "ttest-by-run"
    assert resolve_tests(CompareConfig(level="group", test="ttest"), 4, pooled_fits=True)[1] == "ttest"
    rng = np.random.default_rng(4)
    acc_a = {f"P{i}": 0.5 + 0.02 * rng.standard_normal((1, 3, 20)) for i in range(5)}
    acc_b = {f"P{i}": 0.5 + 0.02 * rng.standard_normal((1, 3, 20)) for i in range(5)}
    runs = {p: ["run-1", "run-2", "run-3"] for p in acc_a}
    res = comparison_from_accuracies(acc_a, acc_b, runs, cfg, {"pooled_fits": True})
    assert res.group.test == "group:ttest-by-run"
    assert comparison_from_accuracies(acc_a, acc_b, runs, cfg, {}).group.test == "group:ttest"


def test_pooled_fits_reads_the_card():
    from brainviz.evaluation.io import pooled_fits

    assert pooled_fits({"card": {"head_mode": "shared", "train_config": {}}})
    assert pooled_fits({"card": {"head_mode": "split", "train_config": {"together": True}}})
    assert pooled_fits({"card": {"head_mode": "split", "train_config": {"variant": "joint"}}})
    assert not pooled_fits({"card": {"head_mode": "split", "train_config": {"together": False, "variant": "fine-tuned"}}})
    assert not pooled_fits({"card": None})


def test_roi_tests_use_the_per_run_test_for_pooled_fits():
    from brainviz.evaluation.compare import roi_tests

    rng = np.random.default_rng(7)
    acc_a = {f"P{i}": 0.5 + 0.02 * rng.standard_normal((1, 3, 20)) for i in range(6)}
    acc_b = {f"P{i}": 0.5 + 0.02 * rng.standard_normal((1, 3, 20)) for i in range(6)}
    for p in acc_a:
        acc_a[p][..., :10] += 0.05  # ROI 1 better in A
    runs = {p: ["run-1", "run-2", "run-3"] for p in acc_a}
    labels = np.repeat([1, 2], 10)
    pooled = comparison_from_accuracies(acc_a, acc_b, runs, CompareConfig(level="group"), {"pooled_fits": True})
    table = roi_tests(pooled, labels, {1: "first", 2: "second"}).set_index("roi")
    assert set(table["test"]) == {"group:ttest-by-run"}
    assert table.loc["first", "significant"] and not table.loc["second", "significant"]
    plain = comparison_from_accuracies(acc_a, acc_b, runs, CompareConfig(level="group"), {})
    assert set(roi_tests(plain, labels, {1: "first", 2: "second"})["test"]) == {"group:ttest"}
