"""Speech-model evaluation: data-efficiency curves and low-level residual alignment.

Both use ridge regressions from features at the kept TRs (:mod:`brainviz.features.speech`) to
a participant's preprocessed fMRI, trained on the training runs and scored on one held-out run
(Pearson r per unit), with the penalty chosen per unit from :data:`ALPHAS` on the last 20 % of
the training TRs (a contiguous block, never shuffled; the ridge is then refitted on all of
them). Features are z-scored with training rows only.

* :func:`data_efficiency` — score as a function of the minutes of the (new) participant's
  training data used (the first ``m`` minutes of its training runs, in time order), for
  several feature sets (e.g. a brain-tuned and the pretrained encoder). :func:`data_ratio`
  reads off "how much less data for the same score": for each amount of data given to the
  better model, the amount the reference needs to reach the same score (linear interpolation
  on its running-maximum curve), and their ratio.
* :func:`residual_alignment` — the alignment left after removing low-level speech features
  from a model's features (Moussa, Klakow & Toneva 2025): the low-level bands are regressed
  out of every feature column (least squares on training rows, applied to both), then the
  residual features are scored like the raw ones. The low-level bands alone are scored too.
* :func:`group_statistics` — per unit group (ROI): means over participants and one-sided
  random-effects t-tests across participants (score > 0; raw − residual > 0).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from brainviz.evaluation.encoding import pearson_r

ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))
VALIDATION_SHARE = 0.2


def _zscore(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd < 1e-8] = 1.0
    return [(a - mu) / sd for a in (train, *others)]


def _ridge_predictions(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Predictions ``(n_alphas, n_new, units)`` of ridge fits x -> y (centred y) for each alpha."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ (y - y.mean(axis=0))
    proj = x_new @ vt.T
    return np.stack([proj @ ((s / (s**2 + a))[:, None] * uty) + y.mean(axis=0) for a in alphas])


def ridge_heldout_r(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    alphas: Sequence[float] = ALPHAS) -> np.ndarray:
    """Held-out Pearson r per unit of a ridge x -> y, penalty per unit chosen on the last
    :data:`VALIDATION_SHARE` of the training rows (contiguous)."""
    x_train, x_test = _zscore(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    y_train = np.asarray(y_train, np.float64)
    n = len(x_train)
    n_val = max(2, int(round(n * VALIDATION_SHARE)))
    if n - n_val < 2:
        raise ValueError(f"too few training rows ({n}) for a ridge with a validation block")
    inner = _ridge_predictions(x_train[: n - n_val], y_train[: n - n_val], x_train[n - n_val :], alphas)
    val_r = np.nan_to_num(pearson_r(inner, y_train[n - n_val :], axis=-2), nan=-np.inf)  # (alphas, units)
    best = np.argmax(val_r, axis=0)
    preds = _ridge_predictions(x_train, y_train, x_test, alphas)
    chosen = np.take_along_axis(preds, best[None, None, :], axis=0)[0]
    return pearson_r(chosen, y_test)


def _split(corpus, participant: str, test_run: str):
    t = corpus.fmri[participant]
    test = t.runs == test_run
    if not test.any():
        raise ValueError(f"participant {participant!r} has no kept TRs in held-out run {test_run!r}")
    return t, np.flatnonzero(~test), np.flatnonzero(test)


def data_efficiency(features: Mapping[str, np.ndarray], corpus, participants: Sequence[str], test_run: str,
                    minutes: Sequence[float], tr: float, units: np.ndarray | None = None,
                    alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """Held-out score vs minutes of training data, per feature set and participant.

    Parameters
    ----------
    features : {name: (n_seq, F) array}
        Features of every corpus sequence (e.g. ``SpeechFeatures.layers[layer]``).
    corpus : Corpus
        From :func:`brainviz.features.speech.audio_corpus` (targets, runs, sequences).
    minutes : amounts of training data; an amount above what the training runs hold uses all
        of it (``n_train_trs`` says how many TRs were used).
    units : optional unit indices (columns of the corpus targets) to score.

    Returns
    -------
    DataFrame with ``model, participant, minutes, n_train_trs, mean_r, median_r``.
    """
    rows = []
    for pid in participants:
        t, train, test = _split(corpus, pid, test_run)
        y = t.real if units is None else t.real[:, units]
        for m in minutes:
            n = min(len(train), max(4, int(round(float(m) * 60.0 / tr))))
            for name, f in features.items():
                x = np.asarray(f)[t.seq]
                r = ridge_heldout_r(x[train[:n]], y[train[:n]], x[test], y[test], alphas)
                rows.append({"model": name, "participant": pid, "minutes": float(m), "n_train_trs": int(n),
                             "mean_r": float(np.nanmean(r)), "median_r": float(np.nanmedian(r))})
    return pd.DataFrame(rows)


def data_ratio(curves: pd.DataFrame, model: str, reference: str, score: str = "mean_r") -> pd.DataFrame:
    """For each amount of data given to ``model``, the minutes ``reference`` needs for the same
    (participant-averaged) score and their ratio (> 1: ``model`` needs less data); NaN where
    the reference never gets there within the measured range."""
    mean = curves.groupby(["model", "minutes"], as_index=False)[score].mean()
    a = mean[mean["model"] == model].sort_values("minutes")
    b = mean[mean["model"] == reference].sort_values("minutes")
    bm, bs = b["minutes"].to_numpy(float), np.maximum.accumulate(b[score].to_numpy(float))
    out = []
    for m, s in zip(a["minutes"], a[score]):
        if s <= bs[0]:
            need = bm[0]  # reached with the reference's smallest amount (an upper bound)
        elif s > bs[-1]:
            need = np.nan
        else:
            k = int(np.searchsorted(bs, s))
            lo, hi = bs[k - 1], bs[k]
            need = bm[k - 1] + (bm[k] - bm[k - 1]) * ((s - lo) / (hi - lo) if hi > lo else 0.0)
        out.append({"minutes": float(m), "score": float(s), "reference_minutes": float(need),
                    "ratio": float(need / m) if np.isfinite(need) and m > 0 else np.nan})
    return pd.DataFrame(out)


def residualize(features: np.ndarray, lowlevel: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``features`` minus their least-squares prediction from ``lowlevel`` (+ intercept), the
    map fitted on the ``train`` rows only."""
    f = np.asarray(features, np.float64)
    z = np.asarray(lowlevel, np.float64)
    mu, sd = z[train].mean(0), z[train].std(0)
    sd[sd < 1e-8] = 1.0
    z = np.c_[(z - mu) / sd, np.ones(len(z))]
    coef, *_ = np.linalg.lstsq(z[train], f[train], rcond=None)
    return f - z @ coef


