"""Denoised encoder targets: what the encoder learns from in a multi-participant full stage.

With a few hundred training windows, an encoder fine-tuned on every unit's (mostly noise)
target fits the noise: held-out scores fall while the training loss keeps falling
(docs/tuning.md, "measured bounds"). The ``pcs:K`` encoder targets keep the part of the
targets that participants share and that is low-rank:

1. the most reliable units: leave-one-participant-out inter-participant correlation on the
   fold's training windows only (top ``fraction``; no held-out data is looked at);
2. the top ``K`` principal components of the participants' weighted mean target over those
   units (training windows), scaled to unit variance;
3. a fixed linear read-out from the *frozen* encoder's pooled features to the components
   (himalaya ``RidgeCV``, inner leave-one-run-out over the training runs), so the encoder is
   pushed to carry what the read-out expects; fixed (not trained) so that a resumed job
   computes exactly the same read-out.

The heads that predict every unit are then refitted from zero on the tuned encoder's
features (the ``refit`` stage), exactly as vanilla fits them on the frozen features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE_ALPHAS = np.logspace(-1, 5, 13)


@dataclass
class EncoderTargets:
    """Low-rank denoised targets of one fit and the fixed read-out the encoder is trained through."""

    scores: np.ndarray      # (n_seq, K) float32, unit variance over the training windows
    weight: np.ndarray      # (H, K) float32: read-out of standardized pooled features
    mean: np.ndarray        # (H,) feature means (training windows)
    scale: np.ndarray       # (H,) feature standard deviations
    intercept: np.ndarray   # (K,)
    units: np.ndarray       # indices of the reliable units
    explained: np.ndarray   # (K,) variance share of each component among the reliable units
    reliability: float      # mean leave-one-out inter-participant correlation of the units kept

    def describe(self) -> str:
        return (f"encoder targets: top {len(self.explained)} principal components ({self.explained.sum():.0%} of the "
                f"variance) of the mean target over the {len(self.units)} most reliable units "
                f"(leave-one-out inter-participant r {self.reliability:.3f}, training windows only)")


def parse_encoder_targets(spec: str) -> int:
    """``units`` -> 0, ``pcs:K`` -> K (K >= 1); ValueError otherwise."""
    if spec == "units":
        return 0
    if isinstance(spec, str) and spec.startswith("pcs:"):
        try:
            k = int(spec[4:])
        except ValueError:
            k = 0
        if k >= 1:
            return k
    raise ValueError(f"expected 'units' or 'pcs:K' with an integer K >= 1, got {spec!r}")


def loo_reliability(data: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Mean over participants of corr(participant, weighted mean of the others) per unit.

    ``data``: one (n_windows, units) array per participant over the *same* windows.
    """
    w = np.asarray(weights, dtype=np.float64)
    total = sum(wi * d.astype(np.float64) for wi, d in zip(w, data))
    out = np.zeros(data[0].shape[1])
    for wi, d in zip(w, data):
        others = (total - wi * d) / (w.sum() - wi)
        a = d - d.mean(0)
        b = others - others.mean(0)
        den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
        out += np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)
    return out / len(data)


def encoder_targets(
    mean_target: np.ndarray,
    participant_data: list[np.ndarray],
    participant_weights: list[float],
    features: np.ndarray,
    train: np.ndarray,
    train_runs: np.ndarray,
    n_components: int,
    fraction: float,
    shuffle_seed: int | None = None,
) -> EncoderTargets:
    """Build :class:`EncoderTargets` from the training windows ``train`` only.

    Parameters
    ----------
    mean_target : (n_seq, units) weighted mean target over participants (0 where none).
    participant_data : each participant's targets on the windows ``train`` (same order).
    participant_weights : the participants' weights in ``mean_target``.
    features : (n_seq, H) pooled features of the frozen encoder.
    train : indices of the training windows; ``train_runs`` their runs (inner CV groups).
    shuffle_seed : int, optional
        Null control: the components' training rows are permuted in time within each run
        (before the read-out is fitted), so the encoder learns from targets that keep their
        distribution but lose their relation to the words.
    """
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import PredefinedSplit

    rel = loo_reliability(participant_data, participant_weights)
    n_keep = max(n_components, int(np.ceil(fraction * rel.size)))
    units = np.sort(np.argsort(-np.nan_to_num(rel, nan=-1.0), kind="stable")[:n_keep])
    y = mean_target[:, units].astype(np.float64)
    mu = y[train].mean(0)
    _, s, vt = np.linalg.svd(y[train] - mu, full_matrices=False)
    k = min(n_components, vt.shape[0])
    scores = (y - mu) @ vt[:k].T
    scores /= scores[train].std(0) + 1e-12
    if shuffle_seed is not None:
        from brainviz.tuning.data import shuffle_within_runs

        scores[train] = shuffle_within_runs(scores[train], np.asarray(train_runs), shuffle_seed)
    x = features.astype(np.float64)
    f_mean, f_scale = x[train].mean(0), x[train].std(0) + 1e-6
    xs = (x - f_mean) / f_scale
    groups = np.unique(train_runs, return_inverse=True)[1]
    if groups.max() >= 1:
        cv = PredefinedSplit(groups)
    else:  # one training run: contiguous halves
        cv = PredefinedSplit((np.arange(len(train)) >= len(train) // 2).astype(int))
    ridge = RidgeCV(alphas=RIDGE_ALPHAS, cv=cv, fit_intercept=True)
    ridge.fit(xs[train], scores[train])
    return EncoderTargets(
        scores=scores.astype(np.float32),
        weight=np.asarray(ridge.coef_, dtype=np.float32).reshape(xs.shape[1], k),
        mean=f_mean.astype(np.float32), scale=f_scale.astype(np.float32),
        intercept=np.asarray(ridge.intercept_, dtype=np.float32).reshape(k),
        units=units, explained=(s[:k] ** 2 / (s ** 2).sum()).astype(np.float32),
        reliability=float(np.mean(rel[units])),
    )
