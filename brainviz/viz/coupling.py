"""AN-BN coupling figures and the query/key text heatmap (red: queries, blue: keys)."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from brainviz.viz._common import SIMULATED_TEXT, add_simulated_badge, BADGE_COLOR


def best_r_distribution(pairs, *, r_threshold: float = 0.25, simulated: bool = False,
                        title: str | None = None, height: int = 380):
    """Per-layer distribution (box) of every AN's best PCC, with the share below ``r_threshold``.

    ``pairs`` is ``CouplingResult.pairs()`` (columns ``layer, r``). One box trace per layer.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    layers = sorted(int(x) for x in pairs["layer"].unique())
    fracs = []
    for layer in layers:
        r = pairs.loc[pairs["layer"] == layer, "r"].to_numpy(dtype=float)
        frac = float((r < r_threshold).mean()) if r.size else float("nan")
        fracs.append(frac)
        fig.add_trace(go.Box(y=np.round(r, 4), name=f"L{layer}", boxpoints=False, marker_color="#495057",
                             hovertemplate=f"layer {layer}<br>r %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=r_threshold, line=dict(color="#c92a2a", dash="dash"),
                  annotation_text=f"r = {r_threshold}", annotation_position="top left")
    for layer, frac in zip(layers, fracs):
        fig.add_annotation(x=f"L{layer}", y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                           text=f"{frac:.0%} < {r_threshold}", font=dict(size=10, color="#c92a2a"))
    fig.update_layout(title=dict(text=title or "Best PCC of each AN, per layer"), yaxis_title="best r (AN vs BNs)",
                      xaxis_title="layer", height=height, showlegend=False, margin=dict(l=60, r=20, t=70, b=40),
                      plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)


def best_pair_per_layer(best, *, simulated: bool = False, title: str | None = None, height: int = 320):
    """Bar per layer of the best AN-BN pair's r (``CouplingResult.best_pair_per_layer()``)."""
    import plotly.graph_objects as go

    text = [f"{n} ↔ BN{b}" for n, b in zip(best["name"], best["bn"])]
    fig = go.Figure(go.Bar(x=[f"L{int(l)}" for l in best["layer"]], y=np.round(best["r"].to_numpy(dtype=float), 4),
                           text=text, textposition="outside", marker_color="#1864ab",
                           hovertemplate="%{x}: %{text}<br>r %{y:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=title or "Best AN-BN pair per layer"), yaxis_title="r", height=height,
                      margin=dict(l=60, r=20, t=60, b=40), plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)


def timecourses(times, an, bn, *, an_label: str = "AN", bn_label: str = "BN", r: float | None = None,
                simulated: bool = False, title: str | None = None, height: int = 320):
    """AN and BN time courses (each z-scored) over the story's TRs: two traces."""
    import plotly.graph_objects as go

    def z(x):
        x = np.asarray(x, dtype=np.float64)
        sd = x.std()
        return (x - x.mean()) / sd if sd > 0 else x * 0

    t = np.round(np.asarray(times, dtype=np.float64), 3)
    fig = go.Figure([
        go.Scatter(x=t, y=np.round(z(an), 4), mode="lines", name=an_label, line=dict(color="#c92a2a", width=1.6)),
        go.Scatter(x=t, y=np.round(z(bn), 4), mode="lines", name=bn_label, line=dict(color="#1864ab", width=1.6)),
    ])
    head = title or f"{an_label} vs {bn_label}" + (f" (r = {r:.3f})" if r is not None else "")
    fig.update_layout(title=dict(text=head), xaxis_title="time (s)", yaxis_title="z-score", height=height,
                      margin=dict(l=60, r=20, t=60, b=40), plot_bgcolor="white", legend=dict(orientation="h", y=-0.25))
    return add_simulated_badge(fig, simulated)


def pos_distribution(table, *, top: int = 15, simulated: bool = False, title: str | None = None, height: int = 360):
    """Bar chart of an AN's query→key POS category counts (17 x 17 table, top cells)."""
    import plotly.graph_objects as go

    s = table.stack()
    s = s[s > 0].sort_values(ascending=False).head(top)
    labels = [f"{q}→{k}" for q, k in s.index]
    fig = go.Figure(go.Bar(x=labels, y=s.to_numpy(dtype=float), marker_color="#5f3dc4",
                           hovertemplate="%{x}: %{y} pairs<extra></extra>"))
    fig.update_layout(title=dict(text=title or "POS categories of the AN's top query→key pairs"),
                      yaxis_title="pairs", xaxis=dict(tickangle=-45), height=height,
                      margin=dict(l=60, r=20, t=60, b=100), plot_bgcolor="white")
    return add_simulated_badge(fig, simulated)


def _shade(score: float, top: float, rgb: tuple[int, int, int]) -> str:
    a = 0.0 if top <= 0 else min(1.0, score / top)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.08 + 0.82 * a:.2f})" if a > 0 else "transparent"


