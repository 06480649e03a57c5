"""Every page of the Streamlit app with ``streamlit.testing.v1.AppTest``: widgets exist, the
main action runs and fills session state, no exception.

The app runs against a small simulated dataset and two demo prediction checkpoints
(:mod:`brainviz.app_support.demo`) in temporary ``BRAINVIZ_CACHE`` / ``BRAINVIZ_MODELS`` folders.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402
from _app_fixtures import demo_app_folders  # noqa: E402


@pytest.fixture(scope="module")
def app_env(small_sim, tmp_path_factory):
    """Cache with the small simulated datasets + store with demo-tuned / demo-vanilla."""
    root = tmp_path_factory.mktemp("app")
    return demo_app_folders(small_sim, root, participants=["sub-01", "sub-02"])


@pytest.fixture
def env(app_env, monkeypatch):
    for k, v in app_env.items():
        monkeypatch.setenv(k, v)
    return app_env


def _app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    _ok(at)
    return at


def test_home_lists_datasets_and_checkpoints(env):
    at = _app().run()
    _ok(at)
    assert at.title[0].value == "brainviz"
    tables = [d.value for d in at.dataframe]
    assert any("simulated-small/reading" in set(t["dataset"]) for t in tables if "dataset" in t)
    assert any({"demo-tuned", "demo-vanilla"} <= set(t["name"]) for t in tables if "name" in t)
    # shared sidebar choices and the URL
    assert at.sidebar.selectbox(key="dataset").value == "simulated-small/reading"
    assert at.sidebar.multiselect(key="participants").value == ["sub-01", "sub-02", "sub-03"]
    assert at.query_params["ds"] == "simulated-small/reading"
    assert at.query_params["a"] == "demo-tuned" and at.query_params["b"] == "demo-vanilla"
    assert "SIMULATED" in "".join(m.value for m in at.markdown)


def test_home_builds_default_dataset_on_first_launch(tmp_path, monkeypatch, small_sim):
    """No dataset at all: Home builds the default (here: patched to copy the small preset)."""
    import brainviz.data.simulate as sim
    from brainviz import paths

    monkeypatch.setenv("BRAINVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINVIZ_MODELS", str(tmp_path / "models"))
    calls = []

    def fake_ensure(progress=None):
        calls.append(1)
        root = paths.default_dataset_dir()
        for i, (exp, path) in enumerate(small_sim.items()):
            if progress:
                progress(i / 2, f"copying {exp}")
            shutil.copytree(path, root / exp, dirs_exist_ok=True)
        return {e: root / e for e in small_sim}

    monkeypatch.setattr(sim, "ensure_default_dataset", fake_ensure)
    at = _app().run()
    _ok(at)
    assert calls == [1]
    assert at.sidebar.selectbox(key="dataset").value == "simulated-default/reading"


def test_query_params_restore_choices(env):
    at = _app(ds="simulated-small/listening", p="sub-02", a="demo-vanilla", b="demo-tuned").run()
    _ok(at)
    assert at.sidebar.selectbox(key="dataset").value == "simulated-small/listening"
    assert at.sidebar.multiselect(key="participants").value == ["sub-02"]
    assert at.sidebar.selectbox(key="model_a").value == "demo-vanilla"
    # unknown values fall back to defaults instead of failing
    at2 = _app(ds="nope", a="missing").run()
    _ok(at2)
    assert at2.sidebar.selectbox(key="dataset").value == "simulated-small/reading"
    assert at2.sidebar.selectbox(key="model_a").value == "demo-tuned"


def test_data_page(env):
    at = _app().run()
    _open(at, "data")
    assert at.title[0].value.startswith("Data")
    assert at.dataframe[0].value["run"].tolist()[:4] == ["run-1", "run-2", "run-3", "run-4"]
    at.session_state["data_tab"] = "Stimulus ↔ TRs"
    at.run()
    _ok(at)
    assert at.selectbox(key="data_pid").value == "sub-01"
    assert at.selectbox(key="data_run").value == "run-1"
    assert at.query_params["dr"] == "run-1" and at.query_params["tab"] == "Stimulus ↔ TRs"
    words_col = [c for c in at.dataframe[0].value.columns if c.startswith("words feeding")]
    assert words_col and at.dataframe[0].value[words_col[0]].str.len().max() > 0
    at.selectbox(key="data_run").set_value("run-2").run()
    _ok(at)
    assert at.query_params["dr"] == "run-2"
    at.session_state["data_tab"] = "Vertex time course"
    at.run()
    _ok(at)
    assert at.number_input(key="data_vertex").value >= 0
    at.number_input(key="data_vertex").set_value(123).run()
    _ok(at)
    assert at.query_params["v"] == "123"
    at.session_state["data_tab"] = "Ground truth"
    at.run()
    _ok(at)
    assert at.selectbox(key="gt_map").value == "planted mask"


def test_models_page_load_and_job(env, monkeypatch):
    from brainviz import jobs

    worker = ("import json,sys,time\n"
              "p=sys.argv[1]\n"
              "for i in range(1,3):\n"
              "    open(p,'a').write(json.dumps({'fraction': i/2, 'message': f'epoch {i}', 'stage': 'heads',"
              " 'elapsed_s': i, 'eta_s': 2-i})+'\\n'); time.sleep(0.2)\n")
    monkeypatch.setattr(jobs, "train_command", lambda **kw: [sys.executable, "-c", worker, jobs.PROGRESS_PLACEHOLDER])
    at = _app().run()
    _open(at, "models")
    assert at.title[0].value == "Models"
    # checkpoint card: readable summary, held-out r restricted to the planted regions, JSON collapsed
    assert at.selectbox(key="models_card").value == "demo-tuned"
    labels = [m.label for m in at.metric]
    assert any(label.startswith("mean r in planted") for label in labels), labels
    assert any("top 5%" in label for label in labels) and any(label.startswith("mean r, all") for label in labels)
    roi = next(m for m in at.metric if m.label.startswith("mean r in planted"))
    every = next(m for m in at.metric if m.label.startswith("mean r, all"))
    assert float(roi.value) > float(every.value) + 0.05  # the planted signal is where the demo predicts
    assert any(e.label.startswith("Full card") for e in at.expander)
    assert at.query_params["tab"] == "Checkpoints" and at.query_params["ck"] == "demo-tuned"
    at.session_state["models_tab"] = "Load a model"
    at.run()
    at.text_input(key="load_src").set_value("pretrained")
    at.button(key="load_btn").click().run()
    _ok(at)
    info = at.session_state["load_info"]
    assert info["layers"] == 6 and info["heads"] == 12
    assert at.session_state["extra_models"]["pretrained"] == "pretrained"
    at.session_state["models_tab"] = "Brain-tune"
    at.run()
    _ok(at)
    assert at.multiselect(key="train_parts").value == ["sub-01", "sub-02", "sub-03"]  # the sidebar's participants
    submit = next(b for b in at.button if b.label == "Start brain-tuning")
    submit.click().run()
    _ok(at)
    job_id = at.session_state["last_job"]
    # the inline progress panel: stage, elapsed, ETA and a link to Models → Jobs
    assert {"elapsed", "ETA", "done"} <= {m.label for m in at.metric}
    links = [e for e in at.get("page_link")]
    assert any("job=" + job_id in str(e.proto) or job_id in str(e.proto) for e in links), links
    deadline = time.monotonic() + 60
    while jobs.status(job_id)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs.status(job_id)["state"] == "done"
    # a link to the job (?tab=Jobs&job=ID) opens the Jobs tab with that job first
    at.query_params["tab"] = "Jobs"
    at.query_params["job"] = job_id
    at.run()
    _ok(at)
    assert at.session_state["models_tab"] == "Jobs"
    assert any("epoch 2" in (p.text or "") for p in at.get("progress"))
    assert any("linked" in m.value for m in at.markdown)


def test_job_panel_timing(tmp_path, monkeypatch):
    """Elapsed runs from the job start; the ETA counts down from the job's last estimate."""
    import json
    import os

    from brainviz import jobs
    from brainviz.app_support import job_panel

    d = tmp_path / "job"
    d.mkdir()
    (d / jobs.PROGRESS_FILE).write_text(json.dumps({"fraction": 0.25, "stage": "full", "eta_s": 100.0}) + "\n")
    os.utime(d / jobs.PROGRESS_FILE, (1000.0, 1000.0))
    rec = {"dir": str(d), "state": "running", "fraction": 0.25, "created_ts": 900.0, "message": "epoch 1"}
    t = job_panel.timing(rec, now=1030.0)
    assert t["elapsed_s"] == 130.0 and t["eta_s"] == 70.0 and t["stage"] == "full"
    assert job_panel.timing({**rec, "state": "failed"}, now=1030.0)["eta_s"] is None
    fresh = job_panel.timing({"dir": str(tmp_path), "state": "running", "fraction": 0.0, "created_ts": 990.0}, now=1000.0)
    assert fresh["stage"].startswith("starting") and fresh["eta_s"] is None and fresh["elapsed_s"] == 10.0
    assert job_panel.fmt_seconds(65) == "1 min 05 s" and job_panel.fmt_seconds(None) == "estimating…"


