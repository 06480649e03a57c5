"""Linked views of a comparison: measured vs predicted held-out time courses of chosen units
(one vertex, a selection or an ROI) for models A and B, and their per-run 20-vs-20 accuracies.

:func:`heldout_pair` reads what the figures need once per participant (seed-averaged held-out
predictions of A and B and the preprocessed targets on the same rows); :func:`timecourse_figure`
draws them with the line broken at every run boundary (and at any gap in the TR index), so no
line joins the end of one run to the start of the next.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from brainviz.viz._common import add_simulated_badge

COLORS = {"measured": "#212529", "a": "#d9480f", "b": "#1971c2"}


@dataclasses.dataclass
class HeldoutPair:
    """Held-out rows shared by A and B for one participant.

    Attributes
    ----------
    participant : str
    tr_index : int64 (n_rows,)
        Row of each example in the full recording (sorted within runs).
    runs : str (n_rows,)
    measured, pred_a, pred_b : float32 (n_rows, n_units)
        Preprocessed targets and seed-averaged held-out predictions.
    tr : float
        Repetition time (s).
    """

    participant: str
    tr_index: np.ndarray
    runs: np.ndarray
    measured: np.ndarray
    pred_a: np.ndarray
    pred_b: np.ndarray
    tr: float = 2.0

    def units(self, vertices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(measured, A, B)`` time courses (n_rows,) averaged over ``vertices`` (NaN-aware)."""
        idx = np.asarray(vertices, dtype=np.int64).ravel()
        if idx.size == 0:
            raise ValueError("choose at least one unit")
        n = self.measured.shape[1]
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"unit index out of range 0..{n - 1}")
        with np.errstate(invalid="ignore"):
            return tuple(np.nanmean(x[:, idx], axis=1) for x in (self.measured, self.pred_a, self.pred_b))  # type: ignore[return-value]


def heldout_pair(path_a: str, path_b: str, participant: str, dataset: str | None = None) -> HeldoutPair:
    """Read A's and B's held-out predictions (seed means) and the targets for ``participant``,
    restricted to the rows both models predicted."""
    from brainviz.evaluation import io

    scan_a, scan_b = io.scan_heldout(path_a), io.scan_heldout(path_b)
    ha = io.load_heldout(scan_a["path"], [participant])
    hb = io.load_heldout(scan_b["path"], [participant])
    tr_a, tr_b = ha["tr_index"][participant], hb["tr_index"][participant]
    common = np.intersect1d(tr_a, tr_b)
    ra = io.align_rows(tr_a, common, f"{path_a}: participant {participant!r}")
    rb = io.align_rows(tr_b, common, f"{path_b}: participant {participant!r}")
    pred_a = np.asarray(ha["predictions"][participant], dtype=np.float32).mean(axis=0)[ra]
    pred_b = np.asarray(hb["predictions"][participant], dtype=np.float32).mean(axis=0)[rb]
    runs = np.asarray(ha["runs"][participant]).astype(str)[ra]
    data, t_index = io.load_targets(scan_a, [participant], dataset=dataset)[participant]
    rows = io.align_rows(t_index, common, f"participant {participant!r}")
    measured = io.target_columns(np.asarray(data)[rows], ha["units"].get(participant), f"participant {participant!r}")
    tr = 2.0
    try:
        from brainviz.data.dataset import load_dataset

        ds = load_dataset(io.dataset_path(scan_a, dataset), check_values=False)
        tr = float(ds.fmri[participant].tr)
    except Exception:  # noqa: BLE001 - a targets file without a dataset: keep 2 s
        pass
    return HeldoutPair(participant, common.astype(np.int64), runs, np.asarray(measured, dtype=np.float32),
                       pred_a, pred_b, tr)