def text_heatmap_html(
    tokens: Sequence[str],
    query_score: Sequence[float],
    key_score: Sequence[float],
    *,
    segment: Sequence[int] | None = None,
    max_tokens: int = 600,
    simulated: bool = False,
) -> str:
    """HTML of the story's tokens shaded by how strongly each is a query (red) or key (blue)
    in the AN's top query-key pairs; a token that is both gets a red background and a blue
    underline. Text is escaped; word pieces (``##x``) are joined to the previous token.

    Only the ``max_tokens`` tokens around the strongest scores are shown.
    """
    toks = [str(t) for t in tokens]
    q = np.asarray(query_score, dtype=np.float64)
    k = np.asarray(key_score, dtype=np.float64)
    n = len(toks)
    lo, hi = 0, n
    if n > max_tokens:
        centre = int(np.argmax(q + k))
        lo = max(0, min(centre - max_tokens // 2, n - max_tokens))
        hi = lo + max_tokens
    qt = float(q[lo:hi].max()) if hi > lo else 0.0
    kt = float(k[lo:hi].max()) if hi > lo else 0.0
    parts = []
    if simulated:
        parts.append(f'<div style="display:inline-block;background:{BADGE_COLOR};color:white;padding:1px 6px;'
                     f'font-weight:bold;font-size:12px;border-radius:3px;margin-bottom:6px">{SIMULATED_TEXT}</div><br>')
    parts.append('<div class="bv-text-heatmap" style="line-height:1.9;font-family:sans-serif;font-size:14px">')
    if lo > 0:
        parts.append("… ")
    prev_seg = None if segment is None else segment[lo] if lo < n else None
    for i in range(lo, hi):
        t = toks[i]
        if segment is not None and segment[i] != prev_seg:
            parts.append('<span style="color:#adb5bd"> ‖ </span>')
            prev_seg = segment[i]
        piece = t.startswith("##")
        text = html.escape(t[2:] if piece else t)
        bg = _shade(q[i], qt, (224, 49, 49)) if q[i] > 0 else _shade(k[i], kt, (25, 113, 194))
        style = f"background:{bg};border-radius:2px;padding:0 1px"
        if q[i] > 0 and k[i] > 0:
            style += ";border-bottom:3px solid rgba(25,113,194,0.9)"
        title = f"query {q[i]:.3g} | key {k[i]:.3g}"
        parts.append(("" if piece or i == lo else " ") + f'<span title="{title}" style="{style}">{text}</span>')
    if hi < n:
        parts.append(" …")
    parts.append("</div>")
    parts.append('<div style="font-size:12px;margin-top:4px"><span style="background:rgba(224,49,49,0.7);'
                 'padding:0 4px">query</span> <span style="background:rgba(25,113,194,0.7);padding:0 4px">key</span>'
                 ' (shade = summed |q·k| over the top pairs)</div>')
    return "".join(parts)


def one_based(df):
    """Copy of a pairs table with 1-based ``layer``/``head``/``dim`` and AN names ``L1H1D1`` (as the
    Attention page and the paper write them); the library's tables are 0-based."""
    out = df.copy()
    for col in ("layer", "head", "dim"):
        if col in out:
            out[col] = out[col].astype(int) + 1
    if {"layer", "head", "dim"} <= set(out.columns) and "name" in out:
        out["name"] = [f"L{la}H{h}D{d}" for la, h, d in zip(out["layer"], out["head"], out["dim"])]
    return out


def an_label(layer: int, head: int, dim: int) -> str:
    """1-based display name of a 0-based (layer, head, dim)."""
    return f"L{int(layer) + 1}H{int(head) + 1}D{int(dim) + 1}"


def an_label_of(an: int, n_heads: int, head_dim: int) -> str:
    """1-based display name of AN number ``an = (layer * n_heads + head) * head_dim + dim``."""
    layer_head, dim = divmod(int(an), int(head_dim))
    layer, head = divmod(layer_head, int(n_heads))
    return an_label(layer, head, dim)


OUTCOME_COLORS = {"found": "#2b8a3e", "missed": "#868e96", "false coupling": "#c92a2a", "none (correct)": "#1864ab"}


def planted_vs_recovered(rec, *, simulated: bool = True, title: str | None = None, height: int | None = None):
    """Forest plot of the validated coupling of every planted network's matched BN, per test story.

    ``rec`` is :func:`brainviz.coupling.planted_recovery`: one marker per (network, test story) at
    ``r_test`` with its 95 % interval, coloured by outcome (found / missed / false coupling /
    none), the network's role and matched BN in the label.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [f"{n} ({'control' if r == 'control' else 'coupled'}) · BN {b}"
              for n, r, b in zip(rec["network"], rec["role"], rec["bn"])]
    rec = rec.assign(_label=labels)
    stories = list(dict.fromkeys(rec["test_on"]))
    symbols = ["circle", "diamond", "square", "triangle-up"]
    for outcome, color in OUTCOME_COLORS.items():
        for si, story in enumerate(stories):
            sub = rec[(rec["outcome"] == outcome) & (rec["test_on"] == story)]
            if sub.empty:
                continue
            r = sub["r_test"].to_numpy(dtype=float)
            lo = sub["ci_low"].to_numpy(dtype=float)
            hi = sub["ci_high"].to_numpy(dtype=float)
            fig.add_trace(go.Scatter(
                x=np.round(r, 4), y=sub["_label"], mode="markers", name=f"{outcome} · test {story}",
                marker=dict(color=color, size=10, symbol=symbols[si % len(symbols)]),
                error_x=dict(type="data", symmetric=False, array=np.round(hi - r, 4), arrayminus=np.round(r - lo, 4),
                             color=color, thickness=1.2),
                customdata=np.stack([sub["q"].to_numpy(dtype=float), sub["an"].to_numpy()], axis=1),
                hovertemplate="%{y}<br>r on " + story + " %{x:.3f}<br>q %{customdata[0]:.4f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#adb5bd"))
    n = len(set(labels))
    fig.update_layout(title=dict(text=title or "Planted networks: cross-story validated coupling of the matched BN"),
                      xaxis_title="r of the selected AN-BN pair on the test story (95 % block-bootstrap interval)",
                      height=height or max(300, 60 + 42 * n), margin=dict(l=220, r=20, t=60, b=50),
                      plot_bgcolor="white", legend=dict(orientation="h", y=-0.25))
    return add_simulated_badge(fig, simulated)
