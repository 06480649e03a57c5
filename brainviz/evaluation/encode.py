"""Voxelwise / ROI-wise encoding models at the field's standard (``python -m brainviz encode``).

For every participant:

1. targets: :func:`brainviz.data.preprocess.fmri_examples` (trims, detrend, z-score within run);
2. features (:mod:`brainviz.features`): every layer of a language model (word states with a
   causal context, Lanczos-resampled, FIR delays 1-4 TRs by default) and the low-level
   baselines (word rate; word rate + letters + unigram surprisal + content words; time-in-run
   trend);
3. outer folds that never shuffle TRs (:func:`brainviz.data.preprocess.folds`:
   leave-one-run-out, or contiguous blocks with buffers for single-run data); in each fold,
   features are z-scored with the training rows only and every model is fitted with an inner
   CV strictly inside the training rows (:func:`brainviz.data.splits.inner_folds`):

   * one himalaya ``RidgeCV`` per layer; each unit's layer is the one with the best inner-CV
     score (no peeking at the held-out fold); the per-layer held-out scores are kept (profile);
   * ``RidgeCV`` of each baseline, scored the same way (the trend is a baseline to beat,
     never a free regressor in the LM model);
   * himalaya ``BandedRidgeCV`` of [LM layer, low-level] for the variance partition:
     the LM's unique variance is ``R2(LM + low-level) - R2(low-level)``;
4. every held-out fold (run or block) is scored on its own (r and R2 = 1 - MSE/Var) and fold
   scores are averaged;
5. group level across participants (random effects): one-sample test of r > 0 and of unique
   LM variance > 0 per unit (:func:`brainviz.evaluation.stats.group_test`, t-test by default),
   BH-FDR across units; inter-participant noise ceiling (scored per fold like the models) and
   ceiling-normalised scores.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import numpy as np

from brainviz.config import ConfigError, JobConfig
from brainviz.evaluation.encoding import ENCODE_ALPHAS

Progress = Callable[[str], None] | None
LAYER_MODES = ("best", "all")
FIT_TO = ("participant", "others")
BASELINES = ("word_rate", "lowlevel", "trend")


@dataclasses.dataclass(frozen=True)
class EncodeConfig(JobConfig):
    """Settings of an encoding analysis.

    Attributes
    ----------
    dataset : str
        Dataset folder.
    participants : tuple of str
        fMRI participants (default: all).
    layers : {"best", "all"}
        ``best``: one row per participant x unit at the layer chosen per unit by inner CV;
        ``all``: plus one row per layer. The candidate layers are ``features["layers"]``
        (default all hidden states); the per-layer profile is always computed.
    features : dict
        Overrides of :class:`brainviz.features.FeatureConfig` fields (model, pooling, delays...).
    preprocess : dict
        Overrides of :class:`brainviz.data.PreprocessConfig` fields (trims, window, cv, buffer...).
    alphas : tuple of float
        Ridge penalties searched by the inner CV.
    n_ratios : int
        Band-weight ratios searched by the banded ridge (LM vs low-level).
    inner_blocks : int
        Contiguous inner blocks when a fold's training rows hold a single run.
    alpha, fdr, group_test : float, str, str
        FDR level, FDR method (``bh``/``by``/``none``) and group test (``ttest``/``sign-flip``).
    fit_to : {"participant", "others"}
        Targets the models are fitted to. ``participant`` (default): each participant's own
        training runs (the usual within-participant encoding model). ``others``: the mean of the
        *other* participants' training runs (a leave-one-participant-out group model, for
        participants in one space who heard/read the same stimulus at the same TRs); it is then
        scored on the held-out runs of the left-out participant, whose data the fit never sees.
        Averaging the others removes most of the noise from the fit, so it estimates the shared,
        stimulus-driven response better (closer to the noise ceiling), but it cannot capture
        participant-specific responses, and it reports **no group test**: a participant's
        held-out runs are training data of the other participants' models, which makes the
        participants' scores dependent (a t-test across them had an 11 % false-positive rate at
        nominal 5 % in a null simulation).
    backend : str
        himalaya backend (``numpy`` or ``torch``).
    blas_threads : int or None
        BLAS threads while fitting (threadpoolctl). The default 1 is fastest for the small
        (TRs x TRs) kernel problems here and avoids spinning threads on a busy shared CPU
        (measured 10-50x slowdowns with 2 OpenBLAS threads under load); None = library default.
    """

    dataset: str = ""
    participants: tuple[str, ...] = ()
    layers: str = "best"
    features: dict = dataclasses.field(default_factory=dict)
    preprocess: dict = dataclasses.field(default_factory=dict)
    alphas: tuple[float, ...] = ENCODE_ALPHAS
    n_ratios: int = 9
    inner_blocks: int = 3
    alpha: float = 0.05
    fdr: str = "bh"
    group_test: str = "ttest"
    fit_to: str = "participant"
    backend: str = "numpy"
    blas_threads: int | None = 1

    def validate(self) -> None:
        if self.layers not in LAYER_MODES:
            raise ConfigError(f"EncodeConfig.layers: expected one of {LAYER_MODES}, got {self.layers!r}")
        if not self.alphas or any(not a > 0 for a in self.alphas):
            raise ConfigError("EncodeConfig.alphas must be positive numbers")
        if self.n_ratios < 1 or self.inner_blocks < 2:
            raise ConfigError("EncodeConfig.n_ratios must be >= 1 and inner_blocks >= 2")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"EncodeConfig.alpha must lie in (0, 1), got {self.alpha}")
        if self.fdr not in ("bh", "by", "none"):
            raise ConfigError(f"EncodeConfig.fdr: expected bh, by or none, got {self.fdr!r}")
        if self.fit_to not in FIT_TO:
            raise ConfigError(f"EncodeConfig.fit_to: expected one of {FIT_TO}, got {self.fit_to!r}")
        if self.group_test not in ("ttest", "sign-flip"):
            raise ConfigError(f"EncodeConfig.group_test: expected ttest or sign-flip, got {self.group_test!r}")
        self.feature_config()
        self.preprocess_config()

    def feature_config(self):
        from brainviz.features.config import FeatureConfig

        try:
            return FeatureConfig.from_dict(dict(self.features))
        except ConfigError as exc:
            raise ConfigError(f"EncodeConfig.features: {exc}") from None

    def preprocess_config(self):
        from brainviz.data.preprocess import PreprocessConfig

        try:
            return PreprocessConfig.from_dict(dict(self.preprocess))
        except ConfigError as exc:
            raise ConfigError(f"EncodeConfig.preprocess: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["features"] = self.feature_config().to_dict()
        out["preprocess"] = self.preprocess_config().to_dict()
        return out


@dataclasses.dataclass
class ParticipantEncoding:
    """Held-out scores of one participant, every array (n_folds, n_units) unless stated.

    ``scores[model][metric]`` with model in ``lm`` (selected layer), ``joint`` (LM + low-level,
    banded), ``word_rate``, ``lowlevel``, ``trend`` and metric ``r`` / ``r2``;
    ``layer_scores[metric]`` (n_layers, n_folds, n_units); ``best_layer`` the layer chosen in
    each fold; ``ceiling`` (n_units,) inter-participant noise ceiling (NaN with one participant).
    """

    participant: str
    folds: list[str]
    n_rows: int
    scores: dict[str, dict[str, np.ndarray]]
    layer_scores: dict[str, np.ndarray]
    best_layer: np.ndarray
    alphas: np.ndarray
    ceiling: np.ndarray | None = None

    def mean(self, model: str, metric: str = "r") -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.scores[model][metric], axis=0)

    @property
    def unique_lm(self) -> np.ndarray:
        """Per-fold-averaged ``R2(LM + low-level) - R2(low-level)`` per unit."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.scores["joint"]["r2"] - self.scores["lowlevel"]["r2"], axis=0)

    def layer_mean(self, metric: str = "r") -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.layer_scores[metric], axis=1)

    @property
    def selected_layer(self) -> np.ndarray:
        """The layer chosen most often across folds per unit (ties: the lower layer)."""
        out = np.empty(self.best_layer.shape[1], dtype=int)
        for u in range(out.size):
            vals, counts = np.unique(self.best_layer[:, u], return_counts=True)
            out[u] = vals[np.argmax(counts)]
        return out


