"""Line and bar figures of a comparison: the paper's Fig. 2 curves and per-ROI bars."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from brainviz.viz._common import add_simulated_badge

PARTICIPANT_COLOR = "rgba(120,120,120,0.55)"
MEAN_COLOR = "#c92a2a"


def _points(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n_units, mean_diff) from a ``curve_points`` dict or a full curve array."""
    if isinstance(curve, Mapping):
        x = np.asarray(curve.get("n_units", []), dtype=np.float64)
        y = np.asarray([np.nan if v is None else v for v in curve.get("mean_diff", [])], dtype=np.float64)
        return x, y
    y = np.asarray(curve, dtype=np.float64)
    return np.arange(1, y.size + 1, dtype=np.float64), y


def fig2_curves(
    fig2: Mapping[str, Any],
    *,
    names: tuple[str, str] = ("A", "B"),
    log_x: bool = True,
    simulated: bool = False,
    title: str | None = None,
    height: int = 420,
):
    """The Fig. 2 curves (Schwartz et al. 2019): mean ``acc_A - acc_B`` over the n best units.

    Parameters
    ----------
    fig2 : dict
        ``{"participants": {pid: curve}, "average": curve}`` where a curve is a
        ``{"n_units": [...], "mean_diff": [...]}`` dict (``ComparisonResult.summary()["fig2"]``)
        or a full array (``ComparisonResult.fig2()``).

    Returns
    -------
    Figure with one grey line per participant, then the bold mean line (last trace).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for pid, curve in (fig2.get("participants") or {}).items():
        x, y = _points(curve)
        fig.add_trace(go.Scatter(x=x, y=np.round(y, 5), mode="lines", name=str(pid),
                                 line=dict(color=PARTICIPANT_COLOR, width=1.2),
                                 hovertemplate=f"{pid}<br>%{{x}} best units<br>mean diff %{{y:.4f}}<extra></extra>"))
    x, y = _points(fig2.get("average", []))
    fig.add_trace(go.Scatter(x=x, y=np.round(y, 5), mode="lines", name="mean over participants",
                             line=dict(color=MEAN_COLOR, width=3),
                             hovertemplate="mean<br>%{x} best units<br>mean diff %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="black", width=1, dash="dot"))
    fig.update_layout(
        title=dict(text=title or f"Fig. 2: mean accuracy difference ({names[0]} − {names[1]}) over the best units"),
        xaxis=dict(title="number of best units (sorted by max accuracy of A and B)", type="log" if log_x else "linear"),
        yaxis=dict(title=f"mean acc({names[0]}) − acc({names[1]})"),
        height=height, margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.25),
        plot_bgcolor="white",
    )
    fig.update_xaxes(gridcolor="#eee")
    fig.update_yaxes(gridcolor="#eee", zerolinecolor="#999")
    return add_simulated_badge(fig, simulated)


def roi_bars(
    table,
    *,
    value: str = "diff",
    error: str | None = "se",
    label: str = "roi",
    names: tuple[str, str] = ("A", "B"),
    simulated: bool = False,
    title: str | None = None,
    height: int = 420,
    max_rois: int = 40,
    yaxis_title: str | None = None,
    error_label: str = "SE across participants",
):
    """Horizontal-free bar chart of a per-ROI table (one bar per ROI, optional error bars).

    ``table`` is a DataFrame with a ``label`` column and a ``value`` column (e.g.
    :func:`brainviz.evaluation.roi_summary` output: ``roi, diff, n_sig_up, n_sig_down``).
    Bars are coloured by sign; the ROIs with the largest ``|value|`` are kept (``max_rois``).
    ``yaxis_title`` defaults to ``Δ 20-vs-20 accuracy (A − B)`` for ``value='diff'``; error bars
    (``error`` column, e.g. ``se``) are drawn when finite and named by ``error_label`` in the hover.
    """
    import plotly.graph_objects as go

    df = table.copy()
    df = df[np.isfinite(df[value].astype(float))]
    if len(df) > max_rois:
        df = df.reindex(df[value].abs().sort_values(ascending=False).index[:max_rois])
    df = df.sort_values(value, ascending=False)
    vals = df[value].to_numpy(dtype=float)
    colors = np.where(vals >= 0, "#c92a2a", "#1864ab")
    err = None
    if error is not None and error in df and np.isfinite(df[error].to_numpy(dtype=float)).any():
        err = dict(type="data", array=np.round(df[error].to_numpy(dtype=float), 5), visible=True, color="#333")
    ytitle = yaxis_title or (f"Δ 20-vs-20 accuracy ({names[0]} − {names[1]})" if value == "diff" else value)
    hover = "%{x}<br>" + ytitle + " %{y:.4f}"
    fig_note = f"error bars: {error_label}" if err is not None else None
    custom = None
    if {"n_sig_up", "n_sig_down"} <= set(df.columns):
        custom = np.c_[df["n_sig_up"].to_numpy(), df["n_sig_down"].to_numpy()]
        hover += f"<br>significant {names[0]} > {names[1]}: %{{customdata[0]}}<br>significant {names[1]} > {names[0]}: %{{customdata[1]}}"
    fig = go.Figure(go.Bar(x=df[label].astype(str).tolist(), y=np.round(vals, 5), marker_color=list(colors),
                           error_y=err, customdata=custom, hovertemplate=hover + "<extra></extra>", name=value))
    fig.add_hline(y=0, line=dict(color="black", width=1))
    if fig_note:
        fig.add_annotation(text=fig_note, xref="paper", yref="paper", x=0.0, y=1.0, xanchor="left", yanchor="bottom",
                           showarrow=False, font=dict(size=11, color="#495057"))
    fig.update_layout(
        title=dict(text=title or (f"Per-ROI Δ 20-vs-20 accuracy ({names[0]} − {names[1]})" if value == "diff"
                                  else f"Per-ROI mean {value} ({names[0]} − {names[1]})")),
        yaxis=dict(title=dict(text=ytitle)), xaxis=dict(tickangle=-45, title=dict(text="ROI")), height=height,
        margin=dict(l=60, r=20, t=60, b=100), plot_bgcolor="white",
    )
    return add_simulated_badge(fig, simulated)


def accuracy_histogram(values, *, chance: float | None = 0.5, name: str = "accuracy",
                       simulated: bool = False, title: str | None = None, height: int = 300):
    """Histogram of per-unit values with the chance level marked."""
    import plotly.graph_objects as go

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig = go.Figure(go.Histogram(x=np.round(v, 4), nbinsx=60, marker_color="#495057", name=name))
    if chance is not None:
        fig.add_vline(x=chance, line=dict(color="#c92a2a", dash="dash"))
    fig.update_layout(title=dict(text=title or f"distribution of {name}"), xaxis_title=name, yaxis_title="units",
                      height=height, margin=dict(l=50, r=20, t=50, b=40), plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)
