"""High-level comparison / evaluation API: same draws, paired tests, FDR, cache."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from brainviz.cache import Cache
from brainviz.config import ConfigError
from brainviz.evaluation import (
    CompareConfig,
    EvaluateConfig,
    compare_predictions,
    draw_indices,
    evaluate_predictions,
    twenty_vs_twenty,
)
from brainviz.evaluation import compare as compare_mod

N_ROWS, N_UNITS, N_SIGNAL = 160, 150, 30
RUNS = np.repeat(["run-1", "run-2", "run-3", "run-4"], N_ROWS // 4)


def _data(seed=0, n_seeds=2, participants=("sub-01", "sub-02")):
    rng = np.random.default_rng(seed)
    preds_a, preds_b, targets, runs = {}, {}, {}, {}
    for pid in participants:
        t = rng.standard_normal((N_ROWS, N_UNITS)).astype(np.float32)
        w = np.zeros(N_UNITS, dtype=np.float32)
        w[:N_SIGNAL] = 0.8
        targets[pid] = t
        preds_a[pid] = (w * t + rng.standard_normal((n_seeds, N_ROWS, N_UNITS))).astype(np.float32)
        preds_b[pid] = (0.0 * t + rng.standard_normal((n_seeds, N_ROWS, N_UNITS))).astype(np.float32)
        runs[pid] = RUNS
    return preds_a, preds_b, targets, runs


def test_planted_units_detected_and_tidy_outputs(tmp_path):
    preds_a, preds_b, targets, runs = _data(participants=("sub-01", "sub-02", "sub-03", "sub-04"))
    cfg = CompareConfig(n_samples=100, alpha=0.01)
    res = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=Cache(tmp_path))
    assert res.level == "group"  # default with >= 2 participants
    df = res.to_frame()
    assert list(df.columns)[:5] == ["unit", "acc_a", "acc_b", "diff", "se"]
    assert {"effect", "t", "p", "q", "significant", "n_participants", "test", "level"} <= set(df.columns)
    assert len(df) == N_UNITS and (df.test == "group:ttest").all()
    assert df.significant[df.unit < N_SIGNAL].mean() > 0.9
    assert (df["diff"][df.significant] > 0).all()
    assert df.significant[df.unit >= N_SIGNAL].sum() <= 3
    for pid in res.participants:
        assert res.acc_a[pid].shape == (2, 4, N_UNITS)  # seeds x runs x units
        assert res.tests[pid].test == "block-sign-flip[pearson]"  # participant level, reported too
        assert res.blocks[pid].shape[1] == N_UNITS and res.blocks[pid].shape[0] >= 4
    assert res.group.n_samples == 4  # participants, never seeds
    s = res.summary()
    json.dumps(s)  # JSON-able
    assert s["test"] == "group:ttest" and s["level"] == "group" and s["fdr"] == "bh" and s["alpha"] == 0.01
    assert s["sample_sizes"]["n_participants"] == 4 and s["sample_sizes"]["n_seeds"]["sub-01"] == [2, 2]
    assert s["counts"]["group"]["n_a_better"] >= 27
    assert s["explanation"] is None
    assert s["runs"]["sub-01"] == ["run-1", "run-2", "run-3", "run-4"]
    curve = s["fig2"]["average"]["mean_diff"]
    assert curve[0] > 0.2  # the best units are A's planted ones
    assert s["fig2"]["average"]["n_units"][-1] == N_UNITS
    # participant level: one row per participant and unit, block sign-flips
    part = compare_predictions(preds_a, preds_b, targets, runs, cfg.replace(level="participant"), cache=False)
    pdf = part.to_frame()
    assert list(pdf.columns)[:2] == ["participant", "unit"] and len(pdf) == 4 * N_UNITS
    sub = pdf[pdf.participant == "sub-01"]
    assert sub.significant[sub.unit < N_SIGNAL].mean() > 0.8
    assert sub.significant[sub.unit >= N_SIGNAL].sum() <= 3


def test_group_level_needs_two_participants_and_auto_falls_back():
    preds_a, preds_b, targets, runs = _data(participants=("sub-01",))
    res = compare_predictions(preds_a, preds_b, targets, runs, CompareConfig(n_samples=40), cache=False)
    assert res.level == "participant" and res.group is None
    with pytest.raises(ConfigError, match="at least 2 participants"):
        compare_predictions(preds_a, preds_b, targets, runs, CompareConfig(n_samples=40, level="group"), cache=False)


def test_seeds_are_averaged_not_pooled():
    """Pseudo-replicated seeds (identical model error in every seed) must not shrink p-values:
    the runs t-test on 2 seeds equals the one on the seed mean, and adding copies changes nothing."""
    preds_a, preds_b, targets, runs = _data(participants=("sub-01",), n_seeds=1)
    cfg = CompareConfig(n_samples=40, level="participant", test="runs-ttest")
    one = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=False)
    five = compare_predictions({k: np.repeat(v, 5, axis=0) for k, v in preds_a.items()},
                               {k: np.repeat(v, 5, axis=0) for k, v in preds_b.items()}, targets, runs, cfg, cache=False)
    np.testing.assert_allclose(five.tests["sub-01"].p, one.tests["sub-01"].p)
    assert five.tests["sub-01"].n_samples == 4  # runs


def test_same_draws_for_a_and_b_per_participant_and_run(tmp_path):
    preds_a, preds_b, targets, runs = _data(n_seeds=1, participants=("sub-01",))
    cfg = CompareConfig(n_samples=60, seed=3)
    res = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=False)
    rows = np.flatnonzero(RUNS == "run-2")
    idx = draw_indices(len(rows), k=20, n_samples=60, rng=compare_mod.draw_generator(3, "sub-01", "run-2"))
    np.testing.assert_array_equal(res.acc_a["sub-01"][0, 1], twenty_vs_twenty(preds_a["sub-01"][0, rows], targets["sub-01"][rows], indices=idx))
    np.testing.assert_array_equal(res.acc_b["sub-01"][0, 1], twenty_vs_twenty(preds_b["sub-01"][0, rows], targets["sub-01"][rows], indices=idx))


def test_identical_models_no_discoveries_no_warnings():
    preds_a, _, targets, runs = _data(participants=("sub-01",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compare_predictions(preds_a, {k: v.copy() for k, v in preds_a.items()}, targets, runs,
                                  CompareConfig(n_samples=50), cache=False)
        summary = res.summary()
    np.testing.assert_array_equal(res.acc_a["sub-01"], res.acc_b["sub-01"])
    df = res.to_frame()
    assert df.p.isna().all() and not df.significant.any()
    assert summary["counts"]["total"]["n_significant"] == 0
    assert summary["counts"]["total"]["n_tested"] == 0


def test_subset_of_participants_gets_the_same_draws():
    preds_a, preds_b, targets, runs = _data()
    cfg = CompareConfig(n_samples=40)
    both = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=False)
    one = compare_predictions({"sub-02": preds_a["sub-02"]}, {"sub-02": preds_b["sub-02"]}, targets, runs, cfg, cache=False)
    np.testing.assert_array_equal(both.acc_a["sub-02"], one.acc_a["sub-02"])


def test_second_identical_request_is_served_from_cache(tmp_path, monkeypatch):
    preds_a, preds_b, targets, runs = _data(participants=("sub-01",))
    cache = Cache(tmp_path)
    cfg = CompareConfig(n_samples=50)
    first = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=cache)
    assert first.meta["from_cache"] is False

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(compare_mod, "paired_accuracies", boom)
    second = compare_predictions(preds_a, preds_b, targets, runs, cfg, cache=cache)
    assert second.meta["from_cache"] is True
    assert second.to_frame().equals(first.to_frame())
    assert second.summary()["counts"] == first.summary()["counts"]
    # a new alpha reuses the cached accuracies (only the statistics are redone)
    third = compare_predictions(preds_a, preds_b, targets, runs, cfg.replace(alpha=0.2, fdr="by"), cache=cache)
    assert third.meta["from_cache"] is False and third.tests["sub-01"].fdr == "by"
    np.testing.assert_array_equal(third.acc_a["sub-01"], first.acc_a["sub-01"])
    # different inputs -> different key -> recomputed (and here: the patched function is hit)
    changed = {k: v + 1 for k, v in preds_a.items()}
    with pytest.raises(AssertionError, match="recomputed"):
        compare_predictions(changed, preds_b, targets, runs, cfg, cache=cache)


def test_participant_tests_and_all_rows_option():
    preds_a, preds_b, targets, runs = _data(participants=("sub-01",), n_seeds=3)
    res = compare_predictions(preds_a, preds_b, targets, runs,
                              CompareConfig(n_samples=40, test="paper-initializations", by_run=False), cache=False)
    assert res.runs["sub-01"] == ["all"]
    assert res.level == "participant"
    assert res.tests["sub-01"].test == "paper-initializations" and res.tests["sub-01"].n_samples == 3
    with pytest.raises(ValueError, match="at least 2 held-out runs"):
        compare_predictions(preds_a, preds_b, targets, runs,
                            CompareConfig(n_samples=40, test="runs-ttest", by_run=False), cache=False)
    blk = compare_predictions(preds_a, preds_b, targets, runs, CompareConfig(n_samples=40, test="block-sign-flip",
                                                                              block_seconds=40), cache=False, tr=2.0)
    # 4 runs of 40 rows, 20-row blocks -> 8 blocks -> 256 sign vectors: exact
    assert blk.blocks["sub-01"].shape == (8, N_UNITS)
    assert blk.tests["sub-01"].exact and blk.tests["sub-01"].n_permutations == 256


def test_config_validation_and_roundtrip():
    cfg = CompareConfig(k=10, n_samples=20, fdr="by")
    assert CompareConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.key() != CompareConfig().key()
    for bad in ({"k": 0}, {"alpha": 1.5}, {"fdr": "holm"}, {"test": "mannwhitney"}, {"n_samples": 2.5},
                {"level": "voxel"}, {"level": "group", "test": "runs-ttest"}, {"level": "participant", "test": "ttest"},
                {"block_seconds": 0}, {"n_permutations": 0}, {"test": "wilcoxon"}):
        with pytest.raises(ConfigError):
            CompareConfig(**bad)
    with pytest.raises(ConfigError):
        EvaluateConfig(metric="r2")


@pytest.mark.parametrize("metric", ["twenty-vs-twenty", "pearson", "pove"])
def test_evaluate_predictions(metric, tmp_path):
    preds_a, _, targets, runs = _data(participants=("sub-01",))
    if metric == "pove":  # noise-dominated predictions explain negative variance: shrink them optimally
        preds_a = {k: v * np.float32(0.8 / (0.8**2 + 1)) for k, v in preds_a.items()}
    cfg = EvaluateConfig(metric=metric, n_samples=60)
    res = evaluate_predictions(preds_a, targets, runs, cfg, cache=Cache(tmp_path))
    df = res.to_frame()
    assert list(df.columns) == ["participant", "unit", "metric", "score", "effect", "t", "p", "q", "significant",
                                "test", "level"]
    assert (df.test == "block-sign-flip[pearson]").all()
    sig = df.significant.to_numpy()
    assert sig[:N_SIGNAL].mean() > 0.75
    assert sig[N_SIGNAL:].sum() <= 3
    s = res.summary()
    json.dumps(s)
    assert s["chance"] == (0.5 if metric == "twenty-vs-twenty" else 0.0)
    again = evaluate_predictions(preds_a, targets, runs, cfg, cache=Cache(tmp_path))
    assert again.meta["from_cache"] is True
    assert again.to_frame().equals(df)


def test_array_digest_is_a_content_hash():
    from brainviz.evaluation._digest import MIN_BYTES, array_digest

    rng = np.random.default_rng(0)
    big = rng.standard_normal(MIN_BYTES // 4 + 3).astype(np.float32)  # chunked path + unaligned tail
    d = array_digest(big)
    assert array_digest(big.copy()) == d
    changed = big.copy()
    changed[12345] = np.nextafter(changed[12345], np.float32(10))
    assert array_digest(changed) != d
    tail = big.copy()
    tail[-1] += 1
    assert array_digest(tail) != d
    assert array_digest(big[:-1].reshape(-1, 1)) != array_digest(big[:-1])  # shape enters
    small = np.arange(10.0)
    assert array_digest(small) == array_digest(small.copy()) != array_digest(small.astype(np.float32))


def test_fdr_controlled_on_simulated_null_units_through_the_pipeline():
    """Planted units + null units, 20-vs-20 -> group t-test across participants -> BH: mean FDP <= q."""
    q_level, n_units, n_signal, n_rows = 0.1, 120, 60, 80
    fdps, power = [], []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        pa, pb, tt, rr = {}, {}, {}, {}
        for i in range(6):
            t = rng.standard_normal((n_rows, n_units)).astype(np.float32)
            w = np.zeros(n_units, dtype=np.float32)
            w[:n_signal] = 0.5
            model_error = rng.standard_normal((n_rows, n_units))  # shared by the seeds
            pa[i] = (w * t + model_error + 0.3 * rng.standard_normal((3, n_rows, n_units))).astype(np.float32)
            pb[i] = (rng.standard_normal((n_rows, n_units)) + 0.3 * rng.standard_normal((3, n_rows, n_units))
                     ).astype(np.float32)
            tt[i], rr[i] = t, np.repeat(["r1", "r2", "r3", "r4"], n_rows // 4)
        res = compare_predictions(pa, pb, tt, rr, CompareConfig(n_samples=40, alpha=q_level, seed=seed), cache=False)
        sig = res.group.significant
        fdps.append(sig[n_signal:].sum() / max(sig.sum(), 1))
        power.append(sig[:n_signal].mean())
    assert np.mean(fdps) <= q_level
    assert np.mean(power) > 0.7
