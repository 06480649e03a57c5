"""High-level comparison of two models (and evaluation of one), used by the CLI and the app.

:func:`compare_predictions` takes held-out predictions of models A and B and the targets of
every participant, draws the 20-vs-20 rows once per (participant, run) from a seeded generator,
scores A and B (every seed) on the *same* draws, runs a paired test per unit across the samples
(seeds x runs), controls the FDR across units within each participant and returns a
:class:`ComparisonResult` (tidy table + JSON summary with the paper's Fig. 2 curves).
:func:`compare_models` does the same from two checkpoint (or prediction) folders.
:func:`evaluate_predictions` / :func:`evaluate_model` score one model (20-vs-20 against chance,
Pearson r or variance explained against 0).

Results are cached in :class:`brainviz.cache.Cache` under keys made of content hashes of the
inputs and of the config: the accuracies (namespace ``compare-acc``, keyed by the inputs and
the draw settings only, so changing ``alpha``/``fdr``/``test`` does not recompute them) and
the full result (``compare``). A second identical request is read from the cache.

Examples
--------
>>> from brainviz.evaluation import CompareConfig, compare_predictions
>>> res = compare_predictions(preds_a, preds_b, targets, runs, CompareConfig(n_samples=1000))  # doctest: +SKIP
>>> res.to_frame().head()                                                                       # doctest: +SKIP
>>> res.summary()["counts"]["total"]                                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from brainviz._io import content_hash
from brainviz.config import ConfigError, JobConfig
from brainviz.errors import HeldOutError
from brainviz.evaluation import stats as _stats
from brainviz.evaluation._backends import DEFAULT_BACKEND, check_backend
from brainviz.evaluation.summaries import curve_points, fig2_curves, significance_counts

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

METRICS = ("twenty-vs-twenty", "pearson", "pove")
ALL_ROWS = "all"


# --------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------


LEVELS = ("auto", "group", "participant")
#: Participant-level tests (samples: blocks of held-out TRs, runs, or initialisations).
PARTICIPANT_TESTS = ("block-sign-flip", "runs-ttest", "paper-initializations")
TESTS = ("auto",) + _stats.GROUP_TESTS + PARTICIPANT_TESTS
DEFAULT_GROUP_TEST = "ttest"
POOLED_GROUP_TEST = "ttest-by-run"  # default when a model was fitted on several participants' data
DEFAULT_PARTICIPANT_TEST = "block-sign-flip"


def _validate_common(cfg: Any) -> None:
    name = type(cfg).__name__
    for field in ("k", "n_samples", "n_permutations"):
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name}.{field} must be a positive integer, got {v!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ConfigError(f"{name}.seed must be a non-negative integer, got {cfg.seed!r}")
    if not (isinstance(cfg.alpha, (int, float)) and 0 < cfg.alpha < 1):
        raise ConfigError(f"{name}.alpha must lie in (0, 1), got {cfg.alpha!r}")
    if cfg.fdr not in _stats.FDR_METHODS:
        raise ConfigError(f"{name}.fdr must be one of {_stats.FDR_METHODS}, got {cfg.fdr!r}")
    if cfg.level not in LEVELS:
        raise ConfigError(f"{name}.level must be one of {LEVELS}, got {cfg.level!r}")
    if cfg.test not in TESTS:
        raise ConfigError(f"{name}.test must be one of {TESTS}, got {cfg.test!r} (seeds are not independent "
                          "samples: group tests use participants, participant tests use blocks of TRs or runs)")
    if cfg.level == "group" and cfg.test in PARTICIPANT_TESTS:
        raise ConfigError(f"{name}.test {cfg.test!r} is a participant-level test; group tests: {_stats.GROUP_TESTS}")
    if cfg.level == "participant" and cfg.test in _stats.GROUP_TESTS:
        raise ConfigError(f"{name}.test {cfg.test!r} is a group-level test; participant tests: {PARTICIPANT_TESTS}")
    if not (isinstance(cfg.block_seconds, (int, float)) and not isinstance(cfg.block_seconds, bool)
            and 0 < cfg.block_seconds < 3600):
        raise ConfigError(f"{name}.block_seconds must be a positive number of seconds, got {cfg.block_seconds!r}")
    b = cfg.block_buffer_seconds
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < cfg.block_seconds / 2:
        raise ConfigError(f"{name}.block_buffer_seconds must be >= 0 and less than half a block "
                          f"({cfg.block_seconds / 2:g} s), got {b!r}")
    if not isinstance(cfg.by_run, bool):
        raise ConfigError(f"{name}.by_run must be true or false, got {cfg.by_run!r}")


def resolve_level(config: Any, n_participants: int) -> str:
    """The level a config tests at for ``n_participants``: explicit, implied by the test name,
    or ``auto`` = group whenever there are at least 2 participants."""
    level = config.level
    if level == "auto":
        if config.test in _stats.GROUP_TESTS:
            level = "group"
        elif config.test in PARTICIPANT_TESTS:
            level = "participant"
        else:
            level = "group" if n_participants >= 2 else "participant"
    if level == "group" and n_participants < 2:
        raise ConfigError(f"group-level tests need at least 2 participants, got {n_participants}; "
                          "use level='participant' (--level participant) or add participants")
    return level


def resolve_tests(config: Any, n_participants: int, pooled_fits: bool = False) -> tuple[str, str, str]:
    """``(level, group test, participant test)`` for a config: the chosen test at its level,
    the default test at the other level (reported as a secondary result).

    ``pooled_fits``: the predictions come from models fitted on several participants' data
    (a shared head / group fit): the default group test is then ``ttest-by-run``
    (:func:`brainviz.evaluation.stats.group_test_by_run`), the run-averaged t-test being
    anti-conservative there."""
    level = resolve_level(config, n_participants)
    group_test = POOLED_GROUP_TEST if pooled_fits else DEFAULT_GROUP_TEST
    participant_test = DEFAULT_PARTICIPANT_TEST
    if config.test in _stats.GROUP_TESTS:
        group_test = config.test
    elif config.test in PARTICIPANT_TESTS:
        participant_test = config.test
    return level, group_test, participant_test


@dataclasses.dataclass(frozen=True)
class CompareConfig(JobConfig):
    """Settings of a two-model comparison.

    Attributes
    ----------
    k : int
        Rows per 20-vs-20 draw.
    n_samples : int
        Draws per (participant, run).
    seed : int
        Seeds the draws (one generator per participant and run, derived from this seed and
        their names, so a subset of participants gets the same draws).
    alpha : float
        FDR level: a unit is *significant* when the q-value of the named test is at most alpha.
    fdr : {"bh", "by", "none"}
        Benjamini-Hochberg (default) or Benjamini-Yekutieli.
    level : {"auto", "group", "participant"}
        ``group``: random effects across participants (the question "does A predict brains
        better than B?"); ``participant``: within each participant, across independent
        held-out data; ``auto`` (default): implied by ``test``, else group whenever there
        are at least 2 participants. Seeds are never samples: they share the held-out data,
        so they are averaged first (their spread is reported as a stability check).
    test : str
        ``auto`` (default: ``ttest`` at the group level, ``block-sign-flip`` at the
        participant level) or one of

        * group: ``ttest`` (one-sample t-test of per-participant differences A - B, i.e. the
          paired t-test across participants), ``sign-flip`` (permutation, exact when
          ``2**n_participants <= n_permutations``);
        * participant: ``block-sign-flip`` (A and B swapped within contiguous blocks of
          ``block_seconds`` of held-out TRs; statistic: the difference of held-out Pearson
          correlations, which is linear in per-TR contributions), ``runs-ttest`` (paired
          t-test across held-out runs of the seed-averaged accuracies; n_runs - 1 degrees of
          freedom), ``paper-initializations`` (the 2019 paper: paired t-test across
          initialisations on one fixed test set; it tests training stability, not whether A
          predicts brains better than B, and fails the calibration suite - never a default).
    n_permutations : int
        Sign flips of the permutation tests (exact enumeration when all flips fit).
    block_seconds : float
        Length of the contiguous blocks of held-out TRs of ``block-sign-flip`` (default 20 s,
        longer than the haemodynamic autocorrelation).
    block_buffer_seconds : float
        Seconds left out at the end of every block (default 4 s), so that neighbouring blocks are
        apart in time: without it, autocorrelation across block edges made the test slightly
        liberal (FDP 0.064 +- 0.005 at q = 0.05 on the calibration data; 0.043 with the buffer).
    by_run : bool
        Draw within each held-out run (the paper) rather than over all held-out rows.
    """

    k: int = 20
    n_samples: int = 1000
    seed: int = 0
    alpha: float = 0.05
    fdr: str = "bh"
    level: str = "auto"
    test: str = "auto"
    n_permutations: int = 10000
    block_seconds: float = 20.0
    block_buffer_seconds: float = 4.0
    by_run: bool = True

    def validate(self) -> None:
        _validate_common(self)

    def draws_key(self) -> str:
        """Key of the settings the accuracies and block effects depend on (not alpha, fdr, test)."""
        return content_hash("draws", self.k, self.n_samples, self.seed, self.by_run, float(self.block_seconds),
                            float(self.block_buffer_seconds))


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(CompareConfig):
    """Settings of a one-model evaluation (see :class:`CompareConfig` for shared fields).

    ``metric``: ``"twenty-vs-twenty"`` (tested against 0.5), ``"pearson"`` or ``"pove"``
    (variance explained; both tested against 0), one-sided. Group level: the per-participant
    score (seeds and runs averaged) against chance across participants; participant level:
    ``block-sign-flip`` (held-out Pearson r against 0 with sign flips of contiguous blocks of
    TRs), ``runs-ttest`` (seed-averaged scores across runs) or ``paper-initializations``.
    """

    metric: str = "twenty-vs-twenty"

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"EvaluateConfig.metric must be one of {METRICS}, got {self.metric!r}")
        _validate_common(self)

    def draws_key(self) -> str:
        """Key of the settings the scores depend on (draw settings only for 20-vs-20)."""
        if self.metric != "twenty-vs-twenty":
            return content_hash("scores", self.metric, self.by_run, float(self.block_seconds),
                                float(self.block_buffer_seconds))
        return content_hash("scores", self.metric, self.k, self.n_samples, self.seed, self.by_run,
                            float(self.block_seconds), float(self.block_buffer_seconds))


def draw_generator(seed: int, participant: str, run: str) -> np.random.Generator:
    """The generator of the draws of one (participant, run): independent of other pairs."""
    words = [int(content_hash(str(participant), length=8), 16), int(content_hash(str(run), length=8), 16)]
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=words))


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


class _TestedResult:
    """What comparisons and evaluations share: the level, the primary test, sample sizes,
    reachability of the FDR level and the explanation of an empty result."""

    participants: list[str]
    runs: dict[str, list[str]]
    tests: dict[str, _stats.TestResult]
    group: _stats.TestResult | None
    level: str
    config: Any
    meta: dict[str, Any]

    @property
    def primary(self) -> dict[str, _stats.TestResult]:
        """The tests that decide *significant*: ``{"group": ...}`` or one per participant."""
        if self.level == "group" and self.group is not None:
            return {"group": self.group}
        return dict(self.tests)

    def unit_labels(self, n_units: int) -> np.ndarray:
        """Unit names (ROI names for ROI-space data) or indices."""
        names = self.meta.get("unit_names")
        if names and len(names) == n_units:
            return np.asarray(names, dtype=object)
        return np.arange(n_units)

    def unit_columns(self, n_units: int) -> dict[str, np.ndarray]:
        """``unit`` (ROI name or index) and, for named units, ``unit_index``."""
        labels = self.unit_labels(n_units)
        if labels.dtype == object:
            return {"unit": labels, "unit_index": np.arange(n_units)}
        return {"unit": labels}

    def sample_sizes(self) -> dict[str, Any]:
        seeds = self.meta.get("n_seeds") or {}
        return {"n_participants": len(self.participants),
                "n_runs": {p: len(self.runs[p]) for p in self.participants},
                "n_seeds": seeds,
                "n_rows": self.meta.get("n_rows", {})}

    def test_description(self) -> dict[str, Any]:
        """Level, tests and their settings (JSON-able), for every export and figure caption."""
        out: dict[str, Any] = {"level": self.level, "alpha": self.config.alpha, "fdr": self.config.fdr}
        prim = self.primary
        first = next(iter(prim.values()), None)
        out["test"] = first.test if first else None
        out["alternative"] = first.alternative if first else None
        if self.group is not None:
            out["group_test"] = self.group.summary()
        if self.tests:
            t0 = next(iter(self.tests.values()))
            out["participant_test"] = t0.test
            if "block" in t0.test:
                out["block_seconds"] = self.config.block_seconds
                out["block_buffer_seconds"] = self.config.block_buffer_seconds
                out["block_trs"] = self.meta.get("block_trs")
                out["buffer_trs"] = self.meta.get("buffer_trs")
        return out

    def _tests_to_arrays(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for i, pid in enumerate(self.participants):
            _test_to_arrays(out, f"p{i}.test", self.tests[pid])
        if self.group is not None:
            _test_to_arrays(out, "group.test", self.group)
        return out

    @staticmethod
    def _tests_from_arrays(arrays: Mapping[str, np.ndarray], participants: Sequence[str]):
        """``(tests, group)`` stored by :meth:`_tests_to_arrays`."""
        tests = {pid: _test_from_arrays(arrays, f"p{i}.test") for i, pid in enumerate(participants)}
        group = _test_from_arrays(arrays, "group.test") if "group.test.p" in arrays else None
        return tests, group

    def explanation(self) -> str | None:
        """Why nothing is significant (None when something is)."""
        prim = self.primary
        if not prim or any(r.n_significant for r in prim.values()):
            return None
        return explain_empty(prim, self.level, self.sample_sizes())


def explain_empty(tests: Mapping[str, _stats.TestResult], level: str, sizes: Mapping[str, Any]) -> str:
    """A plain-language account of an empty result: what was tested with what n, the smallest
    p and q reached and reachable, and what would add power."""
    parts = []
    for who, res in tests.items():
        r = res.reachability()
        min_p = "n/a" if r["min_p"] is None else f"{r['min_p']:.3g}"
        min_q = "n/a" if r["min_q"] is None else f"{r['min_q']:.3g}"
        line = (f"{who}: {res.test} ({res.fdr.upper()} FDR at q <= {res.alpha:g}) over {res.n_tested} units with "
                f"n = {res.n_samples}; smallest p {min_p}, smallest q {min_q}")
        if r["min_achievable_p"] > 0:
            need = r["min_discoveries_needed"]
            line += (f"; this test cannot go below p = {r['min_achievable_p']:.3g}, so "
                     + (f"at least {need} units must reach it together to pass" if need else
                        "no unit can pass even if all reach it"))
        parts.append(line)
    n_part = sizes.get("n_participants", 0)
    if level == "group":
        advice = (f"More participants add the most power at the group level (now {n_part}); "
                  "more held-out data per participant lowers each participant's noise.")
    else:
        advice = ("More held-out data (runs, TRs) adds power at the participant level; with several "
                  "participants, the group level tests across them.")
    return "No unit is significant. " + " | ".join(parts[:3]) + (" | ..." if len(parts) > 3 else "") + ". " + advice


@dataclasses.dataclass
class ComparisonResult(_TestedResult):
    """Per-unit comparison of models A and B.

    Attributes
    ----------
    config : CompareConfig
    participants : list of str
    acc_a, acc_b : dict participant -> float array (n_seeds, n_runs, n_units)
        20-vs-20 accuracy per seed, held-out run and unit (NaN for non-finite units).
    runs : dict participant -> list of str
        Run labels of axis 1 (``["all"]`` when ``by_run`` is False).
    tests : dict participant -> :class:`~brainviz.evaluation.stats.TestResult`
        Participant-level test (FDR within participant).
    meta : dict
        Model names, backend, row counts, seeds, ``from_cache``.
    blocks : dict participant -> float array (n_blocks, n_units)
        Per-block contributions to the held-out correlation difference r_A - r_B (seeds
        averaged) used by ``block-sign-flip``.
    group : TestResult or None
        Random-effects test across participants (None with one participant).
    level : str
        ``group`` or ``participant``: which tests decide *significant*.
    """

    config: CompareConfig
    participants: list[str]
    acc_a: dict[str, np.ndarray]
    acc_b: dict[str, np.ndarray]
    runs: dict[str, list[str]]
    tests: dict[str, _stats.TestResult]
    meta: dict[str, Any]
    blocks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    group: _stats.TestResult | None = None
    level: str = "participant"

    def mean_accuracy(self, participant: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean accuracy of A and B over seeds and runs, per unit."""
        a = self.acc_a[participant]
        b = self.acc_b[participant]
        return a.reshape(-1, a.shape[-1]).mean(axis=0), b.reshape(-1, b.shape[-1]).mean(axis=0)

    def participant_differences(self) -> np.ndarray:
        """``(n_participants, n_units)`` accuracy differences A - B, seeds and runs averaged."""
        return np.stack([np.subtract(*self.mean_accuracy(p)) for p in self.participants])

    def to_frame(self):
        """Tidy table of the primary level.

        Group level: one row per unit with ``unit, acc_a, acc_b, diff, se, effect, t, p, q,
        significant, n_participants, test, level`` (means over participants; ``se`` the
        standard error of the difference across participants). Participant level: one row
        per (participant, unit) with ``participant, unit, acc_a, acc_b, diff, effect, t, p,
        q, significant, test, level``. ``diff`` is the 20-vs-20 accuracy difference,
        ``effect`` the tested effect (the same for group tests; the held-out correlation
        difference for ``block-sign-flip``); ``significant`` is ``q <= alpha`` of the test
        named in ``test`` and nothing else.
        """
        import pandas as pd

        if self.level == "group" and self.group is not None:
            d = self.participant_differences()
            a = np.stack([self.mean_accuracy(p)[0] for p in self.participants])
            b = np.stack([self.mean_accuracy(p)[1] for p in self.participants])
            res = self.group
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                se = _se_across(d)
                return pd.DataFrame({
                    **self.unit_columns(d.shape[1]), "acc_a": np.nanmean(a, axis=0),
                    "acc_b": np.nanmean(b, axis=0), "diff": np.nanmean(d, axis=0), "se": se, "effect": res.effect,
                    "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
                    "n_participants": len(self.participants), "test": res.test, "level": "group",
                })
        frames = []
        for pid in self.participants:
            a, b = self.mean_accuracy(pid)
            res = self.tests[pid]
            frames.append(pd.DataFrame({
                "participant": pid, **self.unit_columns(a.size), "acc_a": a, "acc_b": b, "diff": a - b,
                "effect": res.effect, "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
                "test": res.test, "level": "participant",
            }))
        if not frames:
            return pd.DataFrame(columns=["participant", "unit", "acc_a", "acc_b", "diff", "effect", "t", "p", "q",
                                         "significant", "test", "level"])
        return pd.concat(frames, ignore_index=True)

    def fig2(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Full Fig. 2 curves per participant and averaged (see :func:`~brainviz.evaluation.summaries.fig2_curves`)."""
        means = {pid: self.mean_accuracy(pid) for pid in self.participants}
        return fig2_curves({p: m[0] for p, m in means.items()}, {p: m[1] for p, m in means.items()})

    def seed_stability(self) -> dict[str, Any]:
        """Seed-to-seed variability (a training-stability check, never a test sample): per
        participant, the number of seeds and the median over units of the across-seed s.d.
        of the run-averaged accuracy of A and of B."""
        out = {}
        for pid in self.participants:
            entry = {}
            for key, acc in (("a", self.acc_a[pid]), ("b", self.acc_b[pid])):
                per_seed = acc.mean(axis=1)
                entry[f"n_seeds_{key}"] = int(acc.shape[0])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    entry[f"seed_sd_{key}"] = _num(np.nanmedian(per_seed.std(axis=0, ddof=1))) if acc.shape[0] > 1 else None
            out[pid] = entry
        return out

    def summary(self, n_points: int = 200) -> dict[str, Any]:
        """JSON-able summary: config, level and tests, sample sizes, counts, mean accuracies,
        seed stability, Fig. 2 curves, and an explanation when nothing is significant."""
        counts = {}
        means = {}
        total = {"n_units": 0, "n_tested": 0, "n_significant": 0, "n_a_better": 0, "n_b_better": 0}
        for pid in self.participants:
            a, b = self.mean_accuracy(pid)
            res = self.tests[pid]
            c = significance_counts(a - b, res.significant, res.p)
            counts[pid] = c
            for key in total:
                total[key] += c[key]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means[pid] = {"acc_a": _num(np.nanmean(a)), "acc_b": _num(np.nanmean(b)),
                              "diff": _num(np.nanmean(a - b))}
        counts["total"] = total
        if self.group is not None:
            d = self.participant_differences()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                counts["group"] = significance_counts(np.nanmean(d, axis=0), self.group.significant, self.group.p)
        curves, average = self.fig2()
        desc = self.test_description()
        return {
            "kind": "compare",
            "config": self.config.to_dict(),
            **desc,
            "participants": list(self.participants),
            "runs": {p: list(self.runs[p]) for p in self.participants},
            "sample_sizes": self.sample_sizes(),
            "n_samples": {p: self.tests[p].n_samples for p in self.participants},
            "counts": counts,
            "reachability": {who: r.reachability() for who, r in self.primary.items()},
            "explanation": self.explanation(),
            "mean_accuracy": means,
            "seed_stability": self.seed_stability(),
            "fig2": {"participants": {p: curve_points(c, n_points) for p, c in curves.items()},
                     "average": curve_points(average, n_points)},
            "meta": _jsonable(self.meta),
        }

    # -- (de)serialisation for the cache ------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return self._tests_to_arrays(_acc_arrays(
            self.participants, self.runs, {"a": self.acc_a, "b": self.acc_b, "blk": self.blocks},
            {**self.meta, "level": self.level}))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: CompareConfig) -> "ComparisonResult":
        participants, runs, accs, meta = _acc_from_arrays(arrays, ("a", "b", "blk"))
        tests, group = cls._tests_from_arrays(arrays, participants)
        level = meta.pop("level", "participant")
        return cls(config, participants, accs["a"], accs["b"], runs, tests, meta, accs["blk"], group, level)


@dataclasses.dataclass
class EvaluationResult(_TestedResult):
    """Per-unit evaluation of one model.

    Attributes
    ----------
    config : EvaluateConfig
    participants : list of str
    scores : dict participant -> float array (n_seeds, n_runs, n_units)
        20-vs-20 accuracy, Pearson r or variance explained per seed, run and unit.
    runs : dict participant -> list of str
    tests : dict participant -> TestResult
        Participant-level one-sided test against chance, FDR within participant.
    meta : dict
    blocks : dict participant -> float array (n_blocks, n_units)
        Per-block contributions to the held-out Pearson r (seeds averaged).
    group : TestResult or None
        One-sided random-effects test of the per-participant scores against chance.
    level : str
    """

    config: EvaluateConfig
    participants: list[str]
    scores: dict[str, np.ndarray]
    runs: dict[str, list[str]]
    tests: dict[str, _stats.TestResult]
    meta: dict[str, Any]
    blocks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    group: _stats.TestResult | None = None
    level: str = "participant"

    def mean_score(self, participant: str) -> np.ndarray:
        s = self.scores[participant]
        return s.reshape(-1, s.shape[-1]).mean(axis=0)

    def to_frame(self):
        """Tidy table of the primary level: group ``unit, metric, score, se, effect, t, p, q,
        significant, n_participants, test, level``; participant ``participant, unit, metric,
        score, effect, t, p, q, significant, test, level``."""
        import pandas as pd

        if self.level == "group" and self.group is not None:
            s = np.stack([self.mean_score(p) for p in self.participants])
            res = self.group
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                se = _se_across(s)
                return pd.DataFrame({
                    **self.unit_columns(s.shape[1]), "metric": self.config.metric,
                    "score": np.nanmean(s, axis=0), "se": se, "effect": res.effect, "t": res.statistic,
                    "p": res.p, "q": res.q, "significant": res.significant,
                    "n_participants": len(self.participants), "test": res.test, "level": "group",
                })
        cols = ["participant", "unit", "metric", "score", "effect", "t", "p", "q", "significant", "test", "level"]
        frames = []
        for pid in self.participants:
            s = self.mean_score(pid)
            res = self.tests[pid]
            frames.append(pd.DataFrame({
                "participant": pid, **self.unit_columns(s.size), "metric": self.config.metric, "score": s,
                "effect": res.effect, "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
                "test": res.test, "level": "participant",
            }))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    def summary(self) -> dict[str, Any]:
        counts, means = {}, {}
        for pid in self.participants:
            res = self.tests[pid]
            counts[pid] = res.counts()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means[pid] = _num(np.nanmean(self.mean_score(pid)))
        if self.group is not None:
            counts["group"] = self.group.counts()
        return {
            "kind": "evaluate",
            "metric": self.config.metric,
            "config": self.config.to_dict(),
            **self.test_description(),
            "chance": _chance(self.config.metric),
            "participants": list(self.participants),
            "runs": {p: list(self.runs[p]) for p in self.participants},
            "sample_sizes": self.sample_sizes(),
            "counts": counts,
            "reachability": {who: r.reachability() for who, r in self.primary.items()},
            "explanation": self.explanation(),
            "mean_score": means,
            "meta": _jsonable(self.meta),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        return self._tests_to_arrays(_acc_arrays(self.participants, self.runs, {"s": self.scores, "blk": self.blocks},
                                                 {**self.meta, "level": self.level}))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: EvaluateConfig) -> "EvaluationResult":
        participants, runs, accs, meta = _acc_from_arrays(arrays, ("s", "blk"))
        tests, group = cls._tests_from_arrays(arrays, participants)
        level = meta.pop("level", "participant")
        return cls(config, participants, accs["s"], runs, tests, meta, accs["blk"], group, level)


# --------------------------------------------------------------------------------------
# computing
# --------------------------------------------------------------------------------------


def paired_accuracies(
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    targets: np.ndarray,
    runs: np.ndarray,
    config: CompareConfig,
    participant: str,
    backend: str = DEFAULT_BACKEND,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """20-vs-20 accuracies of A and B on the same draws for one participant.

    Returns ``acc_a (n_seeds_a, n_runs, n_units)``, ``acc_b (n_seeds_b, n_runs, n_units)`` and
    the run labels.
    """
    from brainviz.evaluation.twenty import draw_indices, twenty_vs_twenty

    pa, pb, targ, groups = _prepare(preds_a, targets, runs, config.by_run, participant, preds_b)
    sa = pa.shape[0]
    out_a, out_b = [], []
    for label, rows in groups:
        idx = draw_indices(len(rows), k=config.k, n_samples=config.n_samples,
                           rng=draw_generator(config.seed, participant, label))
        both = np.concatenate([pa[:, rows], pb[:, rows]])
        acc = twenty_vs_twenty(both, targ[rows], indices=idx, backend=backend)
        out_a.append(acc[:sa])
        out_b.append(acc[sa:])
    return np.stack(out_a, axis=1), np.stack(out_b, axis=1), [g[0] for g in groups]


def model_scores(
    preds: np.ndarray, targets: np.ndarray, runs: np.ndarray, config: EvaluateConfig, participant: str,
    backend: str = DEFAULT_BACKEND,
) -> tuple[np.ndarray, list[str]]:
    """Scores ``(n_seeds, n_runs, n_units)`` of one model for one participant, and run labels."""
    from brainviz.evaluation.encoding import pearson_r, variance_explained
    from brainviz.evaluation.twenty import draw_indices, twenty_vs_twenty

    p, _, targ, groups = _prepare(preds, targets, runs, config.by_run, participant)
    out = []
    for label, rows in groups:
        if config.metric == "twenty-vs-twenty":
            idx = draw_indices(len(rows), k=config.k, n_samples=config.n_samples,
                               rng=draw_generator(config.seed, participant, label))
            out.append(twenty_vs_twenty(p[:, rows], targ[rows], indices=idx, backend=backend))
        elif config.metric == "pearson":
            out.append(pearson_r(p[:, rows], targ[rows], axis=-2))
        else:
            out.append(variance_explained(p[:, rows], targ[rows], axis=-2))
    return np.stack(out, axis=1), [g[0] for g in groups]


def block_trs(block_seconds: float, tr: float, buffer_seconds: float = 0.0) -> tuple[int, int]:
    """Rows per block and buffer rows per block at repetition time ``tr`` (a block keeps at
    least 2 rows)."""
    if not (tr and np.isfinite(tr) and tr > 0):
        raise ConfigError(f"repetition time must be a positive number of seconds, got {tr!r}")
    n = max(2, int(round(float(block_seconds) / float(tr))))
    return n, min(int(round(float(buffer_seconds) / float(tr))), n - 2)


def block_effects(
    preds: np.ndarray,
    targets: np.ndarray,
    runs: np.ndarray,
    n_block: int,
    *,
    preds_b: np.ndarray | None = None,
    tr_index: np.ndarray | None = None,
    buffer: int = 0,
) -> np.ndarray:
    """Per-block contributions to the held-out Pearson correlation (difference), seeds averaged.

    Within every held-out run, targets and each seed's predictions are z-scored over the run's
    rows; the contribution of row ``t`` is ``z_y[t] * mean_s z_pred[s, t] / n_run`` (for a
    comparison ``z_y[t] * (mean_s z_a - mean_s z_b)[t] / n_run``), so the contributions of a run
    sum to its seed-averaged r (or r_A - r_B). Rows are cut into contiguous blocks of
    ``n_block`` rows (also at gaps in ``tr_index``); a remainder shorter than half a block joins
    the block before it. The last ``buffer`` rows of every block are left out, so neighbouring
    blocks are ``buffer`` TRs apart (less dependence between blocks).

    Returns
    -------
    float array (n_blocks, n_units)
    """
    p = np.asarray(preds)
    p = p[None] if p.ndim == 2 else p
    pb = None if preds_b is None else np.asarray(preds_b)
    if pb is not None and pb.ndim == 2:
        pb = pb[None]
    y = np.asarray(targets)
    r = np.asarray(runs).astype(str)
    out = []
    for label in dict.fromkeys(r.tolist()):
        rows = np.flatnonzero(r == label)
        if rows.size < 2:
            continue
        zy = _zscore(y[rows])
        zp = np.mean([_zscore(p[s, rows]) for s in range(p.shape[0])], axis=0)
        if pb is not None:
            zp = zp - np.mean([_zscore(pb[s, rows]) for s in range(pb.shape[0])], axis=0)
        contrib = zy * zp / rows.size
        for seg in _blocks(rows.size, n_block, None if tr_index is None else np.asarray(tr_index)[rows]):
            stop = max(seg.start + 1, seg.stop - buffer) if buffer else seg.stop
            out.append(contrib[seg.start:stop].sum(axis=0))
    if not out:
        return np.zeros((0, y.shape[1]))
    return np.stack(out)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    sd = x.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, x / np.where(sd > 0, sd, 1.0), 0.0)


def _blocks(n_rows: int, n_block: int, tr_index: np.ndarray | None) -> list[slice]:
    """Contiguous blocks of ``n_block`` positions, split at gaps of ``tr_index``."""
    cuts = [0]
    if tr_index is not None and n_rows > 1:
        gaps = np.flatnonzero(np.diff(tr_index) != 1) + 1
        cuts += gaps.tolist()
    cuts.append(n_rows)
    out: list[slice] = []
    for s0, s1 in zip(cuts[:-1], cuts[1:]):
        starts = list(range(s0, s1, n_block))
        segs = [slice(b, min(b + n_block, s1)) for b in starts]
        if len(segs) > 1 and (segs[-1].stop - segs[-1].start) < n_block / 2:
            last = segs.pop()
            segs[-1] = slice(segs[-1].start, last.stop)
        out.extend(segs)
    return out


def _participant_test(
    test: str, pid: str, config: Any, *, a: np.ndarray, b: np.ndarray | None, blocks: np.ndarray | None,
    chance: float = 0.0, primary: bool = True,
) -> _stats.TestResult:
    """One participant's test. ``a``/``b``: scores (n_seeds, n_runs, n_units) (``b`` None for
    an evaluation against ``chance``, one-sided)."""
    alternative = "two-sided" if b is not None else "greater"
    kw = {"alpha": config.alpha, "fdr": config.fdr}
    if test == "block-sign-flip":
        if blocks is None or np.asarray(blocks).shape[0] < 2:
            if primary:
                raise ConfigError(f"participant {pid!r}: block-sign-flip needs the held-out predictions cut into at "
                                 "least 2 blocks; use test='runs-ttest' or shorter block_seconds")
            return _participant_test("runs-ttest", pid, config, a=a, b=b, blocks=None, chance=chance, primary=False)
        blk = np.asarray(blocks, dtype=np.float64)
        res = _stats.block_sign_flip_test(blk, n_permutations=config.n_permutations, alternative=alternative,
                                          rng=draw_generator(config.seed, pid, "sign-flips"),
                                          name="block-sign-flip[pearson]", **kw)
        n_runs = max(a.shape[1], 1)
        return dataclasses.replace(res, effect=blk.sum(axis=0) / n_runs)
    if test == "runs-ttest":
        xa = a.mean(axis=0)
        xb = b.mean(axis=0) if b is not None else np.full_like(xa, chance)
        if xa.shape[0] < 2 and primary:
            raise ConfigError(f"participant {pid!r}: runs-ttest needs at least 2 held-out runs (got {xa.shape[0]}); "
                             "use test='block-sign-flip'")
        res = _stats.paired_test(xa, xb, method="ttest", alternative=alternative, **kw)
        return dataclasses.replace(res, test="runs-ttest")
    if test == "paper-initializations":
        xa = a.mean(axis=1)
        if b is not None and b.shape[0] != a.shape[0]:
            raise ConfigError(f"participant {pid!r}: paper-initializations pairs seeds; A has {a.shape[0]}, "
                             f"B {b.shape[0]}")
        xb = b.mean(axis=1) if b is not None else np.full_like(xa, chance)
        if xa.shape[0] < 2:
            raise ConfigError(f"participant {pid!r}: paper-initializations needs at least 2 seeds (got {xa.shape[0]})")
        res = _stats.paired_test(xa, xb, method="ttest", alternative=alternative, **kw)
        return dataclasses.replace(res, test="paper-initializations")
    raise ConfigError(f"unknown participant-level test {test!r}; choose one of {PARTICIPANT_TESTS}")


def comparison_from_accuracies(
    acc_a: Mapping[str, np.ndarray],
    acc_b: Mapping[str, np.ndarray],
    runs: Mapping[str, Sequence[str]],
    config: CompareConfig,
    meta: dict[str, Any] | None = None,
    blocks: Mapping[str, np.ndarray] | None = None,
) -> ComparisonResult:
    """Run the tests on precomputed accuracies (and block effects).

    Seeds are averaged before any test. The group test (random effects across participants)
    runs whenever there are at least 2 participants, the participant-level test always; the
    config's level decides which one is *primary* (decides ``significant`` in tables/maps).
    """
    meta = dict(meta or {})
    blocks = dict(blocks or {})
    pids = list(acc_a)
    level, gtest, ptest = resolve_tests(config, len(pids), bool(meta.get("pooled_fits")))
    tests = {}
    for pid in pids:
        a, b = np.asarray(acc_a[pid]), np.asarray(acc_b[pid])
        tests[pid] = _participant_test(ptest, pid, config, a=a, b=b, blocks=blocks.get(pid),
                                       primary=level == "participant")
    group = None
    if len(pids) >= 2:
        per_run = [np.asarray(acc_a[p]).mean(axis=0) - np.asarray(acc_b[p]).mean(axis=0) for p in pids]
        group = _group(gtest, per_run, config, "two-sided", meta)
    meta["n_seeds"] = {p: [int(np.asarray(acc_a[p]).shape[0]), int(np.asarray(acc_b[p]).shape[0])] for p in pids}
    meta["seeds_averaged"] = True
    return ComparisonResult(config, pids, dict(acc_a), dict(acc_b), {p: list(r) for p, r in runs.items()}, tests,
                            meta, blocks, group, level)


def _group(test: str, per_run: list[np.ndarray], config: Any, alternative: str, meta: dict) -> _stats.TestResult:
    """The group test on per-participant effects ``(n_runs, n_units)`` (seeds averaged)."""
    if test == "ttest-by-run":
        if len({e.shape for e in per_run}) == 1:
            return _stats.group_test_by_run(np.stack(per_run), alternative=alternative, alpha=config.alpha,
                                            fdr=config.fdr)
        meta["group_test_note"] = ("participants have different held-out runs, so the per-run group test could not "
                                   "run; the run-averaged t-test was used (anti-conservative for pooled fits)")
        test = "ttest"
    d = np.stack([e.mean(axis=0) for e in per_run])
    return _stats.group_test(d, method=test, alternative=alternative, alpha=config.alpha, fdr=config.fdr,
                             n_permutations=config.n_permutations, rng=draw_generator(config.seed, "group", "sign-flips"))


def evaluation_from_scores(
    scores: Mapping[str, np.ndarray], runs: Mapping[str, Sequence[str]], config: EvaluateConfig,
    meta: dict[str, Any] | None = None, blocks: Mapping[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """One-sided tests against chance on precomputed scores (see :func:`comparison_from_accuracies`)."""
    meta = dict(meta or {})
    blocks = dict(blocks or {})
    pids = list(scores)
    level, gtest, ptest = resolve_tests(config, len(pids), bool(meta.get("pooled_fits")))
    chance = _chance(config.metric)
    tests = {pid: _participant_test(ptest, pid, config, a=np.asarray(scores[pid]), b=None, blocks=blocks.get(pid),
                                    chance=chance, primary=level == "participant") for pid in pids}
    group = None
    if len(pids) >= 2:
        group = _group(gtest, [np.asarray(scores[p]).mean(axis=0) - chance for p in pids], config, "greater", meta)
    meta["n_seeds"] = {p: int(np.asarray(scores[p]).shape[0]) for p in pids}
    meta["seeds_averaged"] = True
    return EvaluationResult(config, pids, dict(scores), {p: list(r) for p, r in runs.items()}, tests, meta,
                            blocks, group, level)


def compare_predictions(
    preds_a: Mapping[str, np.ndarray],
    preds_b: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    runs: Mapping[str, np.ndarray],
    config: CompareConfig | None = None,
    *,
    backend: str = DEFAULT_BACKEND,
    cache: Any = True,
    input_key: str | None = None,
    names: tuple[str, str] = ("A", "B"),
    tr: float = 2.0,
    tr_index: Mapping[str, np.ndarray] | None = None,
) -> ComparisonResult:
    """Compare models A and B unit by unit for every participant.

    Parameters
    ----------
    preds_a, preds_b : dict participant -> float array (n_seeds, n_rows, n_units)
        Held-out predictions (a 2-D array counts as one seed). Seeds are paired by position.
    targets : dict participant -> float array (n_rows, n_units)
    runs : dict participant -> array (n_rows,)
        Held-out run label of every row.
    config : CompareConfig
    backend : {"numba", "numpy", "torch"}
        20-vs-20 backend (all give identical accuracies).
    cache : bool or :class:`brainviz.cache.Cache`
        ``True``: the default cache folder; ``False``: no caching.
    input_key : str, optional
        Content key of the inputs when the caller already has one (e.g. from file hashes);
        otherwise the arrays are hashed (in parallel chunks, several GB/s).
    names : (str, str)
        Labels of the models, stored in ``meta``.
    tr : float
        Repetition time in seconds (turns ``config.block_seconds`` into rows per block).
    tr_index : dict participant -> int array (n_rows,), optional
        Position of every row in the recording; blocks never span a gap. Without it, rows of
        a run are taken as consecutive TRs.

    Returns
    -------
    ComparisonResult
    """
    config = config or CompareConfig()
    check_backend(backend)
    pids = list(preds_a)
    for what, d in (("preds_b", preds_b), ("targets", targets), ("runs", runs)):
        missing = [p for p in pids if p not in d]
        if missing:
            raise HeldOutError(f"{what}: no entry for participant(s) {missing}")
    if input_key is None:
        input_key = arrays_key([[p, preds_a[p], preds_b[p], targets[p], np.asarray(runs[p]).astype(str)] for p in pids])

    n_block, n_buffer = block_trs(config.block_seconds, tr, config.block_buffer_seconds)
    tr_index = tr_index or {}

    def compute_acc() -> dict[str, np.ndarray]:
        acc_a, acc_b, labels, blocks = {}, {}, {}, {}
        for pid in pids:
            acc_a[pid], acc_b[pid], labels[pid] = paired_accuracies(
                preds_a[pid], preds_b[pid], targets[pid], runs[pid], config, pid, backend)
            blocks[pid] = block_effects(preds_a[pid], targets[pid], runs[pid], n_block, preds_b=preds_b[pid],
                                        tr_index=tr_index.get(pid), buffer=n_buffer)
        return _acc_arrays(pids, labels, {"a": acc_a, "b": acc_b, "blk": blocks}, {})

    meta = {"models": {"a": names[0], "b": names[1]}, "backend": backend, "input_key": input_key,
            "n_rows": {p: int(np.asarray(targets[p]).shape[0]) for p in pids}, "tr": float(tr),
            "block_trs": n_block, "buffer_trs": n_buffer}
    return _cached_comparison(_as_cache(cache), content_hash(input_key, n_block, n_buffer), config, compute_acc, meta)


def compare_models(
    model_a: str | os.PathLike,
    model_b: str | os.PathLike,
    config: CompareConfig | None = None,
    *,
    participants: Sequence[str] | None = None,
    targets: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    backend: str = DEFAULT_BACKEND,
    cache: Any = True,
    preprocess: Mapping[str, Any] | None = None,
) -> ComparisonResult:
    """Compare two checkpoints (or prediction folders) on their held-out predictions.

    Participants default to those both models have. Rows are the held-out TRs both models
    predicted (``tr_index``); targets come from ``targets`` (an ``.npz`` file, see
    :func:`brainviz.evaluation.io.load_targets_file`) or from the dataset named in model A's
    card (or ``dataset``), preprocessed with A's ``preprocess`` config updated by ``preprocess``
    (fields of :class:`brainviz.data.PreprocessConfig`). The cache key is built from memoised
    file hashes, so a repeated request reads no prediction file.
    """
    from brainviz.evaluation import io

    config = config or CompareConfig()
    check_backend(backend)
    scan_a, scan_b = io.scan_heldout(model_a), io.scan_heldout(model_b)
    scan_a["preprocess_overrides"] = dict(preprocess or {})
    if participants is None:
        pids = [p for p in scan_a["participants"] if p in set(scan_b["participants"])]
        if not pids:
            raise io.HeldOutError(f"{scan_a['path']} and {scan_b['path']} share no participant")
    else:
        pids = io.select_participants(scan_a, participants)
        io.select_participants(scan_b, participants)
    input_key = content_hash(
        "compare-models", io.heldout_key(scan_a, pids), io.heldout_key(scan_b, pids),
        io.targets_key(scan_a, pids, targets_file=targets, dataset=dataset),
    )
    _warn_if_targets_differ(scan_a, scan_b)
    names = (_model_name(scan_a), _model_name(scan_b))
    tr, unit_names, tr_note = _recording_info(scan_a, pids, dataset, targets)
    n_block, n_buffer = block_trs(config.block_seconds, tr, config.block_buffer_seconds)
    meta = {"models": {"a": names[0], "b": names[1]}, "paths": {"a": str(scan_a["path"]), "b": str(scan_b["path"])},
            "simulated": io.card_simulated(scan_a) or io.card_simulated(scan_b),
            "backend": backend, "input_key": input_key, "tr": tr, "block_trs": n_block, "buffer_trs": n_buffer,
            "pooled_fits": io.pooled_fits(scan_a) or io.pooled_fits(scan_b), **tr_note}

    def compute_acc() -> dict[str, np.ndarray]:
        ha = io.load_heldout(scan_a["path"], pids)
        hb = io.load_heldout(scan_b["path"], pids)
        tg = io.load_targets(scan_a, pids, targets_file=targets, dataset=dataset)
        acc_a, acc_b, labels, n_rows, blocks, names_out = {}, {}, {}, {}, {}, {}
        for pid in pids:
            ia, ib, tr = _common_rows(ha["tr_index"][pid], hb["tr_index"][pid], pid)
            runs = ha["runs"][pid][ia]
            if not np.array_equal(runs, hb["runs"][pid][ib]):
                raise io.HeldOutError(f"participant {pid!r}: models A and B label the same TRs with different runs")
            if not io.same_units(ha["units"][pid], hb["units"][pid]):
                raise io.HeldOutError(f"participant {pid!r}: models A and B predict different units (ROI masks differ)")
            data, t_index = tg[pid]
            rows = io.align_rows(t_index, tr, f"participant {pid!r}")
            target = io.target_columns(np.asarray(data)[rows], ha["units"][pid], f"participant {pid!r}")
            pa, pb = ha["predictions"][pid][:, ia], hb["predictions"][pid][:, ib]
            acc_a[pid], acc_b[pid], labels[pid] = paired_accuracies(pa, pb, target, runs, config, pid, backend)
            blocks[pid] = block_effects(pa, target, runs, n_block, preds_b=pb, tr_index=tr, buffer=n_buffer)
            n_rows[pid] = int(len(tr))
            names_out[pid] = _unit_names(unit_names, ha["units"][pid])
        extra = {"n_rows": n_rows, **_shared_unit_names(names_out, pids)}
        return _acc_arrays(pids, labels, {"a": acc_a, "b": acc_b, "blk": blocks}, extra)

    return _cached_comparison(_as_cache(cache), content_hash(input_key, n_block, n_buffer), config, compute_acc, meta)


def evaluate_predictions(
    predictions: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    runs: Mapping[str, np.ndarray],
    config: EvaluateConfig | None = None,
    *,
    backend: str = DEFAULT_BACKEND,
    cache: Any = True,
    input_key: str | None = None,
    name: str = "model",
    tr: float = 2.0,
    tr_index: Mapping[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """Evaluate one model unit by unit for every participant (see :class:`EvaluateConfig`).

    Parameters are as in :func:`compare_predictions` for one model.
    """
    config = config or EvaluateConfig()
    check_backend(backend)
    pids = list(predictions)
    for what, d in (("targets", targets), ("runs", runs)):
        missing = [p for p in pids if p not in d]
        if missing:
            raise HeldOutError(f"{what}: no entry for participant(s) {missing}")
    if input_key is None:
        input_key = arrays_key([[p, predictions[p], targets[p], np.asarray(runs[p]).astype(str)] for p in pids])

    n_block, n_buffer = block_trs(config.block_seconds, tr, config.block_buffer_seconds)
    tr_index = tr_index or {}

    def compute() -> dict[str, np.ndarray]:
        scores, labels, blocks = {}, {}, {}
        for pid in pids:
            scores[pid], labels[pid] = model_scores(predictions[pid], targets[pid], runs[pid], config, pid, backend)
            blocks[pid] = block_effects(predictions[pid], targets[pid], runs[pid], n_block,
                                        tr_index=tr_index.get(pid), buffer=n_buffer)
        return _acc_arrays(pids, labels, {"s": scores, "blk": blocks}, {})

    meta = {"model": name, "backend": backend, "input_key": input_key,
            "n_rows": {p: int(np.asarray(targets[p]).shape[0]) for p in pids}, "tr": float(tr),
            "block_trs": n_block, "buffer_trs": n_buffer}
    return _cached_evaluation(_as_cache(cache), content_hash(input_key, n_block, n_buffer), config, compute, meta)


def evaluate_model(
    model: str | os.PathLike,
    config: EvaluateConfig | None = None,
    *,
    participants: Sequence[str] | None = None,
    targets: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    backend: str = DEFAULT_BACKEND,
    cache: Any = True,
    preprocess: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate one checkpoint (or prediction folder) on its held-out predictions (targets
    preprocessed with the card's config updated by ``preprocess``)."""
    from brainviz.evaluation import io

    config = config or EvaluateConfig()
    check_backend(backend)
    scan = io.scan_heldout(model)
    scan["preprocess_overrides"] = dict(preprocess or {})
    pids = io.select_participants(scan, participants)
    input_key = content_hash("evaluate-model", io.heldout_key(scan, pids),
                             io.targets_key(scan, pids, targets_file=targets, dataset=dataset))
    tr, unit_names, tr_note = _recording_info(scan, pids, dataset, targets)
    n_block, n_buffer = block_trs(config.block_seconds, tr, config.block_buffer_seconds)
    meta = {"model": _model_name(scan), "path": str(scan["path"]), "backend": backend, "input_key": input_key,
            "simulated": io.card_simulated(scan), "tr": tr, "block_trs": n_block, "buffer_trs": n_buffer,
            "pooled_fits": io.pooled_fits(scan), **tr_note}

    def compute() -> dict[str, np.ndarray]:
        held = io.load_heldout(scan["path"], pids)
        tg = io.load_targets(scan, pids, targets_file=targets, dataset=dataset)
        scores, labels, n_rows, blocks, names_out = {}, {}, {}, {}, {}
        for pid in pids:
            data, t_index = tg[pid]
            rows = io.align_rows(t_index, held["tr_index"][pid], f"participant {pid!r}")
            target = io.target_columns(np.asarray(data)[rows], held["units"][pid], f"participant {pid!r}")
            scores[pid], labels[pid] = model_scores(held["predictions"][pid], target,
                                                    held["runs"][pid], config, pid, backend)
            blocks[pid] = block_effects(held["predictions"][pid], target, held["runs"][pid], n_block,
                                        tr_index=held["tr_index"][pid], buffer=n_buffer)
            n_rows[pid] = int(len(rows))
            names_out[pid] = _unit_names(unit_names, held["units"][pid])
        extra = {"n_rows": n_rows, **_shared_unit_names(names_out, pids)}
        return _acc_arrays(pids, labels, {"s": scores, "blk": blocks}, extra)

    return _cached_evaluation(_as_cache(cache), content_hash(input_key, n_block, n_buffer), config, compute, meta)


# --------------------------------------------------------------------------------------
# hashing and caching
# --------------------------------------------------------------------------------------


def arrays_key(nested: Any) -> str:
    """Content key of a nested list of arrays and JSON-able values.

    Arrays are hashed with :func:`brainviz.evaluation._digest.array_digest` (parallel chunk
    hashes for large arrays, SHA-1 for small ones).
    """
    from brainviz.evaluation._digest import array_digest

    def collect(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return {"__array__": array_digest(obj)}
        if isinstance(obj, (list, tuple)):
            return [collect(o) for o in obj]
        return obj

    return content_hash("arrays", collect(nested))


def _as_cache(cache: Any):
    from brainviz.cache import Cache

    if cache is True:
        return Cache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, Cache):
        return cache
    raise TypeError(f"cache: expected True, False or a brainviz.cache.Cache, got {type(cache).__name__}")


def _cached_comparison(cache, input_key: str, config: CompareConfig, compute_acc: Callable[[], dict], meta: dict) -> ComparisonResult:
    # the group test depends on whether the models pooled participants (version 2: ttest-by-run)
    rkey = content_hash("compare-result", input_key, config.key(), "group-test-2", bool(meta.get("pooled_fits")))
    if cache is not None and cache.has("compare", rkey, ".npz"):
        result = ComparisonResult.from_arrays(_read_npz(cache.path("compare", rkey, ".npz")), config)
        result.meta["from_cache"] = True
        return result
    akey = content_hash("compare-acc", input_key, config.draws_key())
    arrays = cache.arrays("compare-acc", akey, compute_acc) if cache is not None else compute_acc()
    pids, runs, accs, extra = _acc_from_arrays(arrays, ("a", "b", "blk"))
    result = comparison_from_accuracies(accs["a"], accs["b"], runs, config, {**meta, **extra}, accs["blk"])
    if cache is not None:
        cache.arrays("compare", rkey, result.to_arrays)
    result.meta["from_cache"] = False
    return result


def _cached_evaluation(cache, input_key: str, config: EvaluateConfig, compute: Callable[[], dict], meta: dict) -> EvaluationResult:
    # the group test depends on whether the models pooled participants (version 2: ttest-by-run)
    rkey = content_hash("evaluate-result", input_key, config.key(), "group-test-2", bool(meta.get("pooled_fits")))
    if cache is not None and cache.has("evaluate", rkey, ".npz"):
        result = EvaluationResult.from_arrays(_read_npz(cache.path("evaluate", rkey, ".npz")), config)
        result.meta["from_cache"] = True
        return result
    skey = content_hash("evaluate-scores", input_key, config.draws_key())
    arrays = cache.arrays("evaluate-scores", skey, compute) if cache is not None else compute()
    pids, runs, accs, extra = _acc_from_arrays(arrays, ("s", "blk"))
    result = evaluation_from_scores(accs["s"], runs, config, {**meta, **extra}, accs["blk"])
    if cache is not None:
        cache.arrays("evaluate", rkey, result.to_arrays)
    result.meta["from_cache"] = False
    return result


def _read_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _acc_arrays(pids: Sequence[str], runs: Mapping[str, Sequence[str]], groups: Mapping[str, Mapping[str, np.ndarray]],
                meta: dict) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"meta": np.array(json.dumps({"participants": list(pids), "meta": _jsonable(meta)}))}
    for i, pid in enumerate(pids):
        out[f"p{i}.runs"] = np.asarray(list(runs[pid]), dtype=str)
        for g, values in groups.items():
            out[f"p{i}.{g}"] = np.asarray(values[pid], dtype=np.float64)
    return out


