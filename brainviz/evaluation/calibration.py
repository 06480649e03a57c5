"""Calibration of the comparison tests on constructed predictions with known truth.

A test is only offered if, on null units, the false-discovery proportion (FDP) it produces
stays at or below the FDR level ``q`` on average, with realistic noise: AR(1) noise in time,
noise shared between units through a few smooth latent components, model errors that are the
same for every seed (seeds share the held-out data and the training data, so they are
pseudo-replicates), and a stimulus-driven signal. :func:`constructed_predictions` builds one
such experiment; :func:`calibrate` repeats it and reports FDP and power per test.
``bench/calibration.py`` prints the table that docs/evaluation.md shows, and
``tests/test_evaluation_calibration.py`` fails when an offered test exceeds ``q + 2 SE``.

The constructed experiment (all of it *simulated*)
--------------------------------------------------
For each participant ``p``, unit ``u`` and held-out row ``t`` (runs of ``n_rows`` TRs):

* stimulus signal ``s_u(t)``: AR(1) (coefficient ``signal_ar``), the same for every
  participant (same story), unit variance;
* target ``y = w_u s_u + noise``: ``w_u = signal_weight`` in *planted* and *null-signal*
  units, 0 in *null-noise* units; the noise is AR(1) in time (``noise_ar``) with a share
  ``shared_noise`` from ``n_components`` latent AR(1) series mixed into all units;
* prediction of model ``X`` with seed ``k``: ``g_X,u s_u + m_X,p,u + e_X,p,u,k``; the model
  error ``m`` (AR(1), s.d. ``model_error``) is shared by all seeds of a model and participant,
  the seed noise ``e`` (s.d. ``seed_noise``) is not. Model A is better than B in *planted*
  units (``g_A = gain + effect``, ``g_B = gain``); in every null unit ``g_A = g_B`` and A and
  B are exchangeable, so "A predicts better than B" is false there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class ConstructedConfig:
    """Settings of one constructed comparison (defaults: nine participants, five seeds)."""

    n_participants: int = 9
    n_seeds: int = 5
    n_runs: int = 4
    n_rows: int = 120
    n_units: int = 600
    n_planted: int = 120
    n_null_signal: int = 240
    tr: float = 2.0
    signal_ar: float = 0.8
    noise_ar: float = 0.5
    shared_noise: float = 0.3
    n_components: int = 4
    signal_weight: float = 0.5
    gain: float = 0.5
    effect: float = 1.0
    model_error: float = 1.0
    seed_noise: float = 0.3
    participant_gain_sd: float = 0.5


def _ar1(rng: np.random.Generator, n: int, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """AR(1) series along axis 0 with unit marginal variance."""
    e = rng.standard_normal((n, *shape))
    out = np.empty_like(e)
    out[0] = e[0]
    c = np.sqrt(1 - rho**2)
    for t in range(1, n):
        out[t] = rho * out[t - 1] + c * e[t]
    return out


def constructed_predictions(config: ConstructedConfig, rng: Any = 0) -> dict[str, Any]:
    """One constructed experiment.

    Returns
    -------
    dict with ``preds_a``, ``preds_b`` ({participant: (n_seeds, n_rows_total, n_units)}),
    ``targets`` ({participant: (n_rows_total, n_units)}), ``runs`` ({participant: labels}),
    ``planted`` (bool, n_units) and ``null`` (bool, n_units).
    """
    c = config
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_total = c.n_runs * c.n_rows
    kind = np.zeros(c.n_units, dtype=np.int8)  # 0 null-noise, 1 planted, 2 null-signal
    kind[: c.n_planted] = 1
    kind[c.n_planted : c.n_planted + c.n_null_signal] = 2
    w = np.where(kind > 0, c.signal_weight, 0.0)
    g_b = np.full(c.n_units, c.gain)
    g_a = g_b + np.where(kind == 1, c.effect, 0.0)
    runs = np.repeat([f"run-{i + 1}" for i in range(c.n_runs)], c.n_rows)
    # stimulus signal: same story for everyone; AR within run, independent across runs
    signal = np.concatenate([_ar1(gen, c.n_rows, (c.n_units,), c.signal_ar) for _ in range(c.n_runs)])
    mixing = gen.standard_normal((c.n_components, c.n_units)) / np.sqrt(c.n_components)
    preds_a, preds_b, targets, run_labels = {}, {}, {}, {}
    for i in range(c.n_participants):
        pid = f"sub-{i + 1:02d}"
        # participants differ in how strongly they respond (random effects)
        resp = np.clip(1 + c.participant_gain_sd * gen.standard_normal(c.n_units), 0, None)
        own = np.concatenate([_ar1(gen, c.n_rows, (c.n_units,), c.noise_ar) for _ in range(c.n_runs)])
        latent = np.concatenate([_ar1(gen, c.n_rows, (c.n_components,), c.noise_ar) for _ in range(c.n_runs)])
        noise = np.sqrt(1 - c.shared_noise) * own + np.sqrt(c.shared_noise) * (latent @ mixing)
        targets[pid] = (resp * w * signal + noise).astype(np.float32)
        out = []
        for g in (g_a, g_b):
            model_err = c.model_error * np.concatenate(
                [_ar1(gen, c.n_rows, (c.n_units,), c.signal_ar) for _ in range(c.n_runs)])
            seeds = c.seed_noise * gen.standard_normal((c.n_seeds, n_total, c.n_units))
            out.append((g * signal + model_err + seeds).astype(np.float32))
        preds_a[pid], preds_b[pid] = out
        run_labels[pid] = runs
    return {"preds_a": preds_a, "preds_b": preds_b, "targets": targets, "runs": run_labels,
            "planted": kind == 1, "null": kind != 1, "tr": c.tr}


def fdp_and_power(significant: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    """False-discovery proportion (0 when nothing is significant) and power on planted units."""
    sig = np.asarray(significant, dtype=bool)
    n_sig = int(sig.sum())
    fdp = float((sig & ~planted).sum() / n_sig) if n_sig else 0.0
    power = float((sig & planted).sum() / max(int(planted.sum()), 1))
    return fdp, power


#: Tests calibrated by :func:`calibrate`: (level, test) pairs as in CompareConfig, plus the
#: pooled seeds x runs t-test brainviz used before (kept only to show why it was removed).
CALIBRATED_TESTS: tuple[tuple[str, str], ...] = (
    ("group", "ttest"),
    ("group", "sign-flip"),
    ("participant", "block-sign-flip"),
    ("participant", "runs-ttest"),
    ("participant", "paper-initializations"),
)
#: Offered for reasons other than generalisation (the 2019 paper's test of training
#: stability); reported in the table, not held to the FDP bound.
NOT_HELD_TO_BOUND = {("participant", "paper-initializations"), ("participant", "pooled-seeds-runs (removed)")}


def calibrate(
    n_repetitions: int = 50,
    alphas: Sequence[float] = (0.01, 0.05),
    config: ConstructedConfig | None = None,
    *,
    tests: Sequence[tuple[str, str]] = CALIBRATED_TESTS,
    include_pooled: bool = True,
    n_samples: int = 200,
    n_permutations: int = 2000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """FDP on null units and power on planted units per test and FDR level, averaged over
    repetitions of :func:`constructed_predictions`.

    Returns
    -------
    list of dict with ``level, test, alpha, fdp, fdp_se, power, power_se, n_repetitions``
    (participant-level numbers are averaged over participants within a repetition first).
    """
    from brainviz.evaluation import stats as _stats
    from brainviz.evaluation.compare import CompareConfig, compare_predictions, comparison_from_accuracies

    config = config or ConstructedConfig()
    root = np.random.SeedSequence(seed)
    rows: dict[tuple[str, str, float], list[tuple[float, float]]] = {}
    for rep, child in enumerate(root.spawn(n_repetitions)):
        data = constructed_predictions(config, np.random.default_rng(child))
        planted = data["planted"]
        # accuracies and block effects once per repetition; every test reuses them
        base = compare_predictions(data["preds_a"], data["preds_b"], data["targets"], data["runs"],
                                   CompareConfig(n_samples=n_samples, seed=rep), cache=False, tr=data["tr"])
        for alpha in alphas:
            for level, test in tests:
                cfg = CompareConfig(k=20, n_samples=n_samples, seed=rep, alpha=alpha, level=level, test=test,
                                    n_permutations=n_permutations)
                res = comparison_from_accuracies(base.acc_a, base.acc_b, base.runs, cfg, base.meta, base.blocks)
                if level == "group":
                    vals = [fdp_and_power(res.group.significant, planted)]
                else:
                    vals = [fdp_and_power(res.tests[p].significant, planted) for p in res.participants]
                rows.setdefault((level, test, alpha), []).append(tuple(np.mean(vals, axis=0)))
            if include_pooled:
                # the removed design: seeds x runs pooled as independent samples
                vals = []
                for p in base.participants:
                    a, b = base.acc_a[p], base.acc_b[p]
                    r = _stats.paired_test(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), alpha=alpha)
                    vals.append(fdp_and_power(r.significant, planted))
                rows.setdefault(("participant", "pooled-seeds-runs (removed)", alpha), []).append(
                    tuple(np.mean(vals, axis=0)))
        if progress:
            progress(rep + 1, n_repetitions)
    out = []
    for (level, test, alpha), vals in rows.items():
        v = np.asarray(vals)
        n = len(v)
        out.append({
            "level": level, "test": test, "alpha": alpha,
            "fdp": float(v[:, 0].mean()), "fdp_se": float(v[:, 0].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "power": float(v[:, 1].mean()),
            "power_se": float(v[:, 1].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "n_repetitions": n, "held_to_bound": (level, test) not in NOT_HELD_TO_BOUND,
        })
    return out


def calibration_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`calibrate` rows."""
    lines = ["| level | test | q | FDP on null units (± SE) | power on planted units (± SE) | calibrated |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ok = r["fdp"] <= r["alpha"] + 2 * (r["fdp_se"] if np.isfinite(r["fdp_se"]) else 0)
        verdict = ("yes" if ok else "NO") if r["held_to_bound"] else ("yes" if ok else "no (not a generalisation test)")
        lines.append(f"| {r['level']} | {r['test']} | {r['alpha']:g} | {r['fdp']:.3f} ± {r['fdp_se']:.3f} | "
                     f"{r['power']:.3f} ± {r['power_se']:.3f} | {verdict} |")
    return "\n".join(lines)
