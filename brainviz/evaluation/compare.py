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
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from brainviz._io import content_hash
from brainviz.config import ConfigError, JobConfig
from brainviz.evaluation import stats as _stats
from brainviz.evaluation._backends import DEFAULT_BACKEND, check_backend
from brainviz.evaluation.summaries import curve_points, fig2_curve, fig2_curves, significance_counts

METRICS = ("twenty-vs-twenty", "pearson", "pove")
ALL_ROWS = "all"


# --------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------


def _validate_common(cfg: Any) -> None:
    name = type(cfg).__name__
    for field in ("k", "n_samples"):
        v = getattr(cfg, field)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name}.{field} must be a positive integer, got {v!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ConfigError(f"{name}.seed must be a non-negative integer, got {cfg.seed!r}")
    if not (isinstance(cfg.alpha, (int, float)) and 0 < cfg.alpha < 1):
        raise ConfigError(f"{name}.alpha must lie in (0, 1), got {cfg.alpha!r}")
    if cfg.fdr not in _stats.FDR_METHODS:
        raise ConfigError(f"{name}.fdr must be one of {_stats.FDR_METHODS}, got {cfg.fdr!r}")
    if cfg.test not in _stats.TESTS:
        raise ConfigError(f"{name}.test must be one of {_stats.TESTS}, got {cfg.test!r}")
    if not isinstance(cfg.by_run, bool):
        raise ConfigError(f"{name}.by_run must be true or false, got {cfg.by_run!r}")


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
        FDR level.
    fdr : {"bh", "by", "none"}
        Benjamini-Hochberg (default) or Benjamini-Yekutieli.
    test : {"ttest", "wilcoxon"}
        Paired test across samples (seeds x runs).
    by_run : bool
        Draw within each held-out run (the paper) rather than over all held-out rows.
    """

    k: int = 20
    n_samples: int = 1000
    seed: int = 0
    alpha: float = 0.01
    fdr: str = "bh"
    test: str = "ttest"
    by_run: bool = True

    def validate(self) -> None:
        _validate_common(self)

    def draws_key(self) -> str:
        """Key of the settings the accuracies depend on (not alpha, fdr, test)."""
        return content_hash("draws", self.k, self.n_samples, self.seed, self.by_run)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(CompareConfig):
    """Settings of a one-model evaluation (see :class:`CompareConfig` for shared fields).

    ``metric``: ``"twenty-vs-twenty"`` (tested against 0.5), ``"pearson"`` or ``"pove"``
    (variance explained; both tested against 0), one-sided, across seeds x runs.
    """

    metric: str = "twenty-vs-twenty"

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"EvaluateConfig.metric must be one of {METRICS}, got {self.metric!r}")
        _validate_common(self)

    def draws_key(self) -> str:
        """Key of the settings the scores depend on (draw settings only for 20-vs-20)."""
        if self.metric != "twenty-vs-twenty":
            return content_hash("scores", self.metric, self.by_run)
        return content_hash("scores", self.metric, self.k, self.n_samples, self.seed, self.by_run)


def draw_generator(seed: int, participant: str, run: str) -> np.random.Generator:
    """The generator of the draws of one (participant, run): independent of other pairs."""
    words = [int(content_hash(str(participant), length=8), 16), int(content_hash(str(run), length=8), 16)]
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=words))


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ComparisonResult:
    """Per-unit comparison of models A and B for every participant.

    Attributes
    ----------
    config : CompareConfig
    participants : list of str
    acc_a, acc_b : dict participant -> float array (n_seeds, n_runs, n_units)
        20-vs-20 accuracy per seed, held-out run and unit (NaN for non-finite units).
    runs : dict participant -> list of str
        Run labels of axis 1 (``["all"]`` when ``by_run`` is False).
    tests : dict participant -> :class:`~brainviz.evaluation.stats.TestResult`
        Paired test across the samples axis, FDR within participant.
    meta : dict
        Model names, backend, row counts, how samples were paired, ``from_cache``.
    """

    config: CompareConfig
    participants: list[str]
    acc_a: dict[str, np.ndarray]
    acc_b: dict[str, np.ndarray]
    runs: dict[str, list[str]]
    tests: dict[str, _stats.TestResult]
    meta: dict[str, Any]

    def mean_accuracy(self, participant: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean accuracy of A and B over seeds and runs, per unit."""
        a = self.acc_a[participant]
        b = self.acc_b[participant]
        return a.reshape(-1, a.shape[-1]).mean(axis=0), b.reshape(-1, b.shape[-1]).mean(axis=0)

    def to_frame(self):
        """Tidy table: one row per (participant, unit).

        Columns ``participant, unit, acc_a, acc_b, diff, t, p, q, significant``; ``acc_*``
        are means over seeds and runs, ``t`` the test statistic (t for ``ttest``, the
        signed-rank statistic for ``wilcoxon``), ``q`` the FDR-adjusted p-value.
        """
        import pandas as pd

        frames = []
        for pid in self.participants:
            a, b = self.mean_accuracy(pid)
            res = self.tests[pid]
            frames.append(pd.DataFrame({
                "participant": pid, "unit": np.arange(a.size), "acc_a": a, "acc_b": b, "diff": a - b,
                "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
            }))
        if not frames:
            return pd.DataFrame(columns=["participant", "unit", "acc_a", "acc_b", "diff", "t", "p", "q", "significant"])
        return pd.concat(frames, ignore_index=True)

    def fig2(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Full Fig. 2 curves per participant and averaged (see :func:`~brainviz.evaluation.summaries.fig2_curves`)."""
        means = {pid: self.mean_accuracy(pid) for pid in self.participants}
        return fig2_curves({p: m[0] for p, m in means.items()}, {p: m[1] for p, m in means.items()})

    def summary(self, n_points: int = 200) -> dict[str, Any]:
        """JSON-able summary: config, test and FDR names, counts, mean accuracies, Fig. 2 curves."""
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
        curves, average = self.fig2()
        first = self.tests[self.participants[0]] if self.participants else None
        return {
            "kind": "compare",
            "config": self.config.to_dict(),
            "test": first.test if first else self.config.test,
            "alternative": first.alternative if first else "two-sided",
            "fdr": self.config.fdr,
            "alpha": self.config.alpha,
            "participants": list(self.participants),
            "runs": {p: list(self.runs[p]) for p in self.participants},
            "n_samples": {p: self.tests[p].n_samples for p in self.participants},
            "counts": counts,
            "mean_accuracy": means,
            "fig2": {"participants": {p: curve_points(c, n_points) for p, c in curves.items()},
                     "average": curve_points(average, n_points)},
            "meta": _jsonable(self.meta),
        }

    # -- (de)serialisation for the cache ------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = _acc_arrays(self.participants, self.runs, {"a": self.acc_a, "b": self.acc_b}, self.meta)
        for i, pid in enumerate(self.participants):
            _test_to_arrays(out, f"p{i}.test", self.tests[pid])
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: CompareConfig) -> "ComparisonResult":
        participants, runs, accs, meta = _acc_from_arrays(arrays, ("a", "b"))
        tests = {pid: _test_from_arrays(arrays, f"p{i}.test") for i, pid in enumerate(participants)}
        return cls(config, participants, accs["a"], accs["b"], runs, tests, meta)


@dataclasses.dataclass
class EvaluationResult:
    """Per-unit evaluation of one model for every participant.

    Attributes
    ----------
    config : EvaluateConfig
    participants : list of str
    scores : dict participant -> float array (n_seeds, n_runs, n_units)
        20-vs-20 accuracy, Pearson r or variance explained per seed, run and unit.
    runs : dict participant -> list of str
    tests : dict participant -> TestResult
        One-sided test against chance (0.5 or 0) across seeds x runs, FDR within participant.
    meta : dict
    """

    config: EvaluateConfig
    participants: list[str]
    scores: dict[str, np.ndarray]
    runs: dict[str, list[str]]
    tests: dict[str, _stats.TestResult]
    meta: dict[str, Any]

    def mean_score(self, participant: str) -> np.ndarray:
        s = self.scores[participant]
        return s.reshape(-1, s.shape[-1]).mean(axis=0)

    def to_frame(self):
        """Tidy table: ``participant, unit, metric, score, t, p, q, significant``."""
        import pandas as pd

        cols = ["participant", "unit", "metric", "score", "t", "p", "q", "significant"]
        frames = []
        for pid in self.participants:
            s = self.mean_score(pid)
            res = self.tests[pid]
            frames.append(pd.DataFrame({
                "participant": pid, "unit": np.arange(s.size), "metric": self.config.metric, "score": s,
                "t": res.statistic, "p": res.p, "q": res.q, "significant": res.significant,
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
        first = self.tests[self.participants[0]] if self.participants else None
        return {
            "kind": "evaluate",
            "metric": self.config.metric,
            "config": self.config.to_dict(),
            "test": first.test if first else self.config.test,
            "alternative": "greater",
            "chance": _chance(self.config.metric),
            "fdr": self.config.fdr,
            "alpha": self.config.alpha,
            "participants": list(self.participants),
            "runs": {p: list(self.runs[p]) for p in self.participants},
            "counts": counts,
            "mean_score": means,
            "meta": _jsonable(self.meta),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = _acc_arrays(self.participants, self.runs, {"s": self.scores}, self.meta)
        for i, pid in enumerate(self.participants):
            _test_to_arrays(out, f"p{i}.test", self.tests[pid])
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: EvaluateConfig) -> "EvaluationResult":
        participants, runs, accs, meta = _acc_from_arrays(arrays, ("s",))
        tests = {pid: _test_from_arrays(arrays, f"p{i}.test") for i, pid in enumerate(participants)}
        return cls(config, participants, accs["s"], runs, tests, meta)


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


def comparison_from_accuracies(
    acc_a: Mapping[str, np.ndarray],
    acc_b: Mapping[str, np.ndarray],
    runs: Mapping[str, Sequence[str]],
    config: CompareConfig,
    meta: dict[str, Any] | None = None,
) -> ComparisonResult:
    """Run the paired test + FDR per participant on precomputed accuracies."""
    meta = dict(meta or {})
    tests = {}
    paired_over = {}
    for pid in acc_a:
        a, b = np.asarray(acc_a[pid]), np.asarray(acc_b[pid])
        if a.shape[0] == b.shape[0]:
            xa, xb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
            paired_over[pid] = "seeds x runs"
        else:  # different numbers of seeds: average seeds, pair runs
            xa, xb = a.mean(axis=0), b.mean(axis=0)
            paired_over[pid] = "runs (seed counts differ; seeds averaged)"
        tests[pid] = _stats.paired_test(xa, xb, method=config.test, alpha=config.alpha, fdr=config.fdr)
    meta["paired_over"] = paired_over
    return ComparisonResult(config, list(acc_a), dict(acc_a), dict(acc_b), {p: list(r) for p, r in runs.items()}, tests, meta)


def evaluation_from_scores(
    scores: Mapping[str, np.ndarray], runs: Mapping[str, Sequence[str]], config: EvaluateConfig,
    meta: dict[str, Any] | None = None,
) -> EvaluationResult:
    tests = {}
    for pid, s in scores.items():
        s = np.asarray(s)
        tests[pid] = _stats.test_against_chance(
            s.reshape(-1, s.shape[-1]), chance=_chance(config.metric), method=config.test,
            alternative="greater", alpha=config.alpha, fdr=config.fdr,
        )
    return EvaluationResult(config, list(scores), dict(scores), {p: list(r) for p, r in runs.items()}, tests, dict(meta or {}))


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
            raise ValueError(f"{what}: no entry for participant(s) {missing}")
    if input_key is None:
        input_key = arrays_key([[p, preds_a[p], preds_b[p], targets[p], np.asarray(runs[p]).astype(str)] for p in pids])

    def compute_acc() -> dict[str, np.ndarray]:
        acc_a, acc_b, labels = {}, {}, {}
        for pid in pids:
            acc_a[pid], acc_b[pid], labels[pid] = paired_accuracies(
                preds_a[pid], preds_b[pid], targets[pid], runs[pid], config, pid, backend)
        return _acc_arrays(pids, labels, {"a": acc_a, "b": acc_b}, {})

    meta = {"models": {"a": names[0], "b": names[1]}, "backend": backend, "input_key": input_key,
            "n_rows": {p: int(np.asarray(targets[p]).shape[0]) for p in pids}}
    return _cached_comparison(_as_cache(cache), input_key, config, compute_acc, meta)


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
) -> ComparisonResult:
    """Compare two checkpoints (or prediction folders) on their held-out predictions.

    Participants default to those both models have. Rows are the held-out TRs both models
    predicted (``tr_index``); targets come from ``targets`` (an ``.npz`` file, see
    :func:`brainviz.evaluation.io.load_targets_file`) or from the dataset named in model A's
    card (or ``dataset``), preprocessed with A's ``preprocess`` config. The cache key is built
    from memoised file hashes, so a repeated request reads no prediction file.
    """
    from brainviz.evaluation import io

    config = config or CompareConfig()
    check_backend(backend)
    scan_a, scan_b = io.scan_heldout(model_a), io.scan_heldout(model_b)
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
    meta = {"models": {"a": names[0], "b": names[1]}, "paths": {"a": str(scan_a["path"]), "b": str(scan_b["path"])},
            "simulated": io.card_simulated(scan_a) or io.card_simulated(scan_b),
            "backend": backend, "input_key": input_key}

    def compute_acc() -> dict[str, np.ndarray]:
        ha = io.load_heldout(scan_a["path"], pids)
        hb = io.load_heldout(scan_b["path"], pids)
        tg = io.load_targets(scan_a, pids, targets_file=targets, dataset=dataset)
        acc_a, acc_b, labels, n_rows = {}, {}, {}, {}
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
            acc_a[pid], acc_b[pid], labels[pid] = paired_accuracies(
                ha["predictions"][pid][:, ia], hb["predictions"][pid][:, ib], target, runs,
                config, pid, backend)
            n_rows[pid] = int(len(tr))
        return _acc_arrays(pids, labels, {"a": acc_a, "b": acc_b}, {"n_rows": n_rows})

    return _cached_comparison(_as_cache(cache), input_key, config, compute_acc, meta)


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
            raise ValueError(f"{what}: no entry for participant(s) {missing}")
    if input_key is None:
        input_key = arrays_key([[p, predictions[p], targets[p], np.asarray(runs[p]).astype(str)] for p in pids])

    def compute() -> dict[str, np.ndarray]:
        scores, labels = {}, {}
        for pid in pids:
            scores[pid], labels[pid] = model_scores(predictions[pid], targets[pid], runs[pid], config, pid, backend)
        return _acc_arrays(pids, labels, {"s": scores}, {})

    meta = {"model": name, "backend": backend, "input_key": input_key,
            "n_rows": {p: int(np.asarray(targets[p]).shape[0]) for p in pids}}
    return _cached_evaluation(_as_cache(cache), input_key, config, compute, meta)


def evaluate_model(
    model: str | os.PathLike,
    config: EvaluateConfig | None = None,
    *,
    participants: Sequence[str] | None = None,
    targets: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    backend: str = DEFAULT_BACKEND,
    cache: Any = True,
) -> EvaluationResult:
    """Evaluate one checkpoint (or prediction folder) on its held-out predictions."""
    from brainviz.evaluation import io

    config = config or EvaluateConfig()
    check_backend(backend)
    scan = io.scan_heldout(model)
    pids = io.select_participants(scan, participants)
    input_key = content_hash("evaluate-model", io.heldout_key(scan, pids),
                             io.targets_key(scan, pids, targets_file=targets, dataset=dataset))
    meta = {"model": _model_name(scan), "path": str(scan["path"]), "backend": backend, "input_key": input_key,
            "simulated": io.card_simulated(scan)}

    def compute() -> dict[str, np.ndarray]:
        held = io.load_heldout(scan["path"], pids)
        tg = io.load_targets(scan, pids, targets_file=targets, dataset=dataset)
        scores, labels, n_rows = {}, {}, {}
        for pid in pids:
            data, t_index = tg[pid]
            rows = io.align_rows(t_index, held["tr_index"][pid], f"participant {pid!r}")
            target = io.target_columns(np.asarray(data)[rows], held["units"][pid], f"participant {pid!r}")
            scores[pid], labels[pid] = model_scores(held["predictions"][pid], target,
                                                    held["runs"][pid], config, pid, backend)
            n_rows[pid] = int(len(rows))
        return _acc_arrays(pids, labels, {"s": scores}, {"n_rows": n_rows})

    return _cached_evaluation(_as_cache(cache), input_key, config, compute, meta)


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
    rkey = content_hash("compare-result", input_key, config.key())
    if cache is not None and cache.has("compare", rkey, ".npz"):
        result = ComparisonResult.from_arrays(_read_npz(cache.path("compare", rkey, ".npz")), config)
        result.meta["from_cache"] = True
        return result
    akey = content_hash("compare-acc", input_key, config.draws_key())
    arrays = cache.arrays("compare-acc", akey, compute_acc) if cache is not None else compute_acc()
    pids, runs, accs, extra = _acc_from_arrays(arrays, ("a", "b"))
    result = comparison_from_accuracies(accs["a"], accs["b"], runs, config, {**meta, **extra})
    if cache is not None:
        cache.arrays("compare", rkey, result.to_arrays)
    result.meta["from_cache"] = False
    return result


def _cached_evaluation(cache, input_key: str, config: EvaluateConfig, compute: Callable[[], dict], meta: dict) -> EvaluationResult:
    rkey = content_hash("evaluate-result", input_key, config.key())
    if cache is not None and cache.has("evaluate", rkey, ".npz"):
        result = EvaluationResult.from_arrays(_read_npz(cache.path("evaluate", rkey, ".npz")), config)
        result.meta["from_cache"] = True
        return result
    skey = content_hash("evaluate-scores", input_key, config.draws_key())
    arrays = cache.arrays("evaluate-scores", skey, compute) if cache is not None else compute()
    pids, runs, accs, extra = _acc_from_arrays(arrays, ("s",))
    result = evaluation_from_scores(accs["s"], runs, config, {**meta, **extra})
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
    accs = {g: {pid: arrays[f"p{i}.{g}"] for i, pid in enumerate(pids)} for g in groups}
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
        raise ValueError(f"participant {participant!r}: predictions {p.shape} must be (n_seeds, n_rows, n_units) "
                         f"matching targets {t.shape}")
    pb = None
    if preds_b is not None:
        pb = np.asarray(preds_b)
        if pb.ndim == 2:
            pb = pb[None]
        if pb.ndim != 3 or pb.shape[1:] != t.shape:
            raise ValueError(f"participant {participant!r}: predictions of B {pb.shape} do not match targets {t.shape}")
    r = np.asarray(runs).astype(str)
    if r.shape != (t.shape[0],):
        raise ValueError(f"participant {participant!r}: runs {r.shape} do not match {t.shape[0]} rows")
    if by_run:
        groups = [(label, np.flatnonzero(r == label)) for label in dict.fromkeys(r.tolist())]
    else:
        groups = [(ALL_ROWS, np.arange(t.shape[0]))]
    return p, pb, t, groups


def _common_rows(tr_a: np.ndarray, tr_b: np.ndarray, pid: str):
    common, ia, ib = np.intersect1d(tr_a, tr_b, assume_unique=False, return_indices=True)
    if common.size == 0:
        raise ValueError(f"participant {pid!r}: models A and B share no held-out TR")
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