def test_sidebar_never_defaults_to_a_equals_b(env, tmp_path, monkeypatch):
    # a link naming only A: B defaults to the other model
    at = _app(a="demo-vanilla").run()
    _ok(at)
    assert at.sidebar.selectbox(key="model_a").value == "demo-vanilla"
    assert at.sidebar.selectbox(key="model_b").value == "demo-tuned"
    # A = B chosen explicitly: Compare explains instead of comparing a model with itself
    at = _app(a="demo-tuned", b="demo-tuned").run()
    _open(at, "compare")
    assert "compare" not in at.session_state
    assert any("same" in w.value for w in at.warning)
    # one model only: no model B, Compare says a second model is needed and offers the pair
    one = tmp_path / "one"
    one.mkdir()
    shutil.copytree(Path(env["BRAINVIZ_MODELS"]) / "demo-tuned", one / "demo-tuned")
    monkeypatch.setenv("BRAINVIZ_MODELS", str(one))
    at = _app().run()
    _ok(at)
    assert at.sidebar.selectbox(key="model_a").value == "demo-tuned"
    assert not [s for s in at.sidebar.selectbox if s.key == "model_b"]
    _open(at, "compare")
    assert any("second model" in w.value for w in at.warning)
    assert at.button(key="first_run_pair")
    # ... and while the default pair trains (one of its two models done), its progress is inline
    from brainviz import jobs

    job = jobs.start([sys.executable, "-c", "import time; time.sleep(60)"], kind="train", label="pair",
                     meta={"pair": True, "dataset": at.session_state["_ctx"]["dataset_path"]})
    try:
        at.run()
        _ok(at)
        assert any("still training" in i.value for i in at.info)
        assert {"elapsed", "ETA"} <= {m.label for m in at.metric}
        assert "compare" not in at.session_state
    finally:
        jobs.cancel(job["id"])