def _acc_from_arrays(arrays: Mapping[str, np.ndarray], groups: Sequence[str]):
    head = json.loads(str(arrays["meta"]))
    pids = head["participants"]
    runs = {pid: [str(r) for r in arrays[f"p{i}.runs"]] for i, pid in enumerate(pids)}
    accs = {g: {pid: arrays[f"p{i}.{g}"] for i, pid in enumerate(pids) if f"p{i}.{g}" in arrays} for g in groups}
    return pids, runs, accs, head.get("meta", {})


def _test_to_arrays(out: dict, prefix: str, res: _stats.TestResult) -> None:
    for field in ("statistic", "p", "q", "significant", "effect"):
        out[f"{prefix}.{field}"] = np.asarray(getattr(res, field))
    out[f"{prefix}.info"] = np.array(json.dumps({"test": res.test, "fdr": res.fdr, "alpha": res.alpha,
                                                 "n_samples": res.n_samples, "alternative": res.alternative}))


def _test_from_arrays(arrays: Mapping[str, np.ndarray], prefix: str) -> _stats.TestResult:
    info = json.loads(str(arrays[f"{prefix}.info"]))
    return _stats.TestResult(
        statistic=arrays[f"{prefix}.statistic"], p=arrays[f"{prefix}.p"], q=arrays[f"{prefix}.q"],
        significant=arrays[f"{prefix}.significant"].astype(bool), effect=arrays[f"{prefix}.effect"], **info,
    )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _prepare(preds, targets, runs, by_run: bool, participant: str, preds_b=None):
    p = np.asarray(preds)
    if p.ndim == 2:
        p = p[None]
    t = np.asarray(targets)
    if p.ndim != 3 or t.ndim != 2 or p.shape[1:] != t.shape:
        raise HeldOutError(f"participant {participant!r}: predictions {p.shape} must be (n_seeds, n_rows, n_units) "
                         f"matching targets {t.shape}")
    pb = None
    if preds_b is not None:
        pb = np.asarray(preds_b)
        if pb.ndim == 2:
            pb = pb[None]
        if pb.ndim != 3 or pb.shape[1:] != t.shape:
            raise HeldOutError(f"participant {participant!r}: predictions of B {pb.shape} do not match targets {t.shape}")
    r = np.asarray(runs).astype(str)
    if r.shape != (t.shape[0],):
        raise HeldOutError(f"participant {participant!r}: runs {r.shape} do not match {t.shape[0]} rows")
    if by_run:
        groups = [(label, np.flatnonzero(r == label)) for label in dict.fromkeys(r.tolist())]
    else:
        groups = [(ALL_ROWS, np.arange(t.shape[0]))]
    return p, pb, t, groups


