"""Attention figures: [CLS]->[CLS]/[SEP] per layer (paper Fig. 4), layer x head change, tokens."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from brainviz.viz._common import add_simulated_badge

KIND_LABELS = ("[CLS] → [CLS]", "[CLS] → [SEP]")
MODEL_COLORS = ("#495057", "#c92a2a", "#1864ab", "#2b8a3e")


def layer_attention(
    summaries: Mapping[str, Mapping[str, np.ndarray]],
    *,
    simulated: bool = False,
    title: str | None = None,
    height: int = 380,
):
    """Mean ± SE attention per layer, one panel per kind ([CLS]→[CLS], [CLS]→[SEP]).

    Parameters
    ----------
    summaries : dict model label -> ``{"mean": (layers, 2), "se": (layers, 2)}``
        :func:`brainviz.models.attention.layer_summary` output for each model (e.g. base and
        tuned).

    Returns
    -------
    Figure with two subplots and ``2 * len(summaries)`` traces (model-major order).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=KIND_LABELS, shared_yaxes=True)
    for m, (label, s) in enumerate(summaries.items()):
        mean = np.asarray(s["mean"], dtype=np.float64)
        se = np.nan_to_num(np.asarray(s["se"], dtype=np.float64))
        layers = np.arange(1, mean.shape[0] + 1)
        color = MODEL_COLORS[m % len(MODEL_COLORS)]
        for k in range(2):
            fig.add_trace(
                go.Scatter(
                    x=layers, y=np.round(mean[:, k], 5), mode="lines+markers", name=str(label),
                    legendgroup=str(label), showlegend=k == 0, line=dict(color=color, width=2),
                    error_y=dict(type="data", array=np.round(se[:, k], 5), visible=True, thickness=1.2),
                    hovertemplate=f"{label}<br>layer %{{x}}<br>%{{y:.4f}} ± %{{error_y.array:.4f}}<extra></extra>",
                ),
                row=1, col=k + 1,
            )
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_yaxes(title_text="attention weight (mean ± SE)", row=1, col=1)
    fig.update_layout(title=dict(text=title or "Attention from [CLS] per layer (Fig. 4)"), height=height,
                      margin=dict(l=60, r=20, t=70, b=50), plot_bgcolor="white",
                      legend=dict(orientation="h", y=-0.2))
    return add_simulated_badge(fig, simulated)


def head_change_heatmap(
    change: np.ndarray,
    *,
    kind: int = 1,
    simulated: bool = False,
    title: str | None = None,
    height: int = 360,
):
    """Tuned − base attention per layer x head for one kind (0: [CLS]→[CLS], 1: [CLS]→[SEP]).

    ``change`` is :func:`brainviz.models.attention.attention_change` output ``(layers, heads, 2)``
    or a ``(layers, heads)`` matrix.
    """
    import plotly.graph_objects as go

    c = np.asarray(change, dtype=np.float64)
    if c.ndim == 3:
        c = c[..., kind]
    m = float(np.nanmax(np.abs(c))) if c.size and np.isfinite(c).any() else 1.0
    m = m if m > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=np.round(c, 5), x=[f"h{h}" for h in range(c.shape[1])], y=[f"L{l + 1}" for l in range(c.shape[0])],
        colorscale="RdBu_r", zmin=-m, zmax=m, colorbar=dict(title=dict(text="Δ attention")),
        hovertemplate="%{y} %{x}<br>Δ %{z:.4f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title or f"Change (tuned − base) of {KIND_LABELS[kind]} per layer × head"),
                      height=height, margin=dict(l=60, r=20, t=60, b=40), yaxis=dict(autorange="reversed"))
    return add_simulated_badge(fig, simulated)


def token_attention_heatmap(
    tokens: Sequence[str],
    matrix: np.ndarray,
    *,
    simulated: bool = False,
    title: str | None = None,
    height: int = 560,
):
    """Token x token attention of one head (rows attend to columns)."""
    import plotly.graph_objects as go

    a = np.asarray(matrix, dtype=np.float64)
    n = len(tokens)
    if a.shape != (n, n):
        raise ValueError(f"matrix must be ({n}, {n}) for {n} tokens, got {a.shape}")
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(
        z=np.round(a, 4), x=labels, y=labels, colorscale="Viridis", zmin=0, zmax=float(max(a.max(), 1e-9)),
        colorbar=dict(title=dict(text="weight")), hovertemplate="%{y} → %{x}<br>%{z:.4f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title or "Token attention (row → column)"), height=height,
                      margin=dict(l=100, r=20, t=60, b=100), yaxis=dict(autorange="reversed"),
                      xaxis=dict(tickangle=-60))
    return add_simulated_badge(fig, simulated)
