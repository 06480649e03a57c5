"""3-D cortical maps on fsaverage5 (plotly ``Mesh3d``), one trace per hemisphere.

Values are a vector of 20,484 (left hemisphere first, as everywhere in brainviz). Hidden
vertices (not significant, below threshold, medial wall, NaN) are drawn grey with sulcal
shading; an optional label vector is drawn as an outline (its boundary vertices).

The payload stays well under 2 MB: coordinates float32 and faces uint16 go out as base64
typed arrays, values are rounded float32, and each hemisphere is a single trace.

Examples
--------
>>> fig = cortical_map(diff, mask=q < 0.05, mesh="inflated", hemi="left", view="lateral")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from brainviz import surface
from brainviz.viz._common import add_simulated_badge, display_values, masked_colorscale

N_PER_HEMI = surface.N_PER_HEMI
HEMIS = surface.HEMIS
MESHES = ("inflated", "pial")
VIEWS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")
HEMI_CHOICES = ("left", "right", "both")
_INFLATED_GAP = 4.0  # mm between the two inflated hemispheres when both are shown


def camera(view: str = "lateral", hemi: str = "left") -> dict:
    """Plotly 3-D camera for a named view of one hemisphere (or both)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    r = 1.9
    side = -1.0 if hemi in ("left", "both") else 1.0
    eyes = {
        "lateral": (side * r, 0.0, 0.0),
        "medial": (-side * r, 0.0, 0.0),
        "dorsal": (0.0, 0.0, r),
        "ventral": (0.0, 0.0, -r),
        "anterior": (0.0, r, 0.0),
        "posterior": (0.0, -r, 0.0),
    }
    x, y, z = eyes[view]
    up = (0.0, 1.0, 0.0) if view in ("dorsal", "ventral") else (0.0, 0.0, 1.0)
    return {"eye": dict(x=x, y=y, z=z), "up": dict(x=up[0], y=up[1], z=up[2]), "center": dict(x=0, y=0, z=0)}


def boundary_mask(labels) -> np.ndarray:
    """True on labelled vertices (label != 0) that have a neighbour with another label.

    ``labels`` is an integer (or boolean) vector of 20,484 values, 0 = unlabelled.
    """
    labels = np.asarray(labels)
    if labels.shape != (2 * N_PER_HEMI,):
        raise ValueError(f"labels must have shape ({2 * N_PER_HEMI},), got {labels.shape}")
    lab = labels.astype(np.int64) if labels.dtype != bool else labels.astype(np.int64)
    out = np.zeros(2 * N_PER_HEMI, dtype=bool)
    for h, hemi in enumerate(HEMIS):
        part = lab[h * N_PER_HEMI : (h + 1) * N_PER_HEMI]
        e = surface.edges(hemi)
        diff = part[e[:, 0]] != part[e[:, 1]]
        hit = np.zeros(N_PER_HEMI, dtype=bool)
        hit[e[diff, 0]] = True
        hit[e[diff, 1]] = True
        out[h * N_PER_HEMI : (h + 1) * N_PER_HEMI] = hit & (part != 0)
    return out


def _hemi_coords(kind: str, hemi: str, both: bool, view: str = "lateral") -> np.ndarray:
    """Coordinates of one hemisphere as drawn; with ``both`` hemispheres in a lateral or medial
    view the right one is turned 180° about the vertical axis and the two are set side by side,
    so that the camera sees both lateral (or both medial) surfaces at once."""
    coords, _ = surface.mesh(kind, hemi)
    if not both:
        return coords
    coords = coords.astype(np.float32).copy()
    if view in ("lateral", "medial"):
        coords -= coords.mean(axis=0)
        if hemi == "right":
            coords[:, 0] *= -1.0
            coords[:, 1] *= -1.0
        half = max(float(np.ptp(surface.mesh(kind, h)[0][:, 1])) for h in HEMIS) / 2 + _INFLATED_GAP
        # the camera looks along +x (lateral) or -x (medial): screen-left is +y or -y
        screen_left = 1.0 if view == "lateral" else -1.0
        coords[:, 1] += screen_left * half * (1.0 if hemi == "left" else -1.0)
    elif kind == "inflated":
        if hemi == "left":
            coords[:, 0] -= coords[:, 0].max() + _INFLATED_GAP / 2
        else:
            coords[:, 0] -= coords[:, 0].min() - _INFLATED_GAP / 2
    return coords