def test_compare_page_runs_and_fills_state(env):
    at = _app(n="60").run()
    _open(at, "compare")
    assert at.session_state["cmp_n"] == 60 and not at.get("number_input")   # settings closed: lazy
    at.session_state["cmp_settings"] = True                                    # open "Comparison settings"
    at.run()
    assert at.number_input(key="cmp_n").value == 60
    assert at.button(key="cmp_run")
    at.button(key="cmp_run").click().run()
    _ok(at)
    res = at.session_state["compare"]
    maps = res["maps"]
    assert maps.participants == ["sub-01", "sub-02"] and maps.n_units == 20484
    assert at.query_params["run"] == "1" and at.query_params["q"] == "0.05"
    assert at.session_state["cmp_fig_payload"] <= 2_000_000
    labels = [m.label for m in at.metric]
    assert "units" in labels
    for tab in ["Flat map + selection", "Single model", "Fig. 2 curves", "ROIs", "Export"]:
        at.session_state["cmp_tab"] = tab
        at.run()
        _ok(at)
    assert at.query_params["tab"] == "Export"
    at.session_state["cmp_tab"] = "ROIs"
    at.run()
    roi = at.dataframe[0].value
    assert {"roi", "diff"} <= set(roi.columns) and len(roi) > 0
    # a second, identical comparison is read from the cache
    at.button(key="cmp_run").click().run()
    _ok(at)
    assert at.session_state["compare"]["from_cache"] is True
    # q threshold changes what is shown, without recomputing
    at.select_slider(key="cmp_q").set_value(1.0).run()
    _ok(at)
    assert at.query_params["q"] == "1.0"


