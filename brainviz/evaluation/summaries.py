"""Summaries of a two-model comparison: Fig. 2 curves, per-ROI tables, significance counts.

Fig. 2 of Schwartz, Toneva & Wehbe (2019): sort units by the larger of the two models'
accuracies (descending) and plot, for the ``n`` best units, the mean of ``acc_a - acc_b`` over
those units - the cumulative mean of the difference from the left. A curve above zero over the
well-predicted units means model A wins where either model predicts well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def fig2_curve(acc_a: np.ndarray, acc_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's Fig. 2 curve for one participant.

    Parameters
    ----------
    acc_a, acc_b : float arrays (n_units,)
        Accuracies (e.g. mean 20-vs-20 accuracy over seeds and runs) of models A and B.

    Returns
    -------
    n_units : int array (n,)
        1, 2, ..., n: number of best units included (units with a NaN accuracy are left out).
    mean_diff : float array (n,)
        Mean of ``acc_a - acc_b`` over the ``n_units`` units with the largest
        ``max(acc_a, acc_b)`` (stable sort, so ties keep unit order).
    """
    a = np.asarray(acc_a, dtype=np.float64).ravel()
    b = np.asarray(acc_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"fig2_curve: shapes differ ({a.shape} vs {b.shape})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    order = np.argsort(-np.maximum(a, b), kind="stable")
    diff = (a - b)[order]
    n = np.arange(1, diff.size + 1)
    return n, np.cumsum(diff) / n


def fig2_curves(
    acc_a: Mapping[str, np.ndarray], acc_b: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fig. 2 curve of every participant and their average.

    Returns
    -------
    curves : dict participant -> mean_diff array
    average : float array (n_max,)
        Mean over participants at each number of units (participants with fewer valid units
        than ``n`` are left out at ``n``).
    """
    curves = {pid: fig2_curve(acc_a[pid], acc_b[pid])[1] for pid in acc_a}
    if not curves:
        return curves, np.zeros(0)
    n_max = max(c.size for c in curves.values())
    stack = np.full((len(curves), n_max), np.nan)
    for i, c in enumerate(curves.values()):
        stack[i, : c.size] = c
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(stack).sum(axis=0)
        average = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    return curves, average


def curve_points(curve: np.ndarray, n_points: int = 200) -> dict[str, list]:
    """Subsample a curve at about ``n_points`` log-spaced unit counts (for JSON summaries)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size == 0:
        return {"n_units": [], "mean_diff": []}
    n = np.unique(np.round(np.geomspace(1, curve.size, num=min(n_points, curve.size))).astype(int))
    return {"n_units": n.tolist(), "mean_diff": [None if not np.isfinite(v) else float(v) for v in curve[n - 1]]}


def significance_counts(diff: np.ndarray, significant: np.ndarray, p: np.ndarray | None = None) -> dict[str, int]:
    """Counts of FDR-significant units and their direction.

    ``n_a_better``: significant with ``diff > 0``; ``n_b_better``: significant with ``diff < 0``.
    ``n_tested``: units with a finite p-value (when ``p`` is given) or finite difference.
    """
    diff = np.asarray(diff, dtype=np.float64)
    sig = np.asarray(significant, dtype=bool)
    tested = np.isfinite(p) if p is not None else np.isfinite(diff)
    return {
        "n_units": int(diff.size),
        "n_tested": int(tested.sum()),
        "n_significant": int(sig.sum()),
        "n_a_better": int((sig & (diff > 0)).sum()),
        "n_b_better": int((sig & (diff < 0)).sum()),
    }


def roi_summary(
    acc_a: np.ndarray,
    acc_b: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] | Mapping[int, str],
    significant: np.ndarray | None = None,
) -> "pd.DataFrame":
    """Per-ROI means and significant-unit counts.

    Parameters
    ----------
    acc_a, acc_b : float arrays (n_units,)
    labels : int array (n_units,)
        ROI index of each unit; negative or unknown labels are left out.
    names : list (index -> name) or dict {label: name}
    significant : bool array (n_units,), optional
        FDR-significant units of the paired test.

    Returns
    -------
    DataFrame with columns ``roi, label, n_units, acc_a, acc_b, diff, n_sig_up, n_sig_down``
    (``up``: A better). Means ignore NaN units.
    """
    import pandas as pd

    a = np.asarray(acc_a, dtype=np.float64)
    b = np.asarray(acc_b, dtype=np.float64)
    labels = np.asarray(labels)
    sig = np.zeros(a.shape, dtype=bool) if significant is None else np.asarray(significant, dtype=bool)
    mapping = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    rows = []
    for label, name in mapping.items():
        m = labels == label
        ok = m & np.isfinite(a) & np.isfinite(b)
        d = a - b
        rows.append({
            "roi": str(name),
            "label": label,
            "n_units": int(m.sum()),
            "acc_a": float(a[ok].mean()) if ok.any() else np.nan,
            "acc_b": float(b[ok].mean()) if ok.any() else np.nan,
            "diff": float(d[ok].mean()) if ok.any() else np.nan,
            "n_sig_up": int((sig & m & (d > 0)).sum()),
            "n_sig_down": int((sig & m & (d < 0)).sum()),
        })
    return pd.DataFrame(rows, columns=["roi", "label", "n_units", "acc_a", "acc_b", "diff", "n_sig_up", "n_sig_down"])