def _common_rows(tr_a: np.ndarray, tr_b: np.ndarray, pid: str):
    common, ia, ib = np.intersect1d(tr_a, tr_b, assume_unique=False, return_indices=True)
    if common.size == 0:
        raise HeldOutError(f"participant {pid!r}: models A and B share no held-out TR")
    if common.size < max(len(tr_a), len(tr_b)):
        warnings.warn(f"participant {pid!r}: comparing on the {common.size} held-out TRs both models predicted "
                      f"(A has {len(tr_a)}, B {len(tr_b)})", RuntimeWarning, stacklevel=3)
    # keep A's row order (runs contiguous)
    order = np.argsort(ia, kind="stable")
    return ia[order], ib[order], common[order]


def _warn_if_targets_differ(scan_a: dict, scan_b: dict) -> None:
    """Both models are scored against A's targets: warn when B's card names other data."""
    ca, cb = scan_a.get("card"), scan_b.get("card")
    if not ca or not cb:
        return
    da, db = ca.get("dataset") or {}, cb.get("dataset") or {}
    if da.get("hash") and db.get("hash") and da["hash"] != db["hash"]:
        warnings.warn(f"models A and B were trained on different datasets ({da.get('name')!r} vs {db.get('name')!r}); "
                      "both are scored against A's targets", RuntimeWarning, stacklevel=3)
    if (ca.get("preprocess") or {}) != (cb.get("preprocess") or {}):
        warnings.warn("models A and B used different preprocessing; both are scored against A's targets",
                      RuntimeWarning, stacklevel=3)


