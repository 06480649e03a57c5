"""Attention figures: [CLS]->[CLS]/[SEP] per layer (paper Fig. 4), layer x head change, tokens,
and the bertviz head view of one window (offline HTML).

Layers and heads are labelled 1-based everywhere (``L1``–``L6``, ``H1``–``H12`` for MiniLM):
index ``i`` of an array is layer ``i + 1``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from brainviz.viz._common import add_simulated_badge

KIND_LABELS = ("[CLS] → [CLS]", "[CLS] → [SEP]")
MODEL_COLORS = ("#495057", "#c92a2a", "#1864ab", "#2b8a3e")
QUERY_TITLE = "query token (attends from)"
KEY_TITLE = "key token (attended to)"
JS_DIR = Path(__file__).with_name("attention_js")


def layer_label(i: int) -> str:
    """``L1`` for array index 0."""
    return f"L{int(i) + 1}"


def head_label(i: int) -> str:
    """``H1`` for array index 0."""
    return f"H{int(i) + 1}"


def _padded_range(lo: float, hi: float) -> list[float]:
    span = hi - lo
    pad = 0.08 * span if span > 0 else max(abs(hi), 1e-3) * 0.1
    return [max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1.0 else hi + pad]


def layer_attention(
    summaries: Mapping[str, Mapping[str, np.ndarray]],
    *,
    simulated: bool = False,
    title: str | None = None,
    height: int = 400,
):
    """Mean ± SE attention per layer, one panel per kind ([CLS]→[CLS], [CLS]→[SEP]).

    Each panel has its own y scale fitted to its curves and error bars (the two kinds differ
    by an order of magnitude, so a shared 0–1 axis would flatten the [CLS]→[SEP] changes).

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

    fig = make_subplots(rows=1, cols=2, subplot_titles=KIND_LABELS, shared_yaxes=False, horizontal_spacing=0.1)
    lo, hi = [np.inf, np.inf], [-np.inf, -np.inf]
    n_layers = 0
    for m, (label, s) in enumerate(summaries.items()):
        mean = np.asarray(s["mean"], dtype=np.float64)
        se = np.nan_to_num(np.asarray(s["se"], dtype=np.float64))
        n_layers = max(n_layers, mean.shape[0])
        layers = np.arange(1, mean.shape[0] + 1)
        color = MODEL_COLORS[m % len(MODEL_COLORS)]
        for k in range(2):
            if np.isfinite(mean[:, k]).any():
                lo[k] = min(lo[k], float(np.nanmin(mean[:, k] - se[:, k])))
                hi[k] = max(hi[k], float(np.nanmax(mean[:, k] + se[:, k])))
            fig.add_trace(
                go.Scatter(
                    x=layers, y=np.round(mean[:, k], 5), mode="lines+markers", name=str(label),
                    legendgroup=str(label), showlegend=k == 0, line=dict(color=color, width=2),
                    error_y=dict(type="data", array=np.round(se[:, k], 5), visible=True, thickness=1.2),
                    hovertemplate=f"{label}<br>L%{{x}}<br>%{{y:.4f}} ± %{{error_y.array:.4f}}<extra></extra>",
                ),
                row=1, col=k + 1,
            )
    ticks = list(range(1, n_layers + 1))
    fig.update_xaxes(title_text="layer", tickvals=ticks, ticktext=[layer_label(t - 1) for t in ticks])
    for k in range(2):
        fig.update_yaxes(title_text=f"{KIND_LABELS[k]} weight (mean ± SE)", row=1, col=k + 1,
                         **({"range": _padded_range(lo[k], hi[k])} if np.isfinite(lo[k]) else {}))
    fig.update_layout(title=dict(text=title or "Attention from [CLS] per layer (Fig. 4; each panel has its own y scale)"),
                      height=height, margin=dict(l=70, r=20, t=80, b=60), plot_bgcolor="white",
                      legend=dict(orientation="h", y=-0.22))
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
    or a ``(layers, heads)`` matrix. The colour scale is symmetric around 0.
    """
    import plotly.graph_objects as go

    c = np.asarray(change, dtype=np.float64)
    if c.ndim == 3:
        c = c[..., kind]
    m = float(np.nanmax(np.abs(c))) if c.size and np.isfinite(c).any() else 1.0
    m = m if m > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=np.round(c, 5), x=[head_label(h) for h in range(c.shape[1])], y=[layer_label(i) for i in range(c.shape[0])],
        colorscale="RdBu_r", zmin=-m, zmax=m, colorbar=dict(title=dict(text="Δ attention<br>(tuned − base)")),
        hovertemplate="%{y} %{x}<br>Δ %{z:.4f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title or f"Change (tuned − base) of {KIND_LABELS[kind]} per layer × head"),
                      height=height, margin=dict(l=70, r=20, t=60, b=50),
                      xaxis=dict(title=dict(text="head")), yaxis=dict(title=dict(text="layer"), autorange="reversed"))
    return add_simulated_badge(fig, simulated)


def token_attention_heatmap(
    tokens: Sequence[str],
    matrix: np.ndarray,
    *,
    simulated: bool = False,
    title: str | None = None,
    height: int = 560,
):
    """Token x token attention of one head: rows are queries (attending tokens), columns keys."""
    return token_attention_pair({"": (tokens, matrix)}, simulated=simulated, title=title or "Token attention",
                                height=height)


def token_attention_pair(
    panels: Mapping[str, tuple[Sequence[str], np.ndarray]],
    *,
    simulated: bool = False,
    title: str | None = None,
    height: int = 560,
):
    """Token x token attention of one head for several models side by side (e.g. base, tuned).

    ``panels`` maps a panel title to ``(tokens, (n, n) matrix)``; rows are query tokens (the
    token that attends), columns key tokens (attended to). All panels share one colour scale.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    items = list(panels.items())
    zmax = 1e-9
    for name, (tokens, matrix) in items:
        a = np.asarray(matrix, dtype=np.float64)
        if a.shape != (len(tokens), len(tokens)):
            raise ValueError(f"{name or 'matrix'} must be ({len(tokens)}, {len(tokens)}) for {len(tokens)} tokens, "
                             f"got {a.shape}")
        zmax = max(zmax, float(np.nanmax(a)) if a.size else 0.0)
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=[n for n, _ in items] if len(items) > 1 else None,
                        horizontal_spacing=0.12)
    for j, (name, (tokens, matrix)) in enumerate(items):
        labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
        fig.add_trace(go.Heatmap(
            z=np.round(np.asarray(matrix, dtype=np.float64), 4), x=labels, y=labels, colorscale="Viridis",
            zmin=0, zmax=zmax, showscale=j == len(items) - 1, colorbar=dict(title=dict(text="weight")),
            hovertemplate=f"{name + '<br>' if name else ''}query %{{y}} → key %{{x}}<br>%{{z:.4f}}<extra></extra>",
        ), row=1, col=j + 1)
        fig.update_xaxes(title_text=KEY_TITLE, tickangle=-60, row=1, col=j + 1)
        fig.update_yaxes(title_text=QUERY_TITLE if j == 0 else None, autorange="reversed", row=1, col=j + 1)
    fig.update_layout(title=dict(text=title or "Token attention (query row → key column)"), height=height,
                      margin=dict(l=110, r=20, t=80, b=120))
    return add_simulated_badge(fig, simulated)


