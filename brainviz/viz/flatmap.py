"""2-D flat maps of fsaverage5 (nilearn's ``flat`` mesh) with curvature shading and selection.

The map itself is an image drawn on the server from the flat mesh's triangles
(:mod:`brainviz.viz._raster`): the values in colour over the curvature-shaded grey cortex (gyri
light, sulci dark), optional region outlines, the left hemisphere on the left and the right one
on the right, labelled L and R. Over it lies one transparent ``Scattergl`` point per
cortex vertex whose ``customdata`` is its vertex index (0..20483) and whose colour value is
the map value: hover names both, and a Streamlit selection (``st.plotly_chart(fig, on_select="rerun",
selection_mode=("points", "box", "lasso"))``) maps back to vertices with
:func:`selected_vertices`. The drag mode is ``pan`` so that a click selects the vertex under
it (Streamlit ignores clicks in the lasso/box modes); the toolbar's Lasso and Box Select tools
draw group selections. The same image is available as PNG bytes (:func:`flat_png`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from brainviz import surface
from brainviz.viz import _raster
from brainviz.viz._common import add_simulated_badge

N_PER_HEMI = surface.N_PER_HEMI
HEMIS = surface.HEMIS
PX_PER_MM = 2.0
_GAP_PX = 24


def _layout(hemi: str, px_per_mm: float) -> list[tuple[str, _raster.ViewRaster, int]]:
    hemis = HEMIS if hemi == "both" else (hemi,)
    out, x = [], 0
    for h in hemis:
        r = _raster.view_raster("flat", h, "flat", px_per_mm)
        out.append((h, r, x))
        x += r.width + _GAP_PX
    return out


def flat_coordinates(hemi: str = "both", px_per_mm: float = PX_PER_MM) -> tuple[np.ndarray, np.ndarray]:
    """``(vertex indices (n,), xy (n, 2) float32)`` of the cortex vertices on the flat map.

    ``xy`` are image coordinates of :func:`flat_image` (x = column, y = −row), so the points
    sit on the drawn map.
    """
    if hemi not in ("left", "right", "both"):
        raise ValueError(f"unknown hemisphere {hemi!r}")
    idx, xy = [], []
    for h_name, r, x0 in _layout(hemi, px_per_mm):
        h = HEMIS.index(h_name)
        verts = surface.cortex_vertices(h_name)
        coords = surface.mesh("flat", h_name)[0][verts, :2]
        col, row = r.to_pixel(coords[:, 0], coords[:, 1])
        idx.append(verts + h * N_PER_HEMI)
        xy.append(np.c_[col + x0, -row].astype(np.float32))
    return np.concatenate(idx), np.concatenate(xy)


def flat_image(
    values,
    *,
    mask=None,
    threshold: float | None = None,
    vmax: float | None = None,
    center: float = 0.0,
    cmap: str = "RdBu_r",
    hemi: str = "both",
    outline=None,
    px_per_mm: float = PX_PER_MM,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(RGB uint8 image, shown mask (20484,), lo, hi)`` of a flat map (colour rules of
    :func:`brainviz.viz.montage.vertex_colors`)."""
    from brainviz.viz.montage import vertex_colors

    if hemi not in ("left", "right", "both"):
        raise ValueError(f"unknown hemisphere {hemi!r}")
    rgb, shown, lo, hi = vertex_colors(values, center=center, vmax=vmax, threshold=threshold, mask=mask, cmap=cmap)
    layout = _layout(hemi, px_per_mm)
    height = max(r.height for _, r, _ in layout)
    width = layout[-1][2] + layout[-1][1].width
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    for h_name, r, x0 in layout:
        sl = surface.hemisphere_slice(h_name)
        lab = None if outline is None else np.asarray(outline)[sl]
        img[: r.height, x0 : x0 + r.width] = _raster.render(r, rgb[sl], shade=False, labels=lab)
    return img, shown, lo, hi