def roi_tests(
    result: "ComparisonResult | EvaluationResult",
    labels: np.ndarray,
    names: Sequence[str] | Mapping[int, str],
    *,
    participant: str | None = None,
) -> "pd.DataFrame":
    """Per-ROI tests with ROI names: one test per ROI, FDR across ROIs.

    Units are averaged within each ROI first (NaN units ignored). Group level (``participant``
    None and at least 2 participants): the per-participant ROI means are tested across
    participants with the result's group test. Participant level: the ROI mean of the block
    effects is tested with block sign flips (``block-sign-flip``) or across runs.

    Returns
    -------
    DataFrame ``roi, label, n_units, a, b, diff, se, effect, t, p, q, significant, n, test,
    level`` (``a``/``b``: accuracies of A and B for a comparison; for an evaluation ``a`` is
    the score and ``b`` chance). ``se`` is the standard error across participants (group)
    or NaN. ``significant`` is ``q <= alpha`` of the named test over ROIs.
    """
    import pandas as pd

    cfg = result.config
    labels = np.asarray(labels)
    mapping = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    keep = [(lab, str(nm)) for lab, nm in mapping.items() if np.any(labels == lab)]
    is_cmp = isinstance(result, ComparisonResult)
    chance = 0.0 if is_cmp else _chance(cfg.metric)
    pids = list(result.participants) if participant is None else [participant]

    def unit_means(pid: str) -> tuple[np.ndarray, np.ndarray]:
        if is_cmp:
            return result.mean_accuracy(pid)
        s = result.mean_score(pid)
        return s, np.full_like(s, chance)

    def roi_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.stack([np.nanmean(np.take(x, np.flatnonzero(labels == lab), axis=axis), axis=axis)
                             for lab, _ in keep], axis=-1)

    a = np.stack([roi_mean(unit_means(p)[0]) for p in pids])
    b = np.stack([roi_mean(unit_means(p)[1]) for p in pids])
    d = a - b
    alternative = "two-sided" if is_cmp else "greater"
    if participant is None and len(pids) >= 2:
        gtest = cfg.test if cfg.test in _stats.GROUP_TESTS else DEFAULT_GROUP_TEST
        if cfg.test == "ttest-by-run" or (cfg.test not in _stats.GROUP_TESTS and result.group is not None
                                          and result.group.test == "group:ttest-by-run"):
            # pooled fits: the result's own per-run test, on ROI means per held-out run
            def per_run(pid: str) -> np.ndarray:
                x = (np.asarray(result.acc_a[pid]).mean(axis=0) - np.asarray(result.acc_b[pid]).mean(axis=0)
                     if is_cmp else np.asarray(result.scores[pid]).mean(axis=0) - chance)
                return roi_mean(x)
            res = _group("ttest-by-run", [per_run(p) for p in pids], cfg, alternative, {})
        else:
            res = _stats.group_test(d, method=gtest, alternative=alternative, alpha=cfg.alpha, fdr=cfg.fdr,
                                    n_permutations=cfg.n_permutations,
                                    rng=draw_generator(cfg.seed, "roi-group", "sign-flips"))
        level = "group"
    else:
        pid = pids[0]
        ptest = cfg.test if cfg.test in PARTICIPANT_TESTS else DEFAULT_PARTICIPANT_TEST
        blk = result.blocks.get(pid)
        score_a = result.acc_a[pid] if is_cmp else result.scores[pid]
        score_b = result.acc_b[pid] if is_cmp else None
        res = _participant_test(
            ptest, pid, cfg, a=roi_mean(score_a), b=None if score_b is None else roi_mean(score_b),
            blocks=None if blk is None else roi_mean(np.asarray(blk)), chance=chance)
        level = "participant"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        se = _se_across(d) if len(pids) > 1 else np.full(d.shape[1], np.nan)
        return pd.DataFrame({
            "roi": [nm for _, nm in keep], "label": [lab for lab, _ in keep],
            "n_units": [int(np.sum(labels == lab)) for lab, _ in keep],
            "a": np.nanmean(a, axis=0), "b": np.nanmean(b, axis=0), "diff": np.nanmean(d, axis=0), "se": se,
            "effect": res.effect, "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
            "n": res.n_samples, "test": res.test, "level": level,
        })