def residual_alignment(features: np.ndarray, lowlevel: np.ndarray, corpus, participants: Sequence[str], test_run: str,
                       units: np.ndarray | None = None, alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """Per participant and unit: held-out r of the raw features, of the features with the
    low-level bands regressed out, and of the low-level bands alone.

    Returns a DataFrame ``participant, unit, r_raw, r_residual, r_lowlevel``.
    """
    out = []
    for pid in participants:
        t, train, test = _split(corpus, pid, test_run)
        y = t.real if units is None else t.real[:, units]
        x = np.asarray(features)[t.seq]
        z = np.asarray(lowlevel)[t.seq]
        res = residualize(x, z, train)
        scores = {
            "r_raw": ridge_heldout_r(x[train], y[train], x[test], y[test], alphas),
            "r_residual": ridge_heldout_r(res[train], y[train], res[test], y[test], alphas),
            "r_lowlevel": ridge_heldout_r(z[train], y[train], z[test], y[test], alphas),
        }
        unit_ids = np.arange(y.shape[1]) if units is None else np.asarray(units)
        out.append(pd.DataFrame({"participant": pid, "unit": unit_ids, **scores}))
    return pd.concat(out, ignore_index=True)


def group_statistics(result: pd.DataFrame, unit_groups: Mapping[str, np.ndarray] | np.ndarray,
                     columns: Sequence[str] = ("r_raw", "r_residual", "r_lowlevel")) -> pd.DataFrame:
    """Per unit group (ROI): participant-level means and random-effects tests across participants.

    Parameters
    ----------
    result : DataFrame with ``participant, unit`` and the score ``columns`` (e.g. from
        :func:`residual_alignment`).
    unit_groups : ``{group: unit ids}`` or one group label per row of ``result``.

    Returns
    -------
    DataFrame, one row per group: ``group, n_participants, n_units``, for every column its mean
    over participants (of the per-participant mean over the group's units) and SE, the one-sided
    one-sample t-test of that mean > 0 (``t_<col>``, ``p_<col>``), and for ``r_raw`` /
    ``r_residual`` the paired test of ``raw - residual > 0`` (the alignment that low-level
    features account for: ``t_lowlevel_share``, ``p_lowlevel_share``).
    """
    from scipy import stats

    df = result.copy()
    if isinstance(unit_groups, Mapping):
        label = pd.Series(index=df.index, dtype=object)
        for g, ids in unit_groups.items():
            label[df["unit"].isin(np.asarray(ids))] = g
        df["group"] = label
        df = df.dropna(subset=["group"])
    else:
        df["group"] = np.asarray(unit_groups)
    rows = []
    for g, sub in df.groupby("group", sort=False):
        per = sub.groupby("participant")[list(columns)].mean()
        n = len(per)
        row = {"group": g, "n_participants": n, "n_units": int(sub["unit"].nunique())}
        for col in columns:
            v = per[col].to_numpy(float)
            row[col] = float(v.mean())
            row[f"se_{col}"] = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
            if n > 1:
                t = stats.ttest_1samp(v, 0.0, alternative="greater")
                row[f"t_{col}"], row[f"p_{col}"] = float(t.statistic), float(t.pvalue)
        if {"r_raw", "r_residual"} <= set(columns) and n > 1:
            t = stats.ttest_1samp(per["r_raw"].to_numpy(float) - per["r_residual"].to_numpy(float), 0.0,
                                  alternative="greater")
            row["t_lowlevel_share"], row["p_lowlevel_share"] = float(t.statistic), float(t.pvalue)
        rows.append(row)
    return pd.DataFrame(rows)
