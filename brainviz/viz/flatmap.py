"""2-D flat maps of fsaverage5 (nilearn's ``flat`` mesh) that support box/lasso selection.

Every cortex vertex is one point of a single ``Scattergl`` trace whose ``customdata`` is the
vertex index (0..20483), so a Streamlit selection (``st.plotly_chart(fig, on_select="rerun",
selection_mode=("box", "lasso"))``) maps back to vertices with :func:`selected_vertices`.
The left hemisphere is drawn on the left, the right one on the right.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainviz.viz import _mesh
from brainviz.viz._common import add_simulated_badge, display_values, masked_colorscale

N_PER_HEMI = _mesh.N_PER_HEMI
HEMIS = _mesh.HEMIS
_GAP = 20.0


def flat_coordinates(hemi: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """``(vertex indices (n,), xy (n, 2) float32)`` of the cortex vertices on the flat map."""
    hemis = HEMIS if hemi == "both" else (hemi,)
    idx, xy = [], []
    for h_name in hemis:
        h = HEMIS.index(h_name)
        verts = _mesh.cortex_vertices(h_name)
        coords = _mesh.mesh("flat", h_name)[0][verts, :2].astype(np.float32).copy()
        if hemi == "both":
            if h_name == "left":
                coords[:, 0] -= coords[:, 0].max() + _GAP / 2
            else:
                coords[:, 0] -= coords[:, 0].min() - _GAP / 2
        idx.append(verts + h * N_PER_HEMI)
        xy.append(coords)
    return np.concatenate(idx), np.concatenate(xy)


def flat_map(
    values,
    *,
    mask=None,
    threshold: float | None = None,
    hemi: str = "both",
    outline=None,
    colorscale: str = "RdBu_r",
    symmetric: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar_title: str = "",
    simulated: bool = False,
    marker_size: float = 3.0,
    height: int = 460,
    selected=None,
):
    """Plotly figure of a flat map with one selectable point per cortex vertex.

    Parameters are those of :func:`brainviz.viz.cortex.cortical_map`; ``selected`` (vertex
    indices) are ringed.

    Returns
    -------
    plotly.graph_objects.Figure
        Trace 0 is the map (``customdata`` = vertex index); then an outline trace when
        ``outline`` has boundary vertices, then a selection trace when ``selected`` is given.
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=np.float64)
    if values.shape != (2 * N_PER_HEMI,):
        raise ValueError(f"values must have shape ({2 * N_PER_HEMI},), got {values.shape}")
    if hemi not in ("left", "right", "both"):
        raise ValueError(f"unknown hemisphere {hemi!r}")
    intensity, lo, hi, band, shown = display_values(
        values, mask=mask, threshold=threshold, symmetric=symmetric, vmin=vmin, vmax=vmax,
    )
    cscale = masked_colorscale(colorscale, lo, hi, band)
    idx, xy = flat_coordinates(hemi)
    xy = np.round(xy, 1)
    traces = [
        go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers",
            customdata=idx.astype(np.int32),
            marker=dict(
                size=marker_size, color=intensity[idx], colorscale=cscale, cmin=lo, cmax=hi,
                showscale=True, colorbar=dict(title=dict(text=colorbar_title), len=0.8, thickness=14),
            ),
            name="vertices",
            hovertemplate="vertex %{customdata}<br>value %{marker.color:.4g}<extra></extra>",
            selected=dict(marker=dict(opacity=1.0)),
            unselected=dict(marker=dict(opacity=0.35)),
        )
    ]
    if outline is not None:
        from brainviz.viz.cortex import boundary_mask

        edge = boundary_mask(outline)
        pick = edge[idx]
        if pick.any():
            traces.append(
                go.Scattergl(
                    x=xy[pick, 0], y=xy[pick, 1], mode="markers",
                    marker=dict(size=max(marker_size * 0.6, 1.5), color="black"),
                    name="outline", hoverinfo="skip", showlegend=False,
                )
            )
    if selected is not None and len(selected):
        pos = {int(v): i for i, v in enumerate(idx)}
        rows = [pos[int(v)] for v in selected if int(v) in pos]
        if rows:
            traces.append(
                go.Scattergl(
                    x=xy[rows, 0], y=xy[rows, 1], mode="markers",
                    marker=dict(size=marker_size + 3, color="rgba(0,0,0,0)", line=dict(width=1, color="#222")),
                    name="selection", hoverinfo="skip", showlegend=False,
                )
            )
    fig = go.Figure(traces)
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=height,
        margin=dict(l=0, r=0, t=40 if title else 24, b=0),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor="x", scaleratio=1),
        plot_bgcolor="white", paper_bgcolor="white",
        dragmode="lasso", showlegend=False,
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
        if cd is None:
            continue
        out.append(int(cd))
    return np.unique(np.asarray(out, dtype=np.int64))