def flat_png(values, **kwargs) -> bytes:
    """PNG bytes of :func:`flat_image` (no labels or colour bar; see :func:`flat_map`)."""
    from PIL import Image

    img = flat_image(values, **kwargs)[0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _data_uri(img: np.ndarray) -> str:
    """A compact PNG data URI (palette of 255 colours: a third of the bytes, lines stay crisp)."""
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).quantize(255, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plotly_colorscale(cmap: str, lo: float, hi: float, center: float, threshold: float | None, n: int = 21) -> list:
    """A plotly colour scale of a :data:`brainviz.viz.montage.COLORMAPS` map over ``[lo, hi]``
    with the hidden band ``|v - center| < threshold`` grey."""
    from brainviz.viz.montage import colormap_lut

    lut = colormap_lut(cmap)
    pos = np.linspace(0.0, 1.0, n)
    if threshold:
        b0 = (center - threshold - lo) / (hi - lo)
        b1 = (center + threshold - lo) / (hi - lo)
        pos = np.unique(np.clip(np.r_[pos, b0, b1, b0 - 1e-6, b1 + 1e-6], 0.0, 1.0))
    out = []
    for p in pos:
        v = lo + p * (hi - lo)
        if threshold and abs(v - center) < threshold:
            c = (0.75, 0.75, 0.75)
        else:
            c = lut[int(round(p * (len(lut) - 1)))]
        out.append([float(p), "rgb({},{},{})".format(*(int(round(x * 255)) for x in c))])
    return out


def flat_map(
    values,
    *,
    mask=None,
    threshold: float | None = None,
    hemi: str = "both",
    outline=None,
    colorscale: str = "RdBu_r",
    center: float = 0.0,
    vmax: float | None = None,
    title: str | None = None,
    colorbar_title: str = "",
    simulated: bool = False,
    marker_size: float = 5.0,
    height: int = 520,
    selected=None,
    px_per_mm: float = PX_PER_MM,
):
    """Plotly figure of a curvature-shaded flat map with one selectable point per cortex vertex.

    Parameters
    ----------
    values, mask, threshold, center, vmax, outline
        As :func:`brainviz.viz.montage.montage_png` (``colorscale`` is one of its colour maps).
    hemi : 'both', 'left' or 'right'
    selected : vertex indices, optional
        Ringed on the map.

    Returns
    -------
    plotly.graph_objects.Figure
        The map is a layout image; trace 0 holds the vertex points (``customdata`` = vertex,
        ``marker.color`` = value) and the colour bar; then a selection trace when ``selected`` is given.
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=np.float64)
    if values.shape != (surface.N_VERTICES,):
        raise ValueError(f"values must have shape ({surface.N_VERTICES},), got {values.shape}")
    img, shown, lo, hi = flat_image(values, mask=mask, threshold=threshold, vmax=vmax, center=center,
                                    cmap=colorscale, hemi=hemi, outline=outline, px_per_mm=px_per_mm)
    idx, xy = flat_coordinates(hemi, px_per_mm)
    xy = np.round(xy, 1)
    vals = np.round(values[idx], 4).astype(np.float32)
    cscale = plotly_colorscale(colorscale, lo, hi, center, threshold)
    traces = [
        go.Scattergl(
            # customdata: the vertex index (1-D: Streamlit's selection events return it as a number)
            x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=idx.astype(np.int32),
            marker=dict(size=marker_size, color=np.nan_to_num(vals, nan=center), colorscale=cscale,
                        cmin=lo, cmax=hi, opacity=0.0, showscale=True,
                        colorbar=dict(title=dict(text=colorbar_title, side="right"), len=0.8, thickness=14)),
            name="vertices",
            hovertemplate="vertex %{customdata}<br>value %{marker.color:.4g}<extra></extra>",
            selected=dict(marker=dict(opacity=0.9, color="#212529", size=marker_size)),
            unselected=dict(marker=dict(opacity=0.0)),
        )
    ]
    if selected is not None and len(selected):
        pos = {int(v): i for i, v in enumerate(idx)}
        rows = [pos[int(v)] for v in selected if int(v) in pos]
        if rows:
            traces.append(go.Scattergl(
                x=xy[rows, 0], y=xy[rows, 1], mode="markers",
                marker=dict(size=marker_size + 3, color="rgba(0,0,0,0)", line=dict(width=1.5, color="#212529")),
                name="selection", hoverinfo="skip", showlegend=False))
    fig = go.Figure(traces)
    h_img, w_img = img.shape[:2]
    fig.add_layout_image(dict(source=_data_uri(img), xref="x", yref="y", x=0, y=0, sizex=w_img, sizey=h_img,
                              sizing="stretch", layer="below", xanchor="left", yanchor="top"))
    for h_name, r, x0 in _layout(hemi, px_per_mm):
        fig.add_annotation(x=x0 + r.width / 2, y=8, text=f"<b>{'L' if h_name == 'left' else 'R'}</b> "
                           f"({h_name} hemisphere)", showarrow=False, yanchor="bottom", font=dict(size=14))
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=height,
        margin=dict(l=0, r=0, t=60 if title else 36, b=0),
        xaxis=dict(visible=False, range=[-2, w_img + 2]),
        yaxis=dict(visible=False, scaleanchor="x", scaleratio=1, range=[-h_img - 2, 30]),
        plot_bgcolor="white", paper_bgcolor="white",
        # "pan": Streamlit then makes a click select the vertex under it (in lasso/select drag modes
        # it ignores clicks); the toolbar's Lasso / Box select tools draw group selections
        dragmode="pan", showlegend=False,
        uirevision=f"flat-{hemi}",
    )
    add_simulated_badge(fig, simulated)
    fig._brainviz_shown = shown  # type: ignore[attr-defined]
    return fig


def selected_vertices(event: Any) -> np.ndarray:
    """Vertex indices selected in a flat map, from a Streamlit ``on_select`` event.

    Accepts the event object/dict returned by ``st.plotly_chart(..., on_select="rerun")``
    (``event["selection"]["points"]``), the ``selection`` dict itself, or a list of points.
    Only points of the map trace (``curve_number`` 0) count.
    """
    if event is None:
        return np.array([], dtype=np.int64)
    points = event
    if isinstance(points, dict) or hasattr(points, "get"):
        sel = points.get("selection", points)
        points = sel.get("points", []) if hasattr(sel, "get") else []
    out = []
    for p in points or []:
        if p.get("curve_number", 0) != 0:
            continue
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if isinstance(cd, dict):  # a serialised array: take its first entry when it has one
            cd = cd.get("0", next(iter(cd.values()), None)) if cd else None
        try:
            out.append(int(round(float(cd))))
        except (TypeError, ValueError):
            continue
    return np.unique(np.asarray(out, dtype=np.int64))
