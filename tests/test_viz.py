"""Figure builders of brainviz.viz: trace counts, payload sizes, values, thresholds, badges,
and the exports (CSV, GIfTI, HTML)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from brainviz import surface
from brainviz.viz import _mesh, attention, cortex, coupling, curves, export, flatmap, timeseries
from brainviz.viz._common import SIMULATED_TEXT, display_values, has_simulated_badge, masked_colorscale

N = 20484
MB2 = 2_000_000


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(0)
    return rng.standard_normal(N)


@pytest.fixture(scope="module")
def labels():
    lab = np.zeros(N, dtype=np.int32)
    for h, (label, radius) in enumerate(((1, 25.0), (2, 20.0))):
        coords = _mesh.mesh("pial", ("left", "right")[h])[0]
        near = np.linalg.norm(coords - coords[100], axis=1) < radius
        lab[h * 10242 : (h + 1) * 10242][near] = label
    return lab


def _json(fig) -> dict:
    return json.loads(fig.to_json())


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------


def test_display_values_threshold_and_mask():
    v = np.array([-2.0, -0.5, 0.0, 0.4, 1.5, np.nan])
    out, lo, hi, band, shown = display_values(v, threshold=1.0)
    assert (lo, hi) == (-2.0, 2.0)
    assert shown.tolist() == [True, False, False, False, True, False]
    assert np.all(np.abs(out[~shown]) <= band[1])      # hidden values sit in the grey band
    assert np.all(np.abs(out[shown]) > band[1])        # shown values are outside it
    out2, *_, shown2 = display_values(v, mask=np.array([0, 0, 0, 0, 1, 1], bool))
    assert shown2.tolist() == [False, False, False, False, True, False]
    out3, lo3, hi3, band3, shown3 = display_values(np.array([0.4, 0.6, 0.9]), symmetric=False, threshold=0.55)
    assert shown3.tolist() == [False, True, True]
    assert band3[0] == lo3 and band3[1] == pytest.approx(0.55, abs=1e-3)


def test_masked_colorscale_has_grey_band():
    cs = masked_colorscale("RdBu_r", -1, 1, (-0.2, 0.2))
    pos = [p for p, _ in cs]
    assert pos[0] == 0 and pos[-1] == 1 and pos == sorted(pos)
    greys = [p for p, c in cs if c == "rgb(200,200,200)"]
    assert greys == [pytest.approx(0.4), pytest.approx(0.6)]


# ---------------------------------------------------------------------------------------
# cortex
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hemi,n_mesh", [("left", 1), ("right", 1), ("both", 2)])
def test_cortical_map_traces_and_payload(values, labels, hemi, n_mesh):
    fig = cortex.cortical_map(values, threshold=1.0, hemi=hemi, outline=labels, simulated=True)
    types = [t.type for t in fig.data]
    assert types[:n_mesh] == ["mesh3d"] * n_mesh
    assert types[n_mesh:] == ["scatter3d"] * n_mesh           # one outline trace per hemisphere
    size = len(fig.to_json())
    assert size <= MB2, size
    assert has_simulated_badge(fig)
    mesh = fig.data[0]
    assert len(mesh.x) == 10242 and len(mesh.i) in (20480,)
    assert mesh.i.dtype == np.uint16 and mesh.intensity.dtype == np.float32


def test_cortical_map_values_and_threshold(values):
    fig = cortex.cortical_map(values, threshold=1.5, hemi="left", shade=False)
    shown = cortex.shown_vertices(fig)
    cmask = ~surface.medial_wall_mask()
    expect = cmask & (np.abs(values) >= 1.5)
    assert np.array_equal(shown, expect)
    inten = np.asarray(fig.data[0].intensity)
    left = slice(0, 10242)
    # shown vertices keep their (rounded) value; hidden ones are in the grey band
    np.testing.assert_allclose(inten[expect[left]], values[left][expect[left]], atol=2e-3 * np.abs(values).max())
    assert np.all(np.abs(inten[~expect[left]]) < 1.5)
    assert fig.data[0].cmin == -fig.data[0].cmax


def test_cortical_map_mask_and_sequential():
    acc = np.full(N, 0.5)
    acc[:100] = 0.8
    mask = np.zeros(N, bool)
    mask[:50] = True
    fig = cortex.cortical_map(acc, mask=mask, symmetric=False, hemi="left", colorscale="YlOrRd")
    shown = cortex.shown_vertices(fig)
    assert shown[:10242].sum() == (mask & ~surface.medial_wall_mask())[:10242].sum()
    assert fig.data[0].cmin == pytest.approx(0.5) and fig.data[0].cmax == pytest.approx(0.8)


def test_cortical_map_views_and_errors(values):
    for view in cortex.VIEWS:
        cam = cortex.camera(view, "right")
        assert set(cam) == {"eye", "up", "center"}
    assert cortex.camera("lateral", "left")["eye"]["x"] < 0 < cortex.camera("lateral", "right")["eye"]["x"]
    fig = cortex.cortical_map(values, mesh="pial", hemi="right", view="medial")
    assert fig.layout.scene.camera.eye.x < 0
    with pytest.raises(ValueError):
        cortex.cortical_map(values[:10])
    with pytest.raises(ValueError):
        cortex.cortical_map(values, mesh="flat")
    with pytest.raises(ValueError):
        cortex.camera("sideways")


def test_boundary_mask(labels):
    edge = cortex.boundary_mask(labels)
    assert edge.dtype == bool and edge.shape == (N,)
    assert edge.any() and not edge[labels == 0].any()
    assert edge.sum() < (labels > 0).sum()          # the boundary is a subset of the region
    assert not cortex.boundary_mask(np.zeros(N, int)).any()


# ---------------------------------------------------------------------------------------
# flat map
# ---------------------------------------------------------------------------------------


def test_flat_map_selection_roundtrip(values, labels):
    fig = flatmap.flat_map(values, threshold=1.0, outline=labels, selected=[5, 6], simulated=True)
    assert [t.type for t in fig.data] == ["scattergl", "scattergl"]          # vertices, selection ring
    assert len(fig.layout.images) == 1                                        # the shaded mesh image
    assert fig.layout.images[0].source.startswith("data:image/png;base64,")
    assert len(fig.to_json()) <= MB2
    idx = np.asarray(fig.data[0].customdata).astype(np.int64)
    assert idx.size == _mesh.cortex_mask().sum()
    assert set(idx.tolist()) == set(np.flatnonzero(_mesh.cortex_mask()).tolist())
    np.testing.assert_allclose(fig.data[0].marker.color, values[idx], atol=1e-3)   # hover value = map value
    assert fig.layout.dragmode == "pan"           # Streamlit: clicks select a vertex; lasso/box from the toolbar
    event = {"selection": {"points": [{"curve_number": 0, "customdata": [float(idx[3]), 0.1]},
                                       {"curve_number": 0, "customdata": {"bdata": "x"}},
                                       {"curve_number": 0, "customdata": int(idx[7])},
                                       {"curve_number": 1, "customdata": 999}]}}
    assert flatmap.selected_vertices(event).tolist() == sorted([int(idx[3]), int(idx[7])])
    assert flatmap.selected_vertices(None).size == 0
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "<b>L</b>" in texts and "<b>R</b>" in texts and SIMULATED_TEXT in texts


def test_flat_map_image_is_shaded_and_coloured(values, labels):
    img, shown, lo, hi = flatmap.flat_image(values, threshold=1.0, outline=labels)
    fg = img.reshape(-1, 3)
    fg = fg[(fg != 255).any(axis=1)]
    grey = (fg[:, 0] == fg[:, 1]) & (fg[:, 1] == fg[:, 2])
    assert 0.2 < grey.mean() < 0.95                      # curvature grey + coloured vertices
    assert len(np.unique(fg[grey][:, 0])) > 20           # shading, not one flat grey
    assert (fg == 0).all(axis=1).any()                   # black outline pixels
    left, right = img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2 :]
    assert (left != 255).any() and (right != 255).any()  # both hemispheres
    assert lo == -hi


def test_flat_map_one_hemisphere(values):
    fig = flatmap.flat_map(values, hemi="right")
    idx = np.asarray(fig.data[0].customdata)
    assert idx.min() >= 10242
    assert len(fig.data) == 1
    assert "R</b>" in fig.layout.annotations[0].text


# ---------------------------------------------------------------------------------------
# curves, attention, coupling, time courses
# ---------------------------------------------------------------------------------------


def test_fig2_curves():
    fig2 = {"participants": {"s1": {"n_units": [1, 10, 100], "mean_diff": [0.1, 0.05, None]},
                             "s2": np.array([0.2, 0.1, 0.0])},
            "average": {"n_units": [1, 10, 100], "mean_diff": [0.15, 0.07, 0.0]}}
    fig = curves.fig2_curves(fig2, names=("A", "B"), simulated=True)
    assert len(fig.data) == 3
    assert fig.data[-1].name == "mean over participants"
    assert list(fig.data[-1].y) == pytest.approx([0.15, 0.07, 0.0])
    assert np.isnan(fig.data[0].y[2])
    assert fig.layout.xaxis.type == "log"
    assert has_simulated_badge(fig)


def test_roi_bars():
    table = pd.DataFrame({"roi": ["a", "b", "c"], "diff": [0.1, -0.2, np.nan], "se": [0.01, 0.02, 0.0],
                          "n_sig_up": [3, 0, 0], "n_sig_down": [0, 2, 0]})
    fig = curves.roi_bars(table)
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == ["a", "b"]                   # NaN ROI dropped, sorted by value
    assert list(fig.data[0].y) == pytest.approx([0.1, -0.2])
    assert list(fig.data[0].marker.color) == ["#c92a2a", "#1864ab"]
    assert not has_simulated_badge(fig)


def test_accuracy_histogram():
    fig = curves.accuracy_histogram(np.r_[np.linspace(0.4, 0.9, 50), np.nan])
    assert len(fig.data) == 1 and len(fig.data[0].x) == 50


def test_layer_attention_and_heatmaps():
    s = {"mean": np.array([[0.5, 0.1], [0.3, 0.4]]), "se": np.array([[0.01, 0.02], [0.03, np.nan]])}
    fig = attention.layer_attention({"base": s, "tuned": s}, simulated=True)
    assert len(fig.data) == 4
    assert list(fig.data[0].y) == [0.5, 0.3] and list(fig.data[1].y) == [0.1, 0.4]
    assert list(fig.data[1].error_y.array) == [0.02, 0.0]
    change = np.zeros((2, 3, 2))
    change[1, 2, 1] = -0.3
    hm = attention.head_change_heatmap(change, kind=1)
    assert np.asarray(hm.data[0].z).shape == (2, 3) and hm.data[0].zmin == -0.3
    tok = attention.token_attention_heatmap(["[CLS]", "a", "[SEP]"], np.eye(3))
    assert np.asarray(tok.data[0].z).shape == (3, 3)
    with pytest.raises(ValueError):
        attention.token_attention_heatmap(["a"], np.eye(2))


def test_coupling_figures_and_text_heatmap():
    pairs = pd.DataFrame({"layer": [0, 0, 1, 1], "r": [0.1, 0.3, 0.2, 0.5], "name": ["L0H0D0", "L0H0D1", "L1H0D0", "L1H0D1"],
                          "bn": [1, 2, 3, 4]})
    fig = coupling.best_r_distribution(pairs, r_threshold=0.25)
    assert len(fig.data) == 2
    texts = [a.text for a in fig.layout.annotations]
    assert "50% < 0.25" in texts
    best = pairs.loc[pairs.groupby("layer")["r"].idxmax()]
    assert list(coupling.best_pair_per_layer(best).data[0].y) == [0.3, 0.5]
    tc = coupling.timecourses(np.arange(5.0), np.arange(5.0), -np.arange(5.0), r=-1.0)
    assert len(tc.data) == 2 and abs(np.mean(tc.data[0].y)) < 1e-6
    table = pd.DataFrame([[0, 3], [1, 0]], index=["NOUN", "VERB"], columns=["NOUN", "VERB"])
    pos = coupling.pos_distribution(table)
    assert list(pos.data[0].x) == ["NOUN→VERB", "VERB→NOUN"]
    html = coupling.text_heatmap_html(["[CLS]", "the", "<b>", "##s"], [0, 2.0, 0, 0], [0, 0, 1.0, 0.5], simulated=True)
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("<b>SIMULATED", "")
    assert "rgba(224,49,49" in html and "rgba(25,113,194" in html
    assert SIMULATED_TEXT in html


def test_vertex_timecourse():
    raw = np.arange(10.0)
    runs = np.array(["r1"] * 5 + ["r2"] * 5)
    fig = timeseries.vertex_timecourse(raw, runs, 2.0, kept=np.r_[[False] * 2, [True] * 8],
                                       preprocessed=np.zeros(8), preprocessed_rows=np.arange(2, 10), vertex=3)
    assert len(fig.data) == 2 and fig.data[1].yaxis == "y2"
    # no line across the run boundary (4 -> 5) or across trimmed TRs
    x0 = np.asarray(fig.data[0].x, dtype=float)
    gap = np.flatnonzero(np.isnan(x0))
    assert gap.size == 1 and x0[gap[0] - 1] == 4 and x0[gap[0] + 1] == 5
    x1 = np.asarray(fig.data[1].x, dtype=float)
    assert np.isnan(x1).sum() == 1


def test_heldout_timecourse_breaks_between_runs():
    from brainviz.viz import heldout

    runs = np.array(["1"] * 4 + ["2"] * 4)
    tr_index = np.r_[np.arange(10, 14), np.arange(30, 34)]
    rng = np.random.default_rng(0)
    meas = rng.standard_normal((8, 5)).astype(np.float32)
    pair = heldout.HeldoutPair("sub-01", tr_index, runs, meas, meas + 0.1, -meas, tr=2.0)
    fig = heldout.timecourse_figure(pair, [1, 2], names=("A", "B"), run_accuracy={"1": (0.7, 0.5), "2": (0.6, 0.4)})
    assert [t.name.split(" ")[0] for t in fig.data[:3]] == ["measured", "A:", "B:"]
    x = np.asarray(fig.data[0].x, dtype=float)
    assert np.isnan(x).sum() == 1 and np.nanmax(x) == 33 * 2.0          # seconds, one break
    assert "(r = 1.00)" in fig.data[1].name and "(r = -1.00)" in fig.data[2].name
    assert [t.type for t in fig.data[3:]] == ["bar", "bar"]
    with pytest.raises(ValueError):
        pair.units([])


# ---------------------------------------------------------------------------------------
# exports
# ---------------------------------------------------------------------------------------


def test_csv_exports_mark_simulated(values):
    data = export.map_csv({"diff": values}, simulated=True).decode()
    assert not data.startswith("#")                      # no comment line: plain read_csv works
    df = pd.read_csv(io.StringIO(data))
    assert len(df) == N and list(df.columns) == ["vertex", "hemisphere", "diff", "simulated"]
    assert df["simulated"].all()
    np.testing.assert_allclose(df["diff"], values, rtol=1e-5, atol=1e-9)
    assert "simulated" not in export.table_csv(pd.DataFrame({"a": [1]}), simulated=False).decode()
    assert export.filename("x y", "csv", True) == "SIMULATED_x_y.csv"


def test_zip_exports_have_readme(values):
    blob = export.maps_gifti_zip(values, name="diff", simulated=True, meta={"test": "ttest", "level": "group",
                                                                           "alpha": 0.05})
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        readme = zf.read("README.txt").decode()
        names = zf.namelist()
    for n in names:
        if n != "README.txt":
            assert n in readme                            # every file is described
    assert "test: ttest" in readme and "level: group" in readme and "alpha: 0.05" in readme
    assert SIMULATED_TEXT in readme and "simulated: true" in readme
    real = export.zip_bundle({"a.csv": (b"x\n1\n", "a table")}, meta={"alpha": 0.01})
    with zipfile.ZipFile(io.BytesIO(real)) as zf:
        text = zf.read("README.txt").decode()
    assert "a.csv: a table" in text and "simulated: false" in text and SIMULATED_TEXT not in text


def test_gifti_export_roundtrip(values, tmp_path):
    import nibabel as nib

    blob = export.maps_gifti_zip(values, name="diff", simulated=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert any(n.startswith("SIMULATED_lh.diff") for n in names)
        lh = next(n for n in names if "lh." in n)
        path = tmp_path / "lh.func.gii"
        path.write_bytes(zf.read(lh))
    img = nib.load(path)
    np.testing.assert_allclose(img.darrays[0].data, values[:10242].astype(np.float32))
    assert img.meta["simulated"] == "true"
    with pytest.raises(ValueError):
        export.map_gifti(values[:10], "left")


def test_figure_html_and_image(values):
    fig = curves.fig2_curves({"participants": {}, "average": [0.1, 0.0]}, simulated=True)
    html = export.figure_html(fig).decode()
    assert "plotly" in html.lower() and SIMULATED_TEXT in html
    with pytest.raises(ValueError):
        export.figure_image(fig, "gif")
    assert export.download_label("map", "svg") == "map (SVG)"


def test_roi_bars_units_and_error_bars():
    table = pd.DataFrame({"roi": ["a", "b"], "diff": [0.1, -0.2], "se": [0.01, 0.02]})
    fig = curves.roi_bars(table, names=("ft", "van"))
    assert fig.layout.yaxis.title.text == "Δ 20-vs-20 accuracy (ft − van)"
    assert list(fig.data[0].error_y.array) == pytest.approx([0.01, 0.02])
    none = curves.roi_bars(table.assign(se=np.nan))
    assert none.data[0].error_y.array is None


def test_cortical_map_centre_and_both_hemispheres():
    acc = np.full(N, 0.5)
    acc[:50] = 0.7
    fig = cortex.cortical_map(acc, center=0.5, hemi="both", view="lateral", shade=False)
    assert fig.data[0].cmin == pytest.approx(0.3) and fig.data[0].cmax == pytest.approx(0.7)
    # both lateral surfaces face the camera: the hemispheres are side by side along y, not x
    left, right = np.asarray(fig.data[0].y), np.asarray(fig.data[1].y)
    assert left.min() > right.max() or right.min() > left.max()
    lx, rx = np.asarray(fig.data[0].x), np.asarray(fig.data[1].x)
    assert abs(np.mean(lx) - np.mean(rx)) < 30