# --------------------------------------------------------------------------------------
# bertviz head view, offline
# --------------------------------------------------------------------------------------

_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", re.I)
_REQUIRE_OPEN = re.compile(r"require\.config\(\{.*?\}\);\s*requirejs\(\[[^\]]*\],\s*function\s*\(\$,\s*d3\)\s*\{", re.S)
_LAYER_OPTION = 'layerEl.append($("<option />").val(layer).text(layer));'


class HeadViewError(RuntimeError):
    """bertviz's head view HTML is not in the shape this module rewrites (another bertviz version?)."""


def head_view_html(tokens: Sequence[str], attentions: np.ndarray, *, layer: int = 0,
                   heads: Sequence[int] | None = None, layers: Sequence[int] | None = None,
                   title: str | None = None) -> str:
    """A bertviz head view (Vig 2019) of one window as a self-contained HTML document.

    Parameters
    ----------
    tokens : list of str
        The window's tokens (with [CLS]/[SEP]).
    attentions : array ``(layers, heads, n_tokens, n_tokens)``
        Every layer's attention (rows: queries, columns: keys).
    layer : int
        0-based index of the layer shown first (the menu says ``L1``, ``L2``, …).
    heads : list of int, optional
        0-based heads selected at first (default: all).
    layers : list of int, optional
        0-based layers offered in the view's menu (default: all). One layer keeps the page
        small (the weights of every layer and head of a 40-token window are ~1.5 MB of JSON).

    Returns
    -------
    str
        HTML with d3 and jQuery inlined (no request to the internet): bertviz's own page
        loads require.js, d3 and jQuery from a CDN, which fails offline.
    """
    import torch
    from bertviz import head_view

    att = np.round(np.asarray(attentions, dtype=np.float64), 3)  # 3 decimals: a few hundred kB of JSON, not MBs
    if att.ndim != 4 or att.shape[2:] != (len(tokens), len(tokens)):
        raise ValueError(f"attentions must be (layers, heads, {len(tokens)}, {len(tokens)}), got {att.shape}")
    per_layer = [torch.from_numpy(np.ascontiguousarray(att[i]))[None] for i in range(att.shape[0])]
    include = [int(i) for i in (layers if layers is not None else range(att.shape[0]))]
    if int(layer) not in include:
        raise ValueError(f"layer {layer} is not among the layers shown {include}")
    # a token cannot end the inline <script> early ("</" is written "<\/" in the JSON)
    tokens = [str(t).replace("</", "<\\/") for t in tokens]
    html = head_view(per_layer, list(tokens), layer=int(layer), heads=list(heads) if heads is not None else None,
                     include_layers=include, html_action="return").data
    html, n_cdn = _CDN_SCRIPT.subn("", html)
    html, n_req = _REQUIRE_OPEN.subn("(function ($, d3) {", html, count=1)
    if n_cdn < 1 or n_req != 1 or _LAYER_OPTION not in html:
        raise HeadViewError("unexpected bertviz head_view HTML (is bertviz 1.4.1 installed?)")
    # 1-based layer names in the menu (values stay 0-based, as bertviz expects)
    html = html.replace(_LAYER_OPTION, 'layerEl.append($("<option />").val(layer).text("L" + (layer + 1)));')
    # close the former requirejs callback as an immediately invoked function
    end = html.rstrip().rfind("});")
    if end < 0:
        raise HeadViewError("unexpected bertviz head_view HTML: no end of the requirejs callback")
    html = html[:end] + "})(window.jQuery, window.d3);" + html[end + 3:]
    libs = "".join(f"<script>{(JS_DIR / name).read_text(encoding='utf-8')}</script>\n"
                   for name in ("jquery-3.6.0.min.js", "d3-5.7.0.min.js"))
    import html as _html

    head = f"<div style='font:600 14px sans-serif;margin:4px 0'>{_html.escape(title)}</div>" if title else ""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0;background:white'>\n"
            + libs + head + html + "\n</body></html>")


def head_view_params(html: str) -> dict:
    """The ``params`` JSON embedded in a :func:`head_view_html` page (for tests)."""
    m = re.search(r"const params = (\{.*?\}); // HACK", html, re.S)
    if not m:
        raise HeadViewError("no params in the head view HTML")
    return json.loads(m.group(1))