def _broken(x: np.ndarray, y: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN between rows of different runs or non-consecutive TRs (plotly breaks lines there)."""
    if x.size == 0:
        return x.astype(float), y.astype(float)
    cut = np.flatnonzero((runs[1:] != runs[:-1]) | (np.diff(x) > 1)) + 1
    xs = np.insert(x.astype(float), cut, np.nan)
    ys = np.insert(y.astype(float), cut, np.nan)
    return xs, ys


def _z(x: np.ndarray) -> np.ndarray:
    sd = np.nanstd(x)
    return (x - np.nanmean(x)) / (sd if sd > 0 else 1.0)


def timecourse_figure(
    pair: HeldoutPair,
    vertices: Sequence[int],
    *,
    names: tuple[str, str] = ("A", "B"),
    label: str | None = None,
    run_accuracy: dict[str, tuple[float, float]] | None = None,
    standardize: bool = True,
    simulated: bool = False,
    height: int = 460,
):
    """Measured vs predicted held-out time course of ``vertices`` (mean over them) for A and B.

    Parameters
    ----------
    pair : HeldoutPair
    vertices : unit indices
    names : model names A, B
    label : str, optional
        What the units are (e.g. ``vertex 123 (left) · ROI L_STSdp``).
    run_accuracy : {run: (acc_a, acc_b)}, optional
        Per-run 20-vs-20 accuracies, drawn as grouped bars under the time courses.
    standardize : bool
        z-score each trace over the shown rows (predictions are on another scale than targets).

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: measured, A, B (lines broken between runs), then per-run bars when given.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    meas, pa, pb = pair.units(vertices)
    if standardize:
        meas, pa, pb = _z(meas), _z(pa), _z(pb)
    bars = bool(run_accuracy)
    fig = make_subplots(rows=2 if bars else 1, cols=1, row_heights=[0.68, 0.32] if bars else None,
                        vertical_spacing=0.16,
                        subplot_titles=None if not bars else ("", "20-vs-20 accuracy per held-out run"))
    t = pair.tr_index
    with np.errstate(invalid="ignore"):
        r_a = float(np.corrcoef(meas, pa)[0, 1]) if np.nanstd(pa) > 0 and np.nanstd(meas) > 0 else float("nan")
        r_b = float(np.corrcoef(meas, pb)[0, 1]) if np.nanstd(pb) > 0 and np.nanstd(meas) > 0 else float("nan")
    for key, y, name, width in (("measured", meas, "measured (held-out)", 1.6),
                                ("a", pa, f"A: {names[0]} (r = {r_a:.2f})", 1.3),
                                ("b", pb, f"B: {names[1]} (r = {r_b:.2f})", 1.3)):
        xs, ys = _broken(t, y, pair.runs)
        fig.add_trace(go.Scatter(x=xs * pair.tr, y=np.round(ys, 4), mode="lines", name=name, connectgaps=False,
                                 line=dict(color=COLORS[key], width=width, dash=None if key == "measured" else "solid"),
                                 hovertemplate="t %{x:.1f} s<br>%{y:.3f}<extra>" + name + "</extra>"),
                      row=1, col=1)
    for run in dict.fromkeys(pair.runs.tolist()):
        sel = t[pair.runs == run] * pair.tr
        fig.add_vrect(x0=float(sel.min()), x1=float(sel.max()), fillcolor="#f1f3f5", opacity=0.5, line_width=0,
                      layer="below", row=1, col=1)
        fig.add_annotation(x=float(sel.mean()), y=1.0, yref="y domain" if bars else "paper", yanchor="bottom",
                           text=str(run) if str(run).lower().startswith("run") else f"run {run}", showarrow=False, font=dict(size=10, color="#495057"), row=1, col=1)
    if bars:
        runs = list(run_accuracy)
        fig.add_trace(go.Bar(x=runs, y=[run_accuracy[r][0] for r in runs], name=f"A: {names[0]}",
                             marker_color=COLORS["a"], showlegend=False), row=2, col=1)
        fig.add_trace(go.Bar(x=runs, y=[run_accuracy[r][1] for r in runs], name=f"B: {names[1]}",
                             marker_color=COLORS["b"], showlegend=False), row=2, col=1)
        fig.add_hline(y=0.5, line=dict(color="#868e96", dash="dot", width=1), row=2, col=1)
        fig.update_yaxes(title_text="20-vs-20 accuracy (chance 0.5)", row=2, col=1, range=[0, 1])
        fig.update_xaxes(title_text="held-out run", type="category", row=2, col=1)
        fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="time in the recording (s); gaps = between runs", row=1, col=1)
    fig.update_yaxes(title_text="z-scored signal" if standardize else "signal", row=1, col=1)
    n = len(np.asarray(vertices).ravel())
    fig.update_layout(
        title=dict(text=(label or (f"{n} units" if n > 1 else f"unit {int(np.asarray(vertices).ravel()[0])}"))
                   + f" · {pair.participant}: measured vs predicted (held-out)"),
        height=height + (180 if bars else 0), margin=dict(l=60, r=20, t=70, b=90), plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="top", y=-0.14 if not bars else -0.13),
    )
    return add_simulated_badge(fig, simulated)


