"""Static brain figures: the four-view montage (colour centring, hemispheres, threshold, vmax,
outlines, PNG/SVG/PDF), the surface-geometry module and kaleido's PNG/PDF export."""

from __future__ import annotations

import io

import numpy as np
import pytest

from brainviz import surface
from brainviz.viz import _raster, export, montage

N = surface.N_VERTICES
PNG = b"\x89PNG\r\n\x1a\n"


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _panel_pixels(values, hemi: str, view: str, **kw) -> np.ndarray:
    """RGB of the foreground pixels of one view, coloured as the montage colours them."""
    rgb, *_ = montage.vertex_colors(values, **kw)
    r = _raster.view_raster("inflated", hemi, view, montage.PX_PER_MM)
    img = _raster.render(r, rgb[surface.hemisphere_slice(hemi)])
    return img.reshape(-1, 3)[r.pixels]


def _saturation(px: np.ndarray) -> np.ndarray:
    px = px.astype(float)
    return px.max(axis=1) - px.min(axis=1)


# ---------------------------------------------------------------------------------------
# surface geometry: one module
# ---------------------------------------------------------------------------------------


def test_surface_is_the_one_geometry_module():
    from brainviz.data import atlases
    from brainviz.viz import _mesh, cortex, flatmap

    assert surface.N_PER_HEMI == 10242 and surface.N_VERTICES == 20484
    for mod in (atlases, _mesh, cortex, flatmap, export, montage):
        assert mod.N_PER_HEMI is surface.N_PER_HEMI or mod.N_PER_HEMI == surface.N_PER_HEMI
    assert _mesh.mesh is surface.mesh
    sl = surface.hemisphere_slices()
    assert sl["left"].stop == sl["right"].start == 10242
    assert surface.is_fsaverage5(20484) and not surface.is_fsaverage5(400)


def test_curvature_and_shading():
    for hemi in surface.HEMIS:
        sulc, curv = surface.sulcal_depth(hemi), surface.curvature(hemi)
        assert sulc.shape == (10242,) and np.isfinite(sulc).all()
        assert curv is None or curv.shape == (10242,)
        grey = surface.shading_grey(hemi)
        assert grey.min() >= 0.5 and grey.max() <= 0.8
        deep, shallow = sulc > np.percentile(sulc, 80), sulc < np.percentile(sulc, 20)
        assert grey[deep].mean() < grey[shallow].mean()     # sulci darker than gyri
    n = surface.vertex_normals("inflated", "left")
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------------------------------
# montage
# ---------------------------------------------------------------------------------------


def test_chance_accuracy_renders_neutral():
    acc = np.full(N, 0.5)
    for hemi in surface.HEMIS:
        px = _panel_pixels(acc, hemi, "lateral", center=0.5)
        assert np.percentile(_saturation(px), 99) <= 3       # grey / white, never orange or blue
    # the same values with a sequential reading (centre 0) would be strongly coloured
    above = np.full(N, 0.7)
    px = _panel_pixels(above, "left", "lateral", center=0.5)
    assert np.median(_saturation(px)) > 60 and np.median(px[:, 0].astype(int) - px[:, 2]) > 40  # red


def test_difference_map_signs_and_threshold():
    v = np.zeros(N)
    v[: 10242] = 0.1      # left: A better -> red
    v[10242:] = -0.1      # right: B better -> blue
    left = _panel_pixels(v, "left", "lateral").astype(int)
    right = _panel_pixels(v, "right", "lateral").astype(int)
    assert np.median(left[:, 0] - left[:, 2]) > 40
    assert np.median(right[:, 2] - right[:, 0]) > 40
    hidden = _panel_pixels(v, "left", "lateral", threshold=0.2)
    assert np.percentile(_saturation(hidden), 99) <= 3        # below threshold: curvature grey only
    rgb, shown, lo, hi = montage.vertex_colors(v, threshold=0.05, vmax=0.4)
    assert (lo, hi) == (-0.4, 0.4)
    wall = surface.medial_wall_mask()
    assert shown[~wall].all() and not shown[wall].any()
    assert 1000 < wall.sum() < (~surface.cortex_mask()).sum()   # the wall, not the flat patch's cuts
    _, shown_m, *_ = montage.vertex_colors(v, mask=np.arange(N) < 100)
    assert shown_m.sum() == (~wall[:100]).sum()


