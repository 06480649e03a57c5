"""Helpers shared by the figure builders: simulated badge, colour scales, rounding."""

from __future__ import annotations

import numpy as np

SIMULATED_TEXT = "SIMULATED DATA"
BADGE_COLOR = "#d9480f"
MASK_COLOR = "rgb(200,200,200)"
DEFAULT_DECIMALS = 4


def add_simulated_badge(fig, simulated: bool = True):
    """Stamp a visible "SIMULATED DATA" badge on a figure (kept in every export).

    The badge sits in the top-right corner *inside* the plotting area (not in the top margin),
    so it never hides plotly's toolbar, which appears in the margin above it.
    """
    if not simulated:
        return fig
    fig.add_annotation(
        text=f"<b>{SIMULATED_TEXT}</b>",
        xref="paper", yref="paper", x=1.0, y=1.0, xanchor="right", yanchor="top", xshift=-2, yshift=-2,
        showarrow=False, font=dict(color="white", size=12),
        bgcolor=BADGE_COLOR, bordercolor=BADGE_COLOR, borderpad=3, name="simulated-badge",
    )
    return fig


def has_simulated_badge(fig) -> bool:
    return any(SIMULATED_TEXT in (a.text or "") for a in fig.layout.annotations)


def rounded(values, decimals: int = DEFAULT_DECIMALS) -> np.ndarray:
    """float32 copy rounded to ``decimals`` (NaN kept)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).astype(np.float32)


def masked_colorscale(base: str, lo: float, hi: float, band: tuple[float, float] | None,
                      mask_color: str | tuple[str, str] = MASK_COLOR, n: int = 11) -> list:
    """A plotly colour scale over ``[lo, hi]`` whose ``band`` (value interval) is grey.

    Thresholded maps put their hidden vertices on a value inside the grey band (the centre of
    a diverging map, the bottom of a sequential one), so the colour bar shows exactly which
    range is hidden.
    """
    import plotly.colors as pc

    span = hi - lo if hi > lo else 1.0
    positions = np.linspace(0.0, 1.0, n)
    colors = pc.sample_colorscale(base, list(positions))
    if band is None:
        return [[float(p), c] for p, c in zip(positions, colors)]
    b0 = float(np.clip((band[0] - lo) / span, 0.0, 1.0))
    b1 = float(np.clip((band[1] - lo) / span, 0.0, 1.0))
    out: list = []
    for p, c in zip(positions, colors):
        if p < b0:
            out.append([float(p), c])
    if b0 > 0:
        out.append([b0, pc.sample_colorscale(base, [b0])[0]])
    dark, light = (mask_color, mask_color) if isinstance(mask_color, str) else mask_color
    out.append([b0, dark])
    out.append([b1, light])
    if b1 < 1:
        out.append([b1, pc.sample_colorscale(base, [b1])[0]])
    for p, c in zip(positions, colors):
        if p > b1:
            out.append([float(p), c])
    if out[0][0] > 0:
        out.insert(0, [0.0, out[0][1]])
    if out[-1][0] < 1:
        out.append([1.0, out[-1][1]])
    return out


def display_values(
    values,
    *,
    mask=None,
    threshold: float | None = None,
    symmetric: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    decimals: int | None = None,
    background=None,
    center: float = 0.0,
):
    """Values to colour, the colour range, the grey band and the shown-vertex mask.

    Parameters
    ----------
    values : array (n,)
        Map values (NaN = no value).
    mask : bool array (n,), optional
        True where a vertex may be shown (e.g. ``q < alpha``); others are greyed.
    threshold : float, optional
        Also hide ``|v| < threshold`` (symmetric maps) or ``v < threshold`` (sequential).
    symmetric : bool
        Diverging map centred on ``center`` (0 for A - B, chance 0.5 for a 20-vs-20 accuracy)
        rather than a sequential one.
    center : float
        Neutral value of a diverging map; ``threshold`` then hides ``|v - center| < threshold``
        and ``vmax`` is a distance from ``center``.
    decimals : int, optional
        Rounding of the output; by default 4 significant digits of the colour range.
    background : array (n,) in [0, 1], optional
        Shading of hidden vertices (e.g. sulcal depth): placed inside the grey band so a
        dark-to-light grey colour scale band shows the folding.

    Returns
    -------
    (intensity float32 (n,), lo, hi, band, shown bool (n,))
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    shown = finite.copy()
    if mask is not None:
        shown &= np.asarray(mask, dtype=bool)
    c = float(center) if symmetric else 0.0
    if threshold is not None:
        with np.errstate(invalid="ignore"):
            shown &= (np.abs(v - c) >= threshold) if symmetric else (v >= threshold)
    ref = v[finite] if finite.any() else np.array([0.0, 1.0])
    if symmetric:
        m = vmax if vmax is not None else float(np.nanmax(np.abs(ref - c))) if ref.size else 1.0
        m = m if m > 0 else 1.0
        lo, hi = c - m, c + m
        half = threshold * (1 - 1e-4) if threshold else 0.004 * m
        band = (c - half, c + half)
        fill = c
    else:
        lo = vmin if vmin is not None else float(np.nanmin(ref))
        hi = vmax if vmax is not None else float(np.nanmax(ref))
        if hi <= lo:
            hi = lo + 1.0
        top = threshold * (1 - 1e-4) + 1e-4 * lo if threshold is not None and threshold > lo else lo + 0.004 * (hi - lo)
        band = (lo, min(top, hi))
        fill = lo
    if background is not None:
        bg = np.clip(np.nan_to_num(np.asarray(background, dtype=np.float64), nan=0.5), 0.0, 1.0)
        width = band[1] - band[0]
        fill = band[0] + width * (0.1 + 0.8 * bg)
    out = np.where(shown, np.clip(v, lo, hi), fill)
    if symmetric:
        # a shown vertex inside the grey band would look hidden: push it to the band's edge
        edge = (band[1] - c) + 0.002 * (hi - lo)
        inside = shown & (np.abs(out - c) <= band[1] - c)
        out[inside] = np.where(out[inside] < c, c - edge, c + edge)
    else:
        edge = band[1] + 0.002 * (hi - lo)
        inside = shown & (out <= band[1])
        out[inside] = edge
    if decimals is None:
        scale = max(abs(lo), abs(hi), 1e-12)
        decimals = int(max(0, DEFAULT_DECIMALS - np.floor(np.log10(scale))))
        decimals = max(decimals, int(np.ceil(-np.log10(max(band[1] - band[0], 1e-12)))) + 2)
    return rounded(out, decimals), float(lo), float(hi), band, shown
