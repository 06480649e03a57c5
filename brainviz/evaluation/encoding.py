"""Encoding-model metrics: ridge regression, correlation, variance explained, noise ceilings.

* :func:`ridge_encoding` - himalaya ``RidgeCV`` (one alpha per unit, chosen by inner
  leave-one-run-out cross-validation) fitted leave-one-run-out from a feature matrix
  (TRs x features) to responses (TRs x units);
* :func:`pearson_r` - correlation per unit;
* :func:`variance_explained` - ``1 - MSE / Var(target)`` per unit (the coefficient of
  determination R^2 of the held-out predictions; it is negative when the predictions are worse
  than predicting the mean). The 2019 reference code used a different, incorrect formula;
* :func:`inter_participant_ceiling` - noise ceiling without repeats: correlation of each
  participant with the mean of the others (leave-one-participant-out);
* :func:`repeat_ceiling` - noise ceiling with repeated presentations: ``CC_max`` of Schoppe
  et al. (2016), with :func:`cc_norm` the matching normalised correlation;
* :func:`normalize_by_ceiling` - ceiling-normalised scores.

References
----------
Schoppe O, Harper NS, Willmore BDB, King AJ, Schnupp JWH (2016). Measuring the performance of
neural models. Front. Comput. Neurosci. 10:10.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Sequence

import numpy as np

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


# --------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------


def pearson_r(predictions: np.ndarray, targets: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson correlation between predictions and targets along ``axis`` (rows), per unit.

    Arrays broadcast against each other (e.g. predictions (n_perm, n_rows, n_units) with
    ``axis=-2`` against targets (n_rows, n_units)). Units with zero variance or non-finite
    values give NaN, silently. Computed in float64.
    """
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    x = x - x.mean(axis=axis, keepdims=True)
    y = y - y.mean(axis=axis, keepdims=True)
    sxy = (x * y).sum(axis=axis)
    sxx = (x * x).sum(axis=axis)
    syy = (y * y).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.sqrt(sxx * syy)
        r = sxy / denom
    return np.where(np.isfinite(r) & (denom > 0), np.clip(r, -1.0, 1.0), np.nan)


