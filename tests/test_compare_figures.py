"""The Compare page's figures with ``streamlit.testing.v1.AppTest``: the static montage comes
first (an image, no 3-D mesh until asked), the 3-D view opens on demand, the single-model map
is centred on chance, ROI bars get finite error bars, the linked time-course view draws A and
B with breaks between runs, and every export builds (CSV that plain ``pd.read_csv`` reads, zips
with a README, montage PNG/SVG/PDF).

Runs against the small simulated preset and two demo prediction checkpoints (two participants).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402
from _app_fixtures import demo_app_folders, montages  # noqa: E402


@pytest.fixture(scope="module")
def app_env(small_sim, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmpfig")
    return demo_app_folders(small_sim, root, participants=["sub-01", "sub-02"])


@pytest.fixture(scope="module")
def at(app_env):
    """One app session for the module (the comparison is computed once); tests set their tab."""
    import os

    old = {k: os.environ.get(k) for k in app_env}
    os.environ.update(app_env)
    from brainviz import surface

    surface.clear_memory_cache()
    app = AppTest.from_file(APP, default_timeout=300)
    app.query_params["n"] = "60"
    app.run()
    app.switch_page("pages/compare.py").run()
    _ok(app)
    app.button(key="cmp_run").click().run()
    _ok(app)
    yield app
    surface.clear_memory_cache()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _app_env(_isolated_store, app_env, monkeypatch):
    """Point every test back at the app's folders (conftest isolates each test's store)."""
    for k, v in app_env.items():
        monkeypatch.setenv(k, v)


def _ok(app) -> None:
    assert not app.exception, [e.value for e in app.exception]


def _tab(app, name: str) -> None:
    app.session_state["cmp_tab"] = name
    app.run()
    _ok(app)


def test_static_montage_first_then_3d_on_demand(at):
    _tab(at, "Cortex")
    assert len(montages(at)) == 1                           # the montage (inline JPEG preview)
    assert 'src="data:image/jpeg;base64,' in montages(at)[0].value
    assert not at.get("plotly_chart")                       # no WebGL mesh yet
    assert at.session_state["cmp_fig_payload"] > 10_000    # JPEG bytes of the montage
    assert at.radio(key="cmp_hemi").value == "both"
    at.toggle(key="cmp_diff_3d").set_value(True).run()
    _ok(at)
    charts = at.get("plotly_chart")
    assert charts, "the 3-D view did not open"
    import json

    fig = json.loads(charts[0].proto.spec)
    assert [t["type"] for t in fig["data"]][:2] == ["mesh3d", "mesh3d"]   # both hemispheres
    # threshold and colour max are honoured by the 3-D view too
    at.number_input(key="cmp_diff_vmax").set_value(0.2).run()
    _ok(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["data"][0]["cmax"] == pytest.approx(0.2) and fig["data"][0]["cmin"] == pytest.approx(-0.2)
    at.toggle(key="cmp_diff_3d").set_value(False).run()
    # linked view: a vertex's held-out time courses of A and B, broken between runs
    at.toggle(key="cmp_inspect").set_value(True).run()
    _ok(at)
    tc = json.loads(at.get("plotly_chart")[-1].proto.spec)
    measured = tc["data"][0]
    assert measured["name"].startswith("measured")
    assert "vertex" in tc["layout"]["title"]["text"]
    xs = measured["x"]
    assert any(x is None for x in xs) if isinstance(xs, list) else True   # gaps between runs
    at.toggle(key="cmp_inspect").set_value(False).run()


def test_single_model_centred_on_chance(at):
    _tab(at, "Single model")
    assert montages(at), "no montage for the single-model map"
    at.toggle(key="cmp_single_3d").set_value(True).run()
    _ok(at)
    import json

    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    mesh = fig["data"][0]
    assert (mesh["cmin"] + mesh["cmax"]) / 2 == pytest.approx(0.5, abs=1e-6)   # diverging around chance
    assert "chance 0.5" in mesh["colorbar"]["title"]["text"]


def test_rois_have_error_bars_and_time_courses(at):
    at.selectbox(key="cmp_atlas").set_value("planted regions").run()
    _ok(at)
    _tab(at, "ROIs")
    table = at.dataframe[0].value
    assert np.isfinite(table["se"].to_numpy(dtype=float)).any()   # SE across participants (group view)
    import json

    bars = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "Δ 20-vs-20 accuracy" in bars["layout"]["yaxis"]["title"]["text"]
    assert bars["data"][0]["error_y"]["visible"] is True
    # one participant: SE across held-out runs instead (was all None before)
    at.selectbox(key="cmp_vp").set_value("sub-01").run()
    _ok(at)
    table = at.dataframe[0].value
    assert np.isfinite(table["se"].to_numpy(dtype=float)).any()
    roi = table["roi"].astype(str).iloc[0]
    at.selectbox(key="cmp_roi_tc").set_value(roi).run()
    _ok(at)
    tc = json.loads(at.get("plotly_chart")[-1].proto.spec)
    names = [t.get("name", "") for t in tc["data"]]
    assert names[0].startswith("measured") and names[1].startswith("A:") and names[2].startswith("B:")
    assert "runs" in tc["layout"]["xaxis"]["title"]["text"] or "run" in json.dumps(tc["layout"]["annotations"])


def test_flat_map_selection_table(at):
    _tab(at, "Flat map + selection")
    import json

    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["layout"]["images"], "the flat map is drawn as a shaded image"
    texts = " ".join(a.get("text", "") for a in fig["layout"]["annotations"])
    assert "L</b>" in texts and "R</b>" in texts
    at.session_state["cmp_selected"] = np.arange(100, 140)
    at.run()
    _ok(at)
    sel = at.dataframe[0].value
    assert len(sel) == 40 * 2 or len(sel) == 40       # group view: one row per unit
    assert {"unit", "hemisphere", "diff", "significant"} <= set(sel.columns)
    labels = [m.label for m in at.metric]
    assert "selected vertices" in labels and "mean Δ (A − B)" in labels


def test_exports_build(at, app_env):
    _tab(at, "Export")
    labels = [b.label for b in at.get("download_button")]
    assert {"A − B montage (PNG)", "A − B montage (SVG)", "A − B montage (PDF)"} <= set(labels)
    assert not any("PNG" in lab and "SVG" in lab for lab in labels)
    # the same builders the buttons call
    from brainviz.viz import export, montage

    maps = at.session_state["compare"]["maps"]
    values, mask = maps.map("diff", None, 0.05)
    csv = export.table_csv(maps.frame(None, 0.05), simulated=True)
    df = pd.read_csv(io.BytesIO(csv))
    assert df["simulated"].all() and len(df) == maps.n_units
    z = zipfile.ZipFile(io.BytesIO(export.maps_gifti_zip(values, name="d", simulated=True,
                                                          meta={"test": "ttest", "alpha": 0.05})))
    readme = z.read("README.txt").decode()
    assert "SIMULATED" in readme and "test: ttest" in readme and "alpha: 0.05" in readme
    assert montage.montage_image(values, "pdf", mask=mask)[:5] == b"%PDF-"


def test_new_session_from_shared_link_reuses_the_comparison(at, app_env, monkeypatch):
    """A link with run=1 opened in a new session draws the montage from the cache: the
    permutation tests are not rerun (the merged result is kept in memory and on disk)."""
    from brainviz.app_support import compute

    assert at.session_state["compare"]["maps"].participants == ["sub-01", "sub-02"]

    def boom(*a, **k):
        raise AssertionError("the comparison was recomputed")

    monkeypatch.setattr(compute, "compare_with_progress", boom)
    merged = list((Path(app_env["BRAINVIZ_CACHE"]) / "compare-merged").glob("*.npz"))
    assert merged, "the merged comparison was not stored on disk"
    app = AppTest.from_file(APP, default_timeout=300)
    for k, v in dict(a="demo-tuned", b="demo-vanilla", p="sub-01,sub-02", n="60", run="1", tab="Cortex").items():
        app.query_params[k] = v
    app.run()
    app.switch_page("pages/compare.py").run()
    _ok(app)
    assert app.session_state["compare"]["from_cache"] is True
    assert montages(app), "no montage in the new session"
    assert any("Comparison ready (from cache)" in c.value for c in app.caption)
