"""Time-course figures: one vertex's fMRI signal across runs (raw and preprocessed)."""

from __future__ import annotations

import numpy as np

from brainviz.viz._common import add_simulated_badge


def _break_lines(x, y, runs) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN between rows of different runs or non-consecutive TRs, so plotly draws no line
    across the gap between two runs (or across trimmed TRs)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    runs = np.asarray(runs).astype(str)
    if x.size < 2:
        return x, y
    cut = np.flatnonzero((runs[1:] != runs[:-1]) | (np.diff(x) > 1)) + 1
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


def vertex_timecourse(
    raw,
    run_labels,
    tr: float,
    *,
    kept=None,
    preprocessed=None,
    preprocessed_rows=None,
    vertex: int | None = None,
    simulated: bool = False,
    title: str | None = None,
    height: int = 340,
):
    """Raw signal of one unit over all TRs (runs concatenated) and, optionally, the
    preprocessed target at the kept TRs (second trace, own axis).

    Parameters
    ----------
    raw : array (n_trs,)
    run_labels : array (n_trs,)
        Run of every TR (boundaries are drawn as dotted lines; no line crosses them).
    kept : bool array (n_trs,), optional
        TRs that became examples (others are shaded grey markers).
    preprocessed, preprocessed_rows : arrays, optional
        Detrended z-scored values and the TR rows they belong to.
    """
    import plotly.graph_objects as go

    raw = np.asarray(raw, dtype=np.float64)
    n = raw.size
    x = np.arange(n)
    runs = np.asarray(run_labels).astype(str)
    xr, yr = _break_lines(x, raw, runs)
    traces = [go.Scatter(x=xr, y=np.round(yr, 4), mode="lines", name="raw", line=dict(color="#868e96", width=1),
                         connectgaps=False, hovertemplate="TR %{x}<br>raw %{y:.3f}<extra></extra>")]
    if preprocessed is not None:
        rows = np.asarray(preprocessed_rows if preprocessed_rows is not None else np.arange(len(preprocessed)))
        rows_runs = runs[np.clip(rows, 0, n - 1)] if n else np.asarray([], dtype=str)
        xp, yp = _break_lines(rows, np.asarray(preprocessed, dtype=np.float64), rows_runs)
        traces.append(go.Scatter(x=xp, y=np.round(yp, 4), mode="lines", connectgaps=False,
                                 name="preprocessed (example targets)", yaxis="y2",
                                 line=dict(color="#c92a2a", width=1.4),
                                 hovertemplate="TR %{x}<br>z %{y:.3f}<extra></extra>"))
    fig = go.Figure(traces)
    change = np.flatnonzero(runs[1:] != runs[:-1]) + 0.5
    for c in change:
        fig.add_vline(x=float(c), line=dict(color="#adb5bd", dash="dot", width=1))
    if kept is not None:
        k = np.asarray(kept, dtype=bool)
        edges = np.flatnonzero(np.diff(np.r_[0, (~k).astype(int), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            fig.add_vrect(x0=a - 0.5, x1=b - 0.5, fillcolor="#e9ecef", opacity=0.6, line_width=0, layer="below")
    for label in dict.fromkeys(runs.tolist()):
        idx = np.flatnonzero(runs == label)
        fig.add_annotation(x=float(idx.mean()), y=1.02, yref="paper", text=str(label), showarrow=False,
                           font=dict(size=10, color="#495057"))
    fig.update_layout(
        title=dict(text=title or (f"vertex {vertex}" if vertex is not None else "time course")),
        xaxis=dict(title=f"TR (TR = {tr:g} s; grey = trimmed / no words)"), yaxis=dict(title="raw signal"),
        yaxis2=dict(title="z (preprocessed)", overlaying="y", side="right", showgrid=False),
        height=height, margin=dict(l=60, r=60, t=60, b=50), plot_bgcolor="white",
        legend=dict(orientation="h", y=-0.3),
    )
    return add_simulated_badge(fig, simulated)