@dataclasses.dataclass
class EncodeResult:
    """All participants of one ``encode`` run; :meth:`to_frame` and :meth:`summary` are the exports."""

    config: EncodeConfig
    participants: dict[str, ParticipantEncoding]
    units: list[str]
    layers: list[int]
    meta: dict[str, Any]

    # -- tables ----------------------------------------------------------------------
    def to_frame(self):
        """Tidy table: one row per participant x unit (``selection = best``) and, with
        ``layers="all"``, one per participant x unit x layer (``selection = layer``)."""
        import pandas as pd

        parts = []
        n_u = len(self.units)
        units = np.asarray(self.units, dtype=object)
        for pid, pe in self.participants.items():
            r = pe.mean("lm", "r")
            ceil = pe.ceiling if pe.ceiling is not None else np.full(n_u, np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                rnorm = np.where(ceil > 0, r / ceil, np.nan)
            parts.append(pd.DataFrame({
                "participant": pid, "unit": units, "unit_index": np.arange(n_u), "layer": pe.selected_layer,
                "selection": "best", "r": r, "r2": pe.mean("lm", "r2"),
                "r_joint": pe.mean("joint", "r"), "r2_joint": pe.mean("joint", "r2"), "unique_lm": pe.unique_lm,
                "r_baseline": pe.mean("lowlevel", "r"), "r2_baseline": pe.mean("lowlevel", "r2"),
                "r_word_rate": pe.mean("word_rate", "r"), "r_trend": pe.mean("trend", "r"),
                "ceiling": ceil, "r_norm": rnorm,
            }))
            if self.config.layers == "all":
                lr, lr2 = pe.layer_mean("r"), pe.layer_mean("r2")
                for li, layer in enumerate(self.layers):
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ln = np.where(ceil > 0, lr[li] / ceil, np.nan)
                    parts.append(pd.DataFrame({
                        "participant": pid, "unit": units, "unit_index": np.arange(n_u), "layer": int(layer),
                        "selection": "layer", "r": lr[li], "r2": lr2[li], "ceiling": ceil, "r_norm": ln,
                    }))
        frame = pd.concat(parts, ignore_index=True)
        if self.meta.get("simulated"):
            frame["simulated"] = True
        return frame

    def _per_fold(self, get) -> np.ndarray:
        """(n_participants, n_folds, n_units) of ``get(participant.scores)``."""
        return np.stack([np.asarray(get(pe.scores), dtype=np.float64) for pe in self.participants.values()])

    def stacked(self, model: str, metric: str = "r") -> np.ndarray:
        """(n_participants, n_units) fold-averaged scores."""
        return np.stack([pe.mean(model, metric) for pe in self.participants.values()])

    def layer_profile(self, metric: str = "r") -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error across participants of every layer's score: (n_layers, n_units) each."""
        x = np.stack([pe.layer_mean(metric) for pe in self.participants.values()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, axis=0)
            se = np.nanstd(x, axis=0, ddof=1) / np.sqrt(x.shape[0]) if x.shape[0] > 1 else np.full(mean.shape, np.nan)
        return mean, se

    def ceiling(self) -> np.ndarray:
        """Group noise ceiling per unit (mean of the per-participant inter-participant ceilings)."""
        c = [pe.ceiling for pe in self.participants.values() if pe.ceiling is not None]
        if not c:
            return np.full(len(self.units), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(c), axis=0)

    # -- group statistics --------------------------------------------------------------
    def group(self) -> dict[str, Any]:
        """Random-effects tests across participants per unit (see module docstring); computed once."""
        if getattr(self, "_group", None) is None:
            self._group = self._group_tests()
        return self._group

    def _group_tests(self) -> dict[str, Any]:
        cfg = self.config
        n = len(self.participants)
        out: dict[str, Any] = {"n_participants": n}
        r = self.stacked("lm")
        uniq = np.stack([pe.unique_lm for pe in self.participants.values()])
        diff_rate = r - self.stacked("word_rate")
        if n < 2:
            out["tests"] = None
            return out
        if cfg.fit_to == "others":
            # fit_to="others": each participant's held-out runs are training data of every other
            # participant's model, so the fold-averaged scores are positively dependent and a test
            # across them is anti-conservative (measured: 11 % one-sided p < 0.05 under the null
            # instead of 5 %). Within one held-out fold the models never saw that fold's data, so
            # the participants' scores are uncorrelated: test per fold, combine the folds'
            # p-values (stats.group_test_by_run)
            folds = {tuple(pe.folds) for pe in self.participants.values()}
            if len(folds) != 1:
                out["tests"] = None
                return out
            per_fold = {
                "r": self._per_fold(lambda s: s["lm"]["r"]),
                "unique_lm": self._per_fold(lambda s: s["joint"]["r2"] - s["lowlevel"]["r2"]),
                "lm_minus_word_rate": self._per_fold(lambda s: s["lm"]["r"] - s["word_rate"]["r"]),
                **{f"r_{k}": self._per_fold(lambda s, m=m: s[m]["r"])
                   for k, m in (("joint", "joint"), ("baseline", "lowlevel"), ("word_rate", "word_rate"),
                                ("trend", "trend"))},
            }
            out["tests"] = {k: _group_by_fold(v, cfg) for k, v in per_fold.items()}
            return out
        out["tests"] = {
            "r": _group(r, cfg), "unique_lm": _group(uniq, cfg), "lm_minus_word_rate": _group(diff_rate, cfg),
            "r_joint": _group(self.stacked("joint"), cfg), "r_baseline": _group(self.stacked("lowlevel"), cfg),
            "r_word_rate": _group(self.stacked("word_rate"), cfg), "r_trend": _group(self.stacked("trend"), cfg),
        }
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready group-level results per unit, noise ceiling, layer profile and notes."""
        cfg = self.config
        grp = self.group()
        tests = grp["tests"]
        ceiling = self.ceiling()
        mean_r = np.nanmean(self.stacked("lm"), axis=0)
        prof_mean, prof_se = self.layer_profile("r")
        sel = np.stack([pe.selected_layer for pe in self.participants.values()])
        units = {}
        for u, name in enumerate(self.units):
            entry: dict[str, Any] = {
                "mean_r": _f(mean_r[u]),
                "mean_r2": _f(np.nanmean(self.stacked("lm", "r2")[:, u])),
                "mean_r_joint": _f(np.nanmean(self.stacked("joint")[:, u])),
                "mean_unique_lm": _f(np.nanmean([pe.unique_lm[u] for pe in self.participants.values()])),
                "mean_r_baseline": _f(np.nanmean(self.stacked("lowlevel")[:, u])),
                "mean_r_word_rate": _f(np.nanmean(self.stacked("word_rate")[:, u])),
                "mean_r_trend": _f(np.nanmean(self.stacked("trend")[:, u])),
                "ceiling": _f(ceiling[u]),
                "r_norm": _f(mean_r[u] / ceiling[u]) if np.isfinite(ceiling[u]) and ceiling[u] > 0 else None,
                "layer_profile": {"layers": [int(x) for x in self.layers], "mean_r": [_f(v) for v in prof_mean[:, u]],
                                  "se_r": [_f(v) for v in prof_se[:, u]]},
                "selected_layers": {str(int(k)): int(c) for k, c in zip(*np.unique(sel[:, u], return_counts=True))},
            }
            if tests is not None:
                for key, res in tests.items():
                    entry[key] = {"t": _f(res.statistic[u]), "p": _f(res.p[u]), "q": _f(res.q[u]),
                                  "significant": bool(res.significant[u]), "mean": _f(res.effect[u])}
                entry["lm_adds_beyond_lowlevel"] = bool(tests["unique_lm"].significant[u])
            units[name] = entry
        out = {
            **self.meta,
            "config": cfg.to_dict(),
            "participants": list(self.participants),
            "n_participants": len(self.participants),
            "units": units,
            "layers": [int(x) for x in self.layers],
            "test": None if tests is None else {
                "name": tests["r"].test, "alternative": "greater", "fdr": cfg.fdr, "alpha": cfg.alpha,
                "across": "participants (random effects); FDR across units"},
            "n_significant": None if tests is None else {k: int(np.sum(v.significant)) for k, v in tests.items()},
            "notes": self.notes(),
        }
        return out

    def notes(self) -> list[str]:
        """Plain-language explanations (what was tested, with what n, what would help)."""
        cfg = self.config
        n = len(self.participants)
        notes = [f"cross-validation: {self.meta.get('cv')}; every held-out fold scored on its own, fold scores averaged",
                 "unique_lm = R2(LM + low-level, banded ridge) - R2(low-level: word rate, letters, unigram surprisal, "
                 "content words); r_trend is a time-in-run baseline scored the same way (never a regressor in the LM model)"]
        if n < 2:
            notes.append(f"only {n} participant: no group-level test and no inter-participant noise ceiling; "
                         "add participants (>= 5 give a meaningful t-test)")
            return notes
        tests = self.group()["tests"]
        if cfg.fit_to == "others":
            if tests is None:
                notes.append("fit_to='others' (leave-one-participant-out group model): participants have different "
                             "folds, so no test across them is reported - each participant's held-out runs also "
                             "trained the other participants' models, so their fold-averaged scores are not "
                             "independent. For significance run fit_to='participant'.")
                return notes
            notes.append("fit_to='others' (leave-one-participant-out group model): each participant's held-out runs "
                         "also trained the other participants' models, so fold-averaged scores are not independent; "
                         "the group tests run per held-out fold (participants' scores within a fold are "
                         "independent) and combine the folds' p-values (group:ttest-by-run, Cauchy combination)")
        from brainviz.evaluation.stats import min_discoveries, smallest_p

        for key in ("r", "unique_lm"):
            res = tests[key]
            k = int(np.sum(res.significant))
            if k == 0:
                p_min = smallest_p(res.test, n, None, "greater")
                finite = res.p[np.isfinite(res.p)]
                best = float(finite.min()) if finite.size else float("nan")
                need = min_discoveries(max(best, 1e-300), len(self.units), cfg.alpha, cfg.fdr) if finite.size else None
                reach = (f"{need} units at that p would pass" if need else "no number of units at that p would pass")
                notes.append(
                    f"{key}: no unit significant ({res.test}, one-sided, {cfg.fdr.upper()} q <= {cfg.alpha} over "
                    f"{len(self.units)} units, n = {n} participants; smallest p observed {best:.3g} ({reach}); "
                    f"smallest p the test can reach {p_min:.3g}). More participants, more TRs (smaller "
                    "--trim-start/--trim-end, more runs) or fewer units (an ROI space) would help.")
        mu = np.nanmean(np.stack([pe.unique_lm for pe in self.participants.values()]), axis=0)
        if np.all(~np.isfinite(mu) | (mu <= 0)):
            notes.append("unique_lm <= 0 in every unit: on held-out data the banded LM + low-level model did not "
                         "beat the low-level bands alone, i.e. the LM features add no variance beyond word rate, "
                         "letters, surprisal and content words here")
        return notes


def _group_by_fold(effects: np.ndarray, cfg: EncodeConfig):
    from brainviz.evaluation.stats import group_test_by_run

    return group_test_by_run(effects, alternative="greater", alpha=cfg.alpha, fdr=cfg.fdr)


def _group(effects: np.ndarray, cfg: EncodeConfig):
    from brainviz.evaluation.stats import group_test

    return group_test(effects, method=cfg.group_test, alternative="greater", alpha=cfg.alpha, fdr=cfg.fdr, rng=0)


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------


def encode_participant(
    dataset,
    examples,
    lm: dict[int, np.ndarray],
    baselines: dict[str, np.ndarray],
    config: EncodeConfig,
    folds=None,
    progress: Progress = None,
    fit_targets: np.ndarray | None = None,
) -> ParticipantEncoding:
    """Fit and score every model of one participant (see module docstring).

    ``lm`` maps layer -> features (n_rows, p); ``baselines`` has ``word_rate``, ``lowlevel``
    and ``trend`` (n_rows, q); ``folds`` default to :func:`brainviz.data.preprocess.folds`.
    ``fit_targets`` (n_rows, n_units): what the models are fitted to (default: the participant's
    own data; ``EncodeConfig.fit_to = "others"`` passes the other participants' mean); scores
    are always against the participant's own held-out rows.
    """
    from brainviz.data.preprocess import folds as make_folds
    from brainviz.data.splits import inner_folds
    from brainviz.evaluation.encoding import (
        banded_ridge_fold, himalaya_backend, pearson_r, ridge_fold, variance_explained,
    )

    pre = config.preprocess_config()
    folds = folds if folds is not None else make_folds(examples, pre)
    y = np.asarray(examples.data, dtype=np.float32)
    y_fit = y if fit_targets is None else np.asarray(fit_targets, dtype=np.float32)
    if y_fit.shape != y.shape:
        raise ValueError(f"fit_targets has shape {y_fit.shape}, the participant's data {y.shape}")
    layers = list(lm)
    n_f, n_u, n_l = len(folds), y.shape[1], len(layers)
    scores = {m: {"r": np.full((n_f, n_u), np.nan), "r2": np.full((n_f, n_u), np.nan)}
              for m in ("lm", "joint", *BASELINES)}
    layer_scores = {"r": np.full((n_l, n_f, n_u), np.nan), "r2": np.full((n_l, n_f, n_u), np.nan)}
    best = np.zeros((n_f, n_u), dtype=int)
    alphas = np.zeros((n_f, n_u))
    alist = tuple(config.alphas)

    def score(key_store, i, pred, yt):
        key_store["r"][i] = pearson_r(pred, yt)
        key_store["r2"][i] = variance_explained(pred, yt)

    from threadpoolctl import threadpool_limits

    with himalaya_backend(config.backend), threadpool_limits(config.blas_threads):
        for i, fold in enumerate(folds):
            tr, te = fold.train, fold.test
            inner = inner_folds(examples.runs[tr], pre.buffer, tr_index=examples.tr_index[tr],
                                n_blocks=config.inner_blocks)
            yt = y[te]
            inner_scores = np.zeros((n_l, n_u))
            preds = np.zeros((n_l, len(te), n_u), dtype=np.float32)
            fits = {}
            for li, layer in enumerate(layers):
                fit = ridge_fold(lm[layer][tr], y_fit[tr], lm[layer][te], inner, alphas=alist)
                fits[layer] = fit
                inner_scores[li] = fit.inner_score
                preds[li] = fit.prediction
                layer_scores["r"][li, i] = pearson_r(fit.prediction, yt)
                layer_scores["r2"][li, i] = variance_explained(fit.prediction, yt)
            choice = np.argmax(inner_scores, axis=0)
            best[i] = np.asarray(layers)[choice]
            pred_lm = preds[choice, :, np.arange(n_u)].T  # (n_test, n_units): each unit's chosen layer
            alphas[i] = np.stack([fits[layer].alphas for layer in layers])[choice, np.arange(n_u)]
            score(scores["lm"], i, pred_lm, yt)
            for name in BASELINES:
                b = baselines[name]
                fit = ridge_fold(b[tr], y_fit[tr], b[te], inner, alphas=alist)
                score(scores[name], i, fit.prediction, yt)
            joint = np.zeros((len(te), n_u), dtype=np.float32)
            low = baselines["lowlevel"]
            for li in np.unique(choice):
                cols = np.flatnonzero(choice == li)
                layer = layers[li]
                fit = banded_ridge_fold([lm[layer][tr], low[tr]], y_fit[tr][:, cols], [lm[layer][te], low[te]], inner,
                                        n_ratios=config.n_ratios)
                joint[:, cols] = fit.prediction
            score(scores["joint"], i, joint, yt)
            if progress:
                progress(f"{examples.participant}: fold {fold.name} ({i + 1}/{n_f}): mean r LM "
                         f"{np.nanmean(scores['lm']['r'][i]):.3f}, low-level {np.nanmean(scores['lowlevel']['r'][i]):.3f}")
    return ParticipantEncoding(examples.participant, [f.name for f in folds], len(y), scores, layer_scores, best, alphas)


def fold_ceilings(examples: dict, folds) -> dict[str, np.ndarray]:
    """Inter-participant noise ceiling per participant (n_units,), scored per fold like the models.

    Needs >= 2 participants with the same rows (same ``tr_index``); otherwise the common rows
    are used without folds, and with a single participant the ceiling is NaN.
    """
    from brainviz.evaluation.encoding import inter_participant_ceiling

    pids = list(examples)
    n_u = examples[pids[0]].data.shape[1]
    if len(pids) < 2:
        return {p: np.full(n_u, np.nan) for p in pids}
    same = all(np.array_equal(examples[p].tr_index, examples[pids[0]].tr_index) for p in pids)
    if same:
        y = np.stack([np.asarray(examples[p].data, dtype=np.float64) for p in pids])
        per_fold = np.stack([inter_participant_ceiling(y[:, f.test]) for f in folds])  # (n_folds, n_p, n_u)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            c = np.nanmean(per_fold, axis=0)
    else:
        common = examples[pids[0]].tr_index
        for p in pids[1:]:
            common = np.intersect1d(common, examples[p].tr_index)
        y = np.stack([np.asarray(examples[p].data)[np.searchsorted(examples[p].tr_index, common)] for p in pids])
        c = inter_participant_ceiling(y)
    return {p: c[i] for i, p in enumerate(pids)}


def _others_means(examples: dict, dataset) -> dict[str, np.ndarray]:
    """For each participant, the mean of the other participants' preprocessed data (same rows).

    Raises a :class:`~brainviz.data.dataset.DatasetError` when fewer than 2 participants are
    encoded or their kept TRs / units differ (the group model needs one stimulus timeline and
    one space)."""
    from brainviz.data.dataset import DatasetError

    pids = list(examples)
    if len(pids) < 2:
        raise DatasetError("fit_to='others' needs at least 2 participants", file=dataset.path, field="participants")
    first = examples[pids[0]]
    for p in pids[1:]:
        e = examples[p]
        if not np.array_equal(e.tr_index, first.tr_index) or e.data.shape[1] != first.data.shape[1]:
            raise DatasetError(f"fit_to='others' needs every participant on the same TRs and units; {p!r} differs "
                               f"from {pids[0]!r} (use fit_to='participant')", file=dataset.path, field="participants")
    total = np.sum([np.asarray(examples[p].data, dtype=np.float64) for p in pids], axis=0)
    n = len(pids)
    return {p: ((total - np.asarray(examples[p].data, dtype=np.float64)) / (n - 1)).astype(np.float32) for p in pids}


def unit_names(dataset) -> list[str]:
    """ROI names for ``rois`` spaces, unit indices otherwise."""
    rec = dataset.fmri_of(dataset.participants[0])
    if rec.space.kind == "rois" and rec.space.roi_names:
        return list(rec.space.roi_names)
    return [str(i) for i in range(rec.n_units)]


def encode(config: EncodeConfig, *, dataset=None, cache=None, progress: Progress = None) -> EncodeResult:
    """Run the whole analysis (features, folds, models, ceilings) for every participant.

    Parameters
    ----------
    config : EncodeConfig
    dataset : Dataset, optional
        Already loaded dataset (default: ``load_dataset(config.dataset)``).
    cache : Cache, False or None
        Feature cache (``None`` = default folder, ``False`` = off).
    progress : callable(str), optional
    """
    from brainviz.data.dataset import load_dataset
    from brainviz.data.preprocess import fmri_examples, folds as make_folds
    from brainviz.data.splits import describe_cv
    from brainviz.features.tr import baseline_features, lm_features

    ds = dataset if dataset is not None else load_dataset(config.dataset)
    pre = config.preprocess_config()
    feat = config.feature_config()
    if "window" not in config.features:  # window features read the preprocessing window
        feat = feat.replace(window=pre.window)
    pids = list(config.participants) or ds.participants
    if not pids:
        from brainviz.data.dataset import DatasetError

        raise DatasetError("the dataset has no fMRI participants to encode", file=ds.path, field="participants")
    examples = {p: fmri_examples(ds, p, pre) for p in pids}
    folds = {p: make_folds(examples[p], pre) for p in pids}
    others = _others_means(examples, ds) if config.fit_to == "others" else {}
    results = {}
    layers: list[int] = []
    for p in pids:
        lm = lm_features(ds, examples[p], feat, cache=cache, progress=progress)
        layers = list(lm)
        base = baseline_features(ds, examples[p], feat, cache=cache)
        results[p] = encode_participant(ds, examples[p], lm, base, config, folds[p], progress,
                                        fit_targets=others.get(p))
    ceilings = fold_ceilings(examples, folds[pids[0]])
    for p in pids:
        results[p].ceiling = ceilings[p]
    first = examples[pids[0]]
    meta = {
        "dataset": str(ds.path) if ds.path else ds.name,
        "dataset_name": ds.name,
        "simulated": bool(ds.simulated),
        "space": ds.fmri_of(pids[0]).space.kind,
        "model": feat.model,
        "cv": describe_cv(pre.cv, first.runs, pre.buffer),
        "folds": [f.name for f in folds[pids[0]]],
        "n_rows": {p: int(len(examples[p])) for p in pids},
        "fit_to": config.fit_to,
    }
    return EncodeResult(config, results, unit_names(ds), layers, meta)