def variance_explained(predictions: np.ndarray, targets: np.ndarray, axis: int = 0) -> np.ndarray:
    """Proportion of variance explained, ``1 - MSE / Var(target)``, per unit.

    ``MSE = mean((targets - predictions)**2)`` and ``Var`` is the population variance
    (``ddof=0``) of the targets over the same rows, so a perfect prediction gives 1, the
    targets' mean gives 0 and worse predictions give negative values. Constant targets give
    NaN.
    """
    p = np.asarray(predictions, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    mse = np.mean((t - p) ** 2, axis=axis)
    var = np.var(t, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - mse / var
    return np.where(np.isfinite(out) & (var > 0), out, np.nan)


# --------------------------------------------------------------------------------------
# ridge
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class EncodingResult:
    """Leave-one-run-out ridge encoding model.

    Attributes
    ----------
    predictions : float32 array (n_rows, n_units)
        Out-of-fold predictions (each row predicted by the model not trained on its run).
    r, pove : float arrays (n_units,)
        Correlation and variance explained of all out-of-fold predictions together.
    r_by_run, pove_by_run : float arrays (n_runs, n_units)
        The same within each held-out run.
    alphas : float array (n_runs, n_units)
        Ridge penalty chosen for every unit in every fold.
    runs : str array (n_runs,)
        Held-out run of each fold.
    """

    predictions: np.ndarray
    r: np.ndarray
    pove: np.ndarray
    r_by_run: np.ndarray
    pove_by_run: np.ndarray
    alphas: np.ndarray
    runs: np.ndarray


@contextlib.contextmanager
def himalaya_backend(backend: str = "numpy") -> Iterator[object]:
    """Use a himalaya backend inside a ``with`` block, restoring the previous one after.

    ``backend`` is ``"numpy"`` or ``"torch"`` (``"torch_cuda"`` when a GPU is present);
    any other himalaya backend name is passed through.
    """
    from himalaya.backend import get_backend, set_backend

    name = backend
    if backend == "torch":
        from brainviz.backend import default_device

        name = "torch_cuda" if default_device() == "cuda" else "torch"
    previous = get_backend().name
    module = set_backend(name, on_error="raise")
    try:
        yield module
    finally:
        set_backend(previous, on_error="warn")


def ridge_encoding(
    features: np.ndarray,
    responses: np.ndarray,
    runs: np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    backend: str = "numpy",
    standardize: bool = True,
    n_targets_batch: int | None = None,
) -> EncodingResult:
    """Leave-one-run-out ridge regression from features to responses.

    For every run: fit :class:`himalaya.ridge.RidgeCV` (intercept, one alpha per unit chosen
    by leave-one-run-out cross-validation over the training runs, or 5-fold when there is a
    single training run) on the other runs and predict the held-out run.

    Parameters
    ----------
    features : float array (n_rows, n_features)
        Stimulus features per TR (e.g. language-model embeddings, already delayed).
    responses : float array (n_rows, n_units)
    runs : array (n_rows,)
        Run label of every row; at least two runs.
    alphas : sequence of float
        Candidate penalties.
    backend : {"numpy", "torch"}
        himalaya backend (``"torch"`` uses the GPU when present).
    standardize : bool
        z-score features with the training rows' mean and standard deviation in each fold.
    n_targets_batch : int, optional
        Units per batch inside himalaya (memory bound).

    Returns
    -------
    EncodingResult
    """
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import KFold, PredefinedSplit

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(responses, dtype=np.float64)
    runs = np.asarray(runs).astype(str)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or runs.shape != (y.shape[0],):
        raise ValueError(
            f"ridge_encoding: features {x.shape}, responses {y.shape} and runs {runs.shape} must share the row axis"
        )
    labels = list(dict.fromkeys(runs.tolist()))
    if len(labels) < 2:
        raise ValueError(f"ridge_encoding: leave-one-run-out needs at least 2 runs, got {labels}")
    preds = np.zeros(y.shape, dtype=np.float64)
    chosen = np.zeros((len(labels), y.shape[1]))
    solver_params = {"n_targets_batch": n_targets_batch} if n_targets_batch else None
    with himalaya_backend(backend) as hb:
        for i, label in enumerate(labels):
            test = runs == label
            train = ~test
            xtr, xte = x[train], x[test]
            if standardize:
                mu = xtr.mean(axis=0)
                sd = xtr.std(axis=0)
                sd[sd == 0] = 1.0
                xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
            inner_runs = runs[train]
            inner_labels = list(dict.fromkeys(inner_runs.tolist()))
            if len(inner_labels) >= 2:
                cv = PredefinedSplit(np.array([inner_labels.index(r) for r in inner_runs]))
            else:
                cv = KFold(n_splits=min(5, int(train.sum())))
            model = RidgeCV(alphas=np.asarray(alphas, dtype=np.float64), fit_intercept=True, cv=cv,
                            solver_params=solver_params)
            model.fit(xtr, y[train])
            preds[test] = np.asarray(hb.to_numpy(model.predict(xte)), dtype=np.float64)
            chosen[i] = np.asarray(hb.to_numpy(model.best_alphas_), dtype=np.float64)
    r_by_run = np.stack([pearson_r(preds[runs == lab], y[runs == lab]) for lab in labels])
    pove_by_run = np.stack([variance_explained(preds[runs == lab], y[runs == lab]) for lab in labels])
    return EncodingResult(
        predictions=preds.astype(np.float32), r=pearson_r(preds, y), pove=variance_explained(preds, y),
        r_by_run=r_by_run, pove_by_run=pove_by_run, alphas=chosen, runs=np.asarray(labels, dtype=str),
    )


# --------------------------------------------------------------------------------------
# noise ceilings
# --------------------------------------------------------------------------------------


def inter_participant_ceiling(responses: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Leave-one-participant-out noise ceiling (no repeated presentations needed).

    Parameters
    ----------
    responses : float array (n_participants, n_rows, n_units)
        Responses of every participant to the same rows (same stimulus, same TR timing) in a
        common space (e.g. fsaverage5 vertices).

    Returns
    -------
    ceiling : float array (n_participants, n_units)
        Pearson correlation of each participant with the mean of the other participants.
        Average over axis 0 for a group ceiling.
    """
    y = np.asarray(responses, dtype=np.float64)
    if y.ndim != 3 or y.shape[0] < 2:
        raise ValueError(f"inter_participant_ceiling: need (n_participants >= 2, n_rows, n_units), got {y.shape}")
    total = y.sum(axis=0)
    n = y.shape[0]
    return np.stack([pearson_r(y[i], (total - y[i]) / (n - 1)) for i in range(n)])


def signal_power(repeats: np.ndarray) -> np.ndarray:
    """Signal power per unit (Sahani & Linden 2003), repeats on axis 0, rows on axis 1.

    ``SP = (N Var(mean_n y_n) - mean_n Var(y_n)) / (N - 1)`` with population variances over
    rows and ``N`` repeats.
    """
    y = np.asarray(repeats, dtype=np.float64)
    if y.ndim < 2 or y.shape[0] < 2:
        raise ValueError(f"signal_power: need at least 2 repeats on axis 0, got shape {y.shape}")
    n = y.shape[0]
    var_mean = np.var(y.mean(axis=0), axis=0)
    mean_var = np.mean(np.var(y, axis=1), axis=0)
    return (n * var_mean - mean_var) / (n - 1)


def repeat_ceiling(repeats: np.ndarray) -> np.ndarray:
    """``CC_max`` of Schoppe et al. (2016): the highest correlation a model can reach with the
    mean response over repeats.

    ``CC_max = sqrt(SP / Var(mean_n y_n))`` with :func:`signal_power` ``SP``; e.g. with
    ``y_n = s + noise_n`` it tends to ``sqrt(Var s / (Var s + Var noise / N))``.

    Parameters
    ----------
    repeats : float array (n_repeats, n_rows, n_units)
        Responses to ``n_repeats`` presentations of the same stimulus.

    Returns
    -------
    cc_max : float array (n_units,)
        NaN where the signal power is not positive.
    """
    y = np.asarray(repeats, dtype=np.float64)
    sp = signal_power(y)
    var_mean = np.var(y.mean(axis=0), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cc = np.sqrt(sp / var_mean)
    return np.where((sp > 0) & (var_mean > 0), np.minimum(cc, 1.0), np.nan)


def cc_norm(predictions: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    """Normalised correlation of Schoppe et al. (2016): ``Cov(pred, mean y) / sqrt(Var(pred) SP)``.

    Equals ``pearson_r(pred, mean y) / CC_max``.
    """
    y = np.asarray(repeats, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    ybar = y.mean(axis=0)
    cov = np.mean((p - p.mean(axis=0)) * (ybar - ybar.mean(axis=0)), axis=0)
    sp = signal_power(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cov / np.sqrt(np.var(p, axis=0) * sp)
    return np.where(np.isfinite(out) & (sp > 0), out, np.nan)


def noise_ceiling(responses: np.ndarray, *, repeats: bool = False) -> np.ndarray:
    """Noise ceiling (a correlation) per unit.

    Parameters
    ----------
    responses : float array (n, n_rows, n_units)
        ``n`` repeated presentations of one participant (``repeats=True``, Schoppe ``CC_max``)
        or ``n`` participants (``repeats=False``, leave-one-participant-out inter-participant
        correlation averaged over participants).
    """
    if repeats:
        return repeat_ceiling(responses)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(inter_participant_ceiling(responses), axis=0)


def normalize_by_ceiling(
    scores: np.ndarray, ceiling: np.ndarray, *, kind: str = "r", min_ceiling: float = 0.0
) -> np.ndarray:
    """Ceiling-normalised scores.

    Parameters
    ----------
    scores : float array (..., n_units)
        Correlations (``kind="r"``) or variance explained (``kind="pove"``).
    ceiling : float array (n_units,)
        A noise ceiling expressed as a correlation.
    kind : {"r", "pove"}
        ``r / ceiling`` or ``pove / ceiling**2`` (the explainable variance is ``ceiling**2``).
    min_ceiling : float
        Units whose ceiling is not above this give NaN (avoids dividing by noise).
    """
    if kind not in ("r", "pove"):
        raise ValueError(f"kind: expected 'r' or 'pove', got {kind!r}")
    c = np.asarray(ceiling, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    denom = c if kind == "r" else c**2
    ok = np.isfinite(c) & (c > max(min_ceiling, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = s / denom
    return np.where(ok, out, np.nan)


# --------------------------------------------------------------------------------------
# blocked / run-wise cross-validated ridge and banded ridge (encode)
# --------------------------------------------------------------------------------------

#: Default penalties of ``encode``: wide enough for ~1,500 z-scored delayed LM features on a few
#: hundred TRs (best alphas there are typically 1e2-1e5).
ENCODE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 19))


def zscore_train(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score columns of ``train`` and ``test`` with the training rows' mean and standard deviation.

    Constant training columns are only centred. Returns float32 copies.
    """
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return ((train - mu) / sd).astype(np.float32), ((test - mu) / sd).astype(np.float32)


@dataclasses.dataclass
class FoldFit:
    """Held-out predictions of one model in one fold.

    ``prediction`` (n_test, n_units); ``inner_score`` (n_units,) the best inner-CV score
    (negative squared error, comparable across models fitted on the same rows); ``alphas``
    (n_units,) chosen penalties; ``deltas`` (n_bands, n_units) log band weights (banded only).
    """

    prediction: np.ndarray
    inner_score: np.ndarray
    alphas: np.ndarray
    deltas: np.ndarray | None = None


def ridge_fold(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    inner_cv: list,
    *,
    alphas: Sequence[float] = ENCODE_ALPHAS,
) -> FoldFit:
    """Ridge (intercept, one alpha per unit chosen on ``inner_cv``) on one fold, with himalaya.

    Features are z-scored with the training rows' statistics. With more features than training
    rows (delayed LM layers) the same model is solved in its kernel form,
    ``KernelRidgeCV(kernel="linear")``, which is much cheaper; otherwise ``RidgeCV``. Call
    inside a :func:`himalaya_backend` block.
    """
    from himalaya.backend import get_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV

    hb = get_backend()
    xtr, xte = zscore_train(np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64))
    a = np.asarray(alphas, dtype=np.float64)
    if xtr.shape[1] > xtr.shape[0]:
        if hb.name == "numpy":  # KernelRidgeCV's search in brainviz's faster CPU loop (_kernel_search)
            fit = _search_fold((xtr @ xtr.T)[None], y_train, (xte @ xtr.T)[None], np.ones((1, 1)), a, inner_cv)
            return dataclasses.replace(fit, deltas=None)
        model = KernelRidgeCV(alphas=a, kernel="linear", fit_intercept=True, cv=inner_cv, warn=False)
    else:
        model = RidgeCV(alphas=a, fit_intercept=True, cv=inner_cv)
    model.fit(xtr, np.asarray(y_train, dtype=np.float32))
    return FoldFit(
        prediction=np.asarray(hb.to_numpy(model.predict(xte)), dtype=np.float32),
        inner_score=np.asarray(hb.to_numpy(model.cv_scores_), dtype=np.float64).max(axis=0).reshape(-1)
        if np.ndim(hb.to_numpy(model.cv_scores_)) == 2 else np.asarray(hb.to_numpy(model.cv_scores_), dtype=np.float64),
        alphas=np.asarray(hb.to_numpy(model.best_alphas_), dtype=np.float64),
    )


#: Penalties of the banded model, whose kernels are scaled by 1 / n_features (diagonal ~ 1).
BANDED_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def _dirichlet_gammas(n_kernels: int, n_iter: int) -> np.ndarray:
    """The kernel weightings himalaya's random search tries (seeded with 0, first = equal)."""
    from himalaya.kernel_ridge._random_search import generate_dirichlet_samples

    gammas = np.asarray(generate_dirichlet_samples(n_samples=n_iter, n_kernels=n_kernels,
                                                   concentration=[0.1, 1.0], random_state=0), dtype=np.float64)
    gammas[0] = 1.0 / n_kernels
    return gammas


def _search_fold(k_train: np.ndarray, y_train: np.ndarray, k_test: np.ndarray, gammas: np.ndarray,
                 alphas: Sequence[float], inner_cv: list) -> FoldFit:
    """Weighted-kernel ridge search on one fold with :func:`._kernel_search.search_weighted_kernels`."""
    from brainviz.evaluation._kernel_search import search_weighted_kernels

    res = search_weighted_kernels(k_train, y_train, gammas, alphas, inner_cv)
    return FoldFit(
        prediction=res.predict(k_test).astype(np.float32),
        inner_score=res.cv_scores.max(axis=0).astype(np.float64),
        alphas=res.alphas,
        deltas=res.deltas,
    )


def band_weight_grid(n_ratios: int = 9, span: float = 4.0) -> np.ndarray:
    """Explicit weights ``(n_ratios, 2)`` of two bands for himalaya's random search (ratios
    ``10**linspace(-span, span)``), all positive, summing to 1."""
    w = np.logspace(-span, span, int(n_ratios))
    return np.c_[w / (1 + w), 1 / (1 + w)]


def banded_ridge_fold(
    bands_train: Sequence[np.ndarray],
    y_train: np.ndarray,
    bands_test: Sequence[np.ndarray],
    inner_cv: list,
    *,
    alphas: Sequence[float] = BANDED_ALPHAS,
    n_ratios: int = 9,
) -> FoldFit:
    """Banded ridge of several feature bands on one fold: himalaya ``MultipleKernelRidgeCV``
    on one linear kernel per band (equivalent to ``BandedRidgeCV``, cheaper when bands have
    more features than there are training rows).

    Each band is z-scored with the training rows' statistics and its kernel divided by its
    number of features, so the extreme band weights (1e-4 : 1) reach the one-band models. Two bands: the band-weight
    search is an explicit grid of ``n_ratios`` ratios (:func:`band_weight_grid`) crossed with
    ``alphas``; more bands: 30 Dirichlet draws (himalaya's random search, seeded).
    """
    from himalaya.backend import get_backend
    from himalaya.kernel_ridge import MultipleKernelRidgeCV

    hb = get_backend()
    k_train, k_test = [], []
    for a, b in zip(bands_train, bands_test):
        xa, xb = zscore_train(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        p = max(xa.shape[1], 1)  # each kernel / n_features: a band weight of 1 means equal footing
        k_train.append(xa @ xa.T / p)
        k_test.append(xb @ xa.T / p)
    n_iter = band_weight_grid(n_ratios) if len(k_train) == 2 else 30
    if hb.name == "numpy":  # himalaya's search, ~3x faster on CPU (see _kernel_search)
        gammas = n_iter if len(k_train) == 2 else _dirichlet_gammas(len(k_train), n_iter)
        return _search_fold(np.stack(k_train), y_train, np.stack(k_test), gammas, alphas, inner_cv)
    model = MultipleKernelRidgeCV(
        kernels="precomputed", fit_intercept=True, cv=inner_cv, random_state=0,
        solver_params=dict(n_iter=n_iter, alphas=np.asarray(alphas, dtype=np.float64), progress_bar=False),
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(np.stack(k_train).astype(np.float32), np.asarray(y_train, dtype=np.float32))
    scores = np.asarray(hb.to_numpy(model.cv_scores_), dtype=np.float64)
    return FoldFit(
        prediction=np.asarray(hb.to_numpy(model.predict(np.stack(k_test).astype(np.float32))), dtype=np.float32),
        inner_score=scores.max(axis=0) if scores.ndim == 2 else scores.reshape(-1),
        alphas=np.asarray(hb.to_numpy(model.best_alphas_), dtype=np.float64),
        deltas=np.asarray(hb.to_numpy(model.deltas_), dtype=np.float64),
    )