def _recording_info(scan: dict, pids: Sequence[str], dataset, targets) -> tuple[float, list[str] | None, dict]:
    """Repetition time and ROI names of the recordings behind held-out predictions.

    Read from the dataset manifest (``dataset`` or the card's); with a ``--targets`` file and
    no readable dataset the TR is taken as 2 s and the result says so.
    """
    from brainviz.evaluation import io

    try:
        from brainviz.data.dataset import load_dataset

        ds = load_dataset(io.dataset_path(scan, dataset), check_values=False)
    except Exception:  # noqa: BLE001 - targets from a file: no dataset needed
        if targets is None:
            raise
        return 2.0, None, {"tr_assumed": True}
    recs = [ds.fmri[p] for p in pids if p in ds.fmri]
    tr = float(recs[0].tr) if recs else 2.0
    names = None
    space = getattr(recs[0], "space", None) if recs else None
    if space is not None and getattr(space, "kind", None) == "rois" and getattr(space, "roi_names", None):
        names = [str(n) for n in space.roi_names]
    return tr, names, ({} if recs else {"tr_assumed": True})


def _se_across(x: np.ndarray) -> np.ndarray:
    """Standard error of the mean over axis 0 (participants), NaN-aware."""
    return np.nanstd(x, axis=0, ddof=1) / np.sqrt(np.isfinite(x).sum(axis=0))


def _shared_unit_names(names: Mapping[str, list[str] | None], pids: Sequence[str]) -> dict[str, list[str]]:
    """``{"unit_names": ...}`` when every participant's units carry the same names, else ``{}``."""
    first = names[pids[0]] if pids else None
    return {"unit_names": first} if first and all(names[p] == first for p in pids) else {}


def _unit_names(names: list[str] | None, units: np.ndarray | None) -> list[str] | None:
    if not names:
        return None
    if units is None:
        return list(names)
    return [names[int(u)] for u in np.asarray(units)]


def _model_name(scan: dict) -> str:
    card = scan.get("card") or {}
    return str(card.get("name") or scan["path"].name)


def _chance(metric: str) -> float:
    return 0.5 if metric == "twenty-vs-twenty" else 0.0


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