def test_vmax_honoured():
    v = np.linspace(-0.3, 0.3, N)
    lo, hi = montage.color_range(v)
    assert (lo, hi) == pytest.approx((-0.3, 0.3))
    lo, hi = montage.color_range(v, vmax=0.1)
    assert (lo, hi) == (-0.1, 0.1)
    lo, hi = montage.color_range(np.full(N, 0.6), center=0.5)
    assert (lo + hi) / 2 == pytest.approx(0.5)
    strong = _panel_pixels(np.full(N, 0.1), "left", "lateral", vmax=0.1)
    weak = _panel_pixels(np.full(N, 0.1), "left", "lateral", vmax=1.0)
    assert np.median(_saturation(strong)) > np.median(_saturation(weak)) + 50


def test_montage_png_has_both_hemispheres_views_and_labels():
    v = np.zeros(N)
    v[:10242] = 0.2
    v[10242:] = -0.2
    png = montage.montage_png(v, title="A − B", colorbar_title="Δ 20-vs-20 accuracy (A − B)", simulated=True)
    assert png[:8] == PNG
    img = _image(png).astype(int)
    h, w, _ = img.shape
    assert w > 600 and h > 400
    body = img[int(0.12 * h): int(0.85 * h)]
    red = (body[..., 0] - body[..., 2] > 60)
    blue = (body[..., 2] - body[..., 0] > 60)
    # left hemisphere (red) in the left half, right hemisphere (blue) in the right half
    assert red[:, : w // 2].sum() > 5000 and blue[:, w // 2:].sum() > 5000
    assert red[:, w // 2:].sum() < 0.02 * red.sum() and blue[:, : w // 2].sum() < 0.02 * blue.sum()
    # two rows of views (lateral above medial) in each column
    rows = (red | blue)[:, : w // 2].any(axis=1)
    runs = np.flatnonzero(np.diff(np.r_[0, rows.astype(int), 0]))
    assert len(runs) // 2 >= 2
    # the orange SIMULATED badge
    orange = (np.abs(img[..., 0] - 217) < 6) & (np.abs(img[..., 1] - 72) < 6) & (np.abs(img[..., 2] - 15) < 6)
    assert orange[: int(0.1 * h)].sum() > 200
    one = _image(montage.montage_png(v, hemi="left"))
    assert one.shape[1] < w
    with pytest.raises(ValueError):
        montage.montage_png(v, hemi="top")
    with pytest.raises(ValueError):
        montage.montage_png(v[:10])


def test_montage_outline_and_formats():
    labels = np.zeros(N, dtype=int)
    c = surface.mesh("inflated", "left")[0]
    labels[:10242][np.linalg.norm(c - c[2000], axis=1) < 20] = 3
    v = np.zeros(N)
    plain = _image(montage.montage_png(v))
    lined = _image(montage.montage_png(v, outline=labels))
    black = lambda im: ((im.astype(int).sum(axis=2)) < 30).sum()  # noqa: E731
    assert black(lined) > black(plain) + 50
    kw = dict(title="t", colorbar_title="Δ accuracy", simulated=True, scale=1.0)
    assert montage.montage_image(v, "pdf", **kw)[:5] == b"%PDF-"
    svg = montage.montage_image(v, "svg", **kw)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"SIMULATED" in svg
    assert montage.montage_image(v, "png", **kw)[:8] == PNG
    fig = montage.montage_figure(v, **kw)
    assert len(fig.axes) == 5                                  # 4 views + colour bar
    with pytest.raises(ValueError):
        montage.montage_image(v, "gif")


def test_rasters_are_cached_on_disk():
    _raster.clear_memory_cache()          # this test's own (empty) cache folder
    montage.prewarm()
    files = list((surface._cache_file().parent).glob("raster-v1-inflated-*.npz"))
    assert len(files) >= 4
    _raster.clear_memory_cache()
    r = _raster.view_raster("inflated", "right", "medial", montage.PX_PER_MM)
    assert r.pixels.size > 10_000 and r.verts.max() < 10242
    assert np.all(r.weights >= 0) and np.allclose(r.weights.sum(axis=1), 1.0, atol=1e-4)


# ---------------------------------------------------------------------------------------
# kaleido (plotly PNG/PDF through the system Chromium)
# ---------------------------------------------------------------------------------------


def test_kaleido_png_and_pdf():
    ok, why = export.image_export_available()
    if not ok:
        pytest.skip(f"server-side plotly export unavailable: {why}")
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    png = export.figure_image(fig, "png", scale=1.0, width=300, height=200)
    if png is None:
        pytest.skip(f"kaleido could not start Chromium at {export.find_browser()}")
    assert png[:8] == PNG
    assert export.figure_image(fig, "pdf", width=300, height=200)[:5] == b"%PDF-"
    assert b"<svg" in export.figure_image(fig, "svg", width=300, height=200)[:200]


def test_montage_jpeg_preview_matches_the_png():
    """The on-screen JPEG: same picture as the PNG (a small coloured spot keeps its colour), fewer bytes."""
    rng = np.random.default_rng(0)
    v = np.full(N, np.nan)
    v[:3000] = rng.normal(0.0, 0.05, 3000)
    spot = np.zeros(N, bool)
    c = surface.mesh("inflated", "left")[0]
    spot[:10242] = np.linalg.norm(c - c[500], axis=1) < 4       # a few vertices, strongly positive
    v[spot] = 0.5
    kw = dict(mask=np.isfinite(v), title="A − B", colorbar_title="Δ accuracy", simulated=True)
    png, jpg = montage.montage_png(v, **kw), montage.montage_jpeg(v, **kw)
    assert jpg[:2] == b"\xff\xd8" and b"SIMULATED DATA" in jpg[:200]     # JPEG with the comment
    assert len(jpg) < 0.7 * len(png)
    a, b = _image(png).astype(int), _image(jpg).astype(int)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 12
    red_png = (a[..., 0] - a[..., 2] > 80) & (a[..., 1] < 120)
    red_jpg = (b[..., 0] - b[..., 2] > 80) & (b[..., 1] < 120)
    assert red_png.sum() > 10 and (red_png & red_jpg).sum() >= 0.8 * red_png.sum()
    with pytest.raises(ValueError):
        montage.montage_jpeg(v, hemi="top")


def test_encoding_montage_on_fsaverage5():
    import pandas as pd

    from brainviz.viz import encoding as encviz

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"selection": "best", "unit_index": np.arange(N), "unit": np.arange(N).astype(str),
                          "r": rng.normal(0.0, 0.05, N), "layer": rng.integers(0, 7, N)})
    summary = {"space": "fsaverage5", "simulated": True, "model": "m", "n_participants": 2, "cv": "runs"}
    values, center, cbar, cmap = encviz.encoding_map_values(frame, summary, "r")
    assert center == 0.0 and "chance 0" in cbar and values.shape == (N,)
    png = encviz.encoding_montage(frame, summary, "r", threshold=0.05)
    assert png[:8] == PNG
    assert encviz.encoding_montage(frame, summary, "layer")[:8] == PNG
    assert encviz.encoding_montage(frame, {**summary, "space": "rois"}, "r") is None
    assert encviz.encoding_montage(frame, summary, "r", fmt="jpeg")[:2] == b"\xff\xd8"
    with pytest.raises(ValueError):
        encviz.encoding_montage(frame, summary, "r", fmt="gif")


def test_real_atlas_outlines(shared_dir):
    """Glasser HCP-MMP1 outlines (ENIGMA fsaverage5 labels from ../shared) on the montage and flat map."""
    from brainviz.data.atlases import load_glasser
    from brainviz.viz import flatmap

    root = shared_dir / "data" / "atlases" / "ENIGMA"
    if not root.is_dir():
        pytest.skip("../shared/data/atlases/ENIGMA is absent")
    atlas = load_glasser(root)
    assert len(atlas.names) == 360
    v = np.zeros(N)
    plain = _image(montage.montage_png(v))
    lined = _image(montage.montage_png(v, outline=atlas.labels))
    dark = lambda im: ((im.astype(int).sum(axis=2)) < 30).sum()  # noqa: E731
    assert dark(lined) > dark(plain) + 5000                   # 360 parcels: many boundary pixels
    img, *_ = flatmap.flat_image(v, outline=atlas.labels)
    assert ((img.astype(int).sum(axis=2)) < 30).sum() > 5000