def cortical_map(
    values,
    *,
    mask=None,
    threshold: float | None = None,
    mesh: str = "inflated",
    hemi: str = "left",
    view: str = "lateral",
    outline=None,
    outline_color: str = "black",
    colorscale: str = "RdBu_r",
    symmetric: bool = True,
    center: float = 0.0,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar_title: str = "",
    simulated: bool = False,
    height: int = 480,
    shade: bool = True,
):
    """Plotly figure of a cortical map on fsaverage5.

    Parameters
    ----------
    values : array (20484,)
        Left hemisphere first; NaN = no value.
    mask : bool array (20484,), optional
        Vertices allowed to show colour (e.g. ``q < alpha``).
    threshold : float, optional
        Also hide ``|v| < threshold`` (``v < threshold`` for a sequential map).
    mesh : 'inflated' or 'pial'
    hemi : 'left', 'right' or 'both'
    view : one of :data:`VIEWS` (camera preset)
    outline : int/bool array (20484,), optional
        Region labels (0 = none); their boundary vertices are drawn as dots.
    symmetric : bool
        Diverging colour scale centred on ``center`` or a sequential one.
    center : float
        Neutral value of a diverging scale: 0 for a difference, chance (0.5) for a 20-vs-20
        accuracy; ``threshold`` then hides ``|v - center| < threshold``.
    simulated : bool
        Stamp the "SIMULATED DATA" badge.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Mesh3d`` per hemisphere, then one ``Scatter3d`` outline per hemisphere that has
        boundary vertices.
    """
    import plotly.graph_objects as go

    if mesh not in MESHES:
        raise ValueError(f"unknown mesh {mesh!r}; expected one of {MESHES}")
    if hemi not in HEMI_CHOICES:
        raise ValueError(f"unknown hemisphere {hemi!r}; expected one of {HEMI_CHOICES}")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (2 * N_PER_HEMI,):
        raise ValueError(f"values must have shape ({2 * N_PER_HEMI},), got {values.shape}")
    allowed = ~surface.medial_wall_mask()
    if mask is not None:
        allowed = allowed & np.asarray(mask, dtype=bool)
    background = None
    if shade:
        sulc = [surface.sulcal_depth(h) for h in HEMIS]
        if all(s is not None for s in sulc):
            s = np.concatenate(sulc)
            background = 1.0 - (s - s.min()) / max(float(s.max() - s.min()), 1e-9)
    intensity, lo, hi, band, shown = display_values(
        values, mask=allowed, threshold=threshold, symmetric=symmetric, vmin=vmin, vmax=vmax,
        background=background, center=center,
    )
    cscale = masked_colorscale(colorscale, lo, hi, band, mask_color=("rgb(120,120,120)", "rgb(225,225,225)"))
    hemis = HEMIS if hemi == "both" else (hemi,)
    both = hemi == "both"
    traces = []
    for h_name in hemis:
        h = HEMIS.index(h_name)
        sl = slice(h * N_PER_HEMI, (h + 1) * N_PER_HEMI)
        coords = _hemi_coords(mesh, h_name, both, view)
        faces = surface.mesh(mesh, h_name)[1].astype(np.uint16)
        traces.append(
            go.Mesh3d(
                x=coords[:, 0], y=coords[:, 1], z=coords[:, 2],
                i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                intensity=intensity[sl], intensitymode="vertex",
                colorscale=cscale, cmin=lo, cmax=hi,
                showscale=h_name == hemis[-1],
                colorbar=dict(title=dict(text=colorbar_title), len=0.75, thickness=14),
                name=f"{h_name} hemisphere",
                hovertemplate="value %{intensity:.4g}<extra>" + h_name + "</extra>",
                lighting=dict(ambient=0.55, diffuse=0.6, specular=0.05, roughness=0.9, fresnel=0.1),
                lightposition=dict(x=0, y=0, z=1e5),
                flatshading=False,
            )
        )
    if outline is not None:
        edge = boundary_mask(outline)
        for h_name in hemis:
            h = HEMIS.index(h_name)
            idx = np.flatnonzero(edge[h * N_PER_HEMI : (h + 1) * N_PER_HEMI])
            if idx.size == 0:
                continue
            coords = _hemi_coords(mesh, h_name, both, view)[idx]
            # lift the dots slightly off the surface, away from the hemisphere's centre
            centre = _hemi_coords(mesh, h_name, both, view).mean(axis=0)
            direction = coords - centre
            direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
            coords = (coords + 0.8 * direction).astype(np.float32)
            traces.append(
                go.Scatter3d(
                    x=np.round(coords[:, 0], 1), y=np.round(coords[:, 1], 1), z=np.round(coords[:, 2], 1),
                    mode="markers", marker=dict(size=1.6, color=outline_color),
                    name=f"outline {h_name}", hoverinfo="skip", showlegend=False,
                )
            )
    fig = go.Figure(traces)
    axis = dict(visible=False, showbackground=False)
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=height,
        margin=dict(l=0, r=0, t=40 if title else 20, b=0),
        scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data", camera=camera(view, hemi)),
        paper_bgcolor="white",
        uirevision=f"{mesh}-{hemi}-{view}",
    )
    add_simulated_badge(fig, simulated)
    fig._brainviz_shown = shown  # type: ignore[attr-defined]  # for callers/tests; not serialised
    return fig


def shown_vertices(fig) -> np.ndarray | None:
    """The boolean vector of coloured vertices of a figure made by :func:`cortical_map`."""
    return getattr(fig, "_brainviz_shown", None)
