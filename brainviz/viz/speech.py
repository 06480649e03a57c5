"""Figures of the Speech page: data-efficiency curves, raw vs residual alignment, probe accuracies.

Inputs are the tables of :mod:`brainviz.evaluation.speech` and :mod:`brainviz.evaluation.probe`;
every figure carries the "simulated" badge when the data is simulated.
"""

from __future__ import annotations

import pandas as pd

from brainviz.viz._common import add_simulated_badge

ALIGNMENT_COLUMNS = {"r_raw": "raw features", "r_residual": "low-level removed", "r_lowlevel": "low-level bands alone"}


def data_efficiency_figure(curves: pd.DataFrame, *, simulated: bool = False, height: int = 360):
    """Mean held-out r (over participants) against minutes of the new participant's training
    data, one line per model (``curves`` from :func:`brainviz.evaluation.speech.data_efficiency`)."""
    import plotly.graph_objects as go

    mean = curves.groupby(["model", "minutes"], as_index=False)["mean_r"].mean()
    fig = go.Figure()
    for name, g in mean.groupby("model"):
        fig.add_trace(go.Scatter(x=g["minutes"], y=g["mean_r"], mode="lines+markers", name=str(name)))
    fig.update_layout(title=dict(text="Data efficiency: held-out r of new participants"),
                      xaxis_title="minutes of the participant's training data", yaxis_title="mean held-out r",
                      height=height, margin=dict(t=50), plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)


def alignment_bars(table: pd.DataFrame, *, simulated: bool = False, height: int = 380):
    """Raw / low-level-removed / low-level-alone alignment per model and unit group, with SE
    across participants (``table``: ``model`` plus the columns of
    :func:`brainviz.evaluation.speech.group_statistics`)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    x = table["model"].astype(str) + " / " + table["group"].astype(str)
    for col, label in ALIGNMENT_COLUMNS.items():
        if col not in table:
            continue
        se = table.get(f"se_{col}")
        fig.add_trace(go.Bar(x=x, y=table[col], name=label,
                             error_y=dict(type="data", array=se, visible=True) if se is not None else None))
    fig.update_layout(title=dict(text="Alignment before and after regressing out low-level sound features"),
                      barmode="group", xaxis_title="model / units", yaxis_title="mean held-out r (± SE across participants)",
                      height=height, margin=dict(t=50), plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)


def probe_bars(table: pd.DataFrame, *, title: str = "Word-class probe", simulated: bool = False, height: int = 380):
    """Balanced accuracy per layer and test story, the duration baseline(s) as dashed lines and
    chance (0.5) dotted (``table`` of :class:`brainviz.evaluation.probe.ProbeResult`)."""
    import plotly.graph_objects as go

    layers = table[table["layer"] != "duration"]
    fig = go.Figure()
    for story, g in layers.groupby("test_story", sort=False):
        text = ["" if p is None or pd.isna(p) else f"p {p:.3g}" for p in g["p"]]
        fig.add_trace(go.Bar(x=g["layer"].astype(str), y=g["accuracy"], name=f"test story {story}", text=text,
                             textposition="outside"))
    for _, b in table[table["layer"] == "duration"].iterrows():
        p = "" if b["p"] is None or pd.isna(b["p"]) else f", p {b['p']:.3g}"
        fig.add_hline(y=float(b["accuracy"]), line_dash="dash", line_color="gray",
                      annotation_text=f"duration baseline, test {b['test_story']}: {b['accuracy']:.2f}{p}")
    fig.add_hline(y=0.5, line_dash="dot", line_color="black", annotation_text="chance 0.5",
                  annotation_position="bottom right")
    fig.update_layout(title=dict(text=title), barmode="group", height=height, plot_bgcolor="white",
                      xaxis_title="hidden state (0 = after the feature encoder)",
                      yaxis_title="balanced accuracy on the held-out story", yaxis_range=[0, 1.05], margin=dict(t=50))
    return add_simulated_badge(fig, simulated)