def run_accuracies(result, participant: str, vertices: Sequence[int]) -> dict[str, tuple[float, float]]:
    """``{run: (acc A, acc B)}``: 20-vs-20 accuracy per held-out run of a comparison, averaged
    over seeds and over ``vertices``."""
    idx = np.asarray(vertices, dtype=np.int64).ravel()
    a = np.asarray(result.acc_a[participant])[..., idx]
    b = np.asarray(result.acc_b[participant])[..., idx]
    out = {}
    with np.errstate(invalid="ignore"):
        for r, run in enumerate(result.runs[participant]):
            out[str(run)] = (float(np.nanmean(a[:, r])), float(np.nanmean(b[:, r])))
    return out


def selection_stats(frame) -> dict[str, float]:
    """Group statistics of a selection table (``diff``, ``acc_a``, ``acc_b``, ``significant``):
    count, mean and SE of the difference, mean accuracies, share significant."""
    d = frame["diff"].to_numpy(dtype=float)
    fin = np.isfinite(d)
    n = int(fin.sum())
    return {
        "n": int(len(frame)),
        "mean_diff": float(np.nanmean(d)) if n else float("nan"),
        "se_diff": float(np.nanstd(d, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "mean_acc_a": float(np.nanmean(frame["acc_a"].to_numpy(dtype=float))) if n else float("nan"),
        "mean_acc_b": float(np.nanmean(frame["acc_b"].to_numpy(dtype=float))) if n else float("nan"),
        "share_significant": float(np.mean(frame["significant"].to_numpy(dtype=bool))) if len(frame) else float("nan"),
        "share_a_better": float(np.mean(d[fin] > 0)) if n else float("nan"),
    }


def roi_se_across_runs(result, labels, roi_labels: Sequence[int], participant: str) -> np.ndarray:
    """SE across held-out runs of each ROI's mean accuracy difference A − B (one participant).

    The error bar of a per-ROI bar when only one participant is shown (the SE across
    participants does not exist then): seeds averaged, units averaged within the ROI, then
    the standard error over the participant's held-out runs (NaN with fewer than 2 runs).
    """
    labels = np.asarray(labels)
    d = np.asarray(result.acc_a[participant], dtype=np.float64) - np.asarray(result.acc_b[participant], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        per_run = np.nanmean(d, axis=0)  # (runs, units)
        out = np.full(len(roi_labels), np.nan)
        if per_run.shape[0] < 2:
            return out
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for i, lab in enumerate(roi_labels):
                m = np.nanmean(per_run[:, labels == lab], axis=1)
                fin = np.isfinite(m)
                if fin.sum() >= 2:
                    out[i] = float(np.std(m[fin], ddof=1) / np.sqrt(fin.sum()))
    return out