def test_compare_page_without_checkpoints_offers_training(env, monkeypatch, tmp_path):
    from brainviz.app_support import first_run

    monkeypatch.setenv("BRAINVIZ_MODELS", str(tmp_path / "empty"))
    started = []
    monkeypatch.setattr(first_run, "start_pair", lambda dataset: started.append(dataset) or {"id": "x"})
    at = _app().run()
    _open(at, "compare")
    at.button(key="first_run_pair").click().run()
    _ok(at)
    assert len(started) == 1 and started[0].endswith("reading")  # the default pair, all participants


def test_attention_page(env):
    # defaults: base = pretrained, tuned = a brain-tuned checkpoint (never base = tuned)
    at = _app(nw="2").run()
    _open(at, "attention")
    assert at.selectbox(key="att_base").value == "pretrained"
    assert at.selectbox(key="att_tuned").value == "demo-tuned"
    at.button(key="att_run").click().run()
    _ok(at)
    res = at.session_state["attention"]
    assert res["base"].shape[1:] == (2, 6, 12, 2)
    assert np.all((res["base"] >= 0) & (res["base"] <= 1))
    assert at.radio(key="att_se").value == "examples"
    # the demo checkpoint's encoder is the base one: explained, no empty change map
    assert any("attends exactly like" in i.value for i in at.info)
    assert at.query_params["run"] == "1" and at.query_params["layer"] == "6"
    at.number_input(key="att_head").set_value(3).run()
    _ok(at)
    assert at.query_params["head"] == "3"
    # Fig. 4 with one y scale per panel, 1-based layers; token heat maps with query/key axis titles
    import json as _json
    import re as _re

    fig4, tokens = (_json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart"))
    assert fig4["yaxis"]["range"] != fig4["yaxis2"]["range"] and "matches" not in fig4["yaxis2"]
    assert fig4["xaxis"]["ticktext"][0] == "L1" and fig4["xaxis"]["ticktext"][-1] == "L6"
    assert tokens["xaxis"]["title"]["text"].startswith("key") and tokens["yaxis"]["title"]["text"].startswith("query")
    # base and tuned bertviz head views, offline (no script fetched from the internet), layer names 1-based
    frames = at.get("iframe")
    assert len(frames) == 2
    doc = str(frames[0].proto)
    assert "d3" in doc and not _re.search(r"src=\\?[\"']https?://", doc) and "cdnjs" not in doc


def test_attention_link_restores_view(env):
    """A shared link (run=1, se=seeds, layer, head) reopens the computed view without pressing
    Compute (read-outs from the on-disk cache)."""
    from brainviz.app_support import compute

    at = _app(base="pretrained", tuned="demo-tuned", nw="2", w0="3").run()
    _open(at, "attention")
    at.button(key="att_run").click().run()
    _ok(at)
    url = dict(at.query_params.to_dict()) if hasattr(at.query_params, "to_dict") else {
        k: at.query_params[k] for k in at.query_params}
    url.update(se="seeds", layer="2", head="5")
    cache = Path(env["BRAINVIZ_CACHE"]) / compute.ATTENTION_CACHE
    assert len(list(cache.glob("*.npy"))) >= 2  # base + tuned read-outs on disk
    at2 = _app(**url).run()
    _open(at2, "attention")
    assert "attention" in at2.session_state and at2.session_state["attention"]["base"].shape[1] == 2
    assert at2.radio(key="att_se").value == "seeds" and at2.query_params["se"] == "seeds"
    assert at2.number_input(key="att_layer").value == 2 and at2.number_input(key="att_head").value == 5
    assert at2.query_params["layer"] == "2" and at2.query_params["w0"] == "3"
    assert not any("Press **Compute" in i.value for i in at2.info)


def test_anbn_page(env):
    at = _app(ds="simulated-small/listening", nbn="4", perm="0").run()
    _open(at, "anbn")
    assert at.selectbox(key="cpl_story").value == "listening_1"
    assert at.selectbox(key="cpl_bn").value == "ica"
    at.button(key="cpl_run").click().run(timeout=600)
    _ok(at)
    result = at.session_state["coupling"]["result"]
    assert result.n_bns == 4 and result.n_ans == 6 * 12 * 32
    assert 1 <= len(at.dataframe[0].value) <= 50  # the top pairs (the AN–BN table's length is the coupling code's)
    for tab in ["Per layer", "BN map", "AN vs BN", "POS & text"]:
        at.session_state["cpl_tab"] = tab
        at.run()
        _ok(at)
