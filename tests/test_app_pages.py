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


@pytest.fixture(scope="module")
def app_env(small_sim, tmp_path_factory):
    """Cache with the small simulated datasets + store with demo-tuned / demo-vanilla."""
    from brainviz.app_support.demo import make_demo_checkpoints

    root = tmp_path_factory.mktemp("app")
    cache, models = root / "data_cache", root / "models"
    target = cache / "datasets" / "simulated-small"
    target.mkdir(parents=True)
    for exp, path in small_sim.items():
        shutil.copytree(path, target / exp)
    make_demo_checkpoints(target / "reading", models, participants=["sub-01", "sub-02"], seeds=(0, 1))
    return {"BRAINVIZ_CACHE": str(cache), "BRAINVIZ_MODELS": str(models)}


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
              "    open(p,'a').write(json.dumps({'fraction': i/2, 'message': f'epoch {i}'})+'\\n'); time.sleep(0.2)\n")
    monkeypatch.setattr(jobs, "train_command", lambda **kw: [sys.executable, "-c", worker, jobs.PROGRESS_PLACEHOLDER])
    at = _app().run()
    _open(at, "models")
    assert at.title[0].value == "Models"
    at.text_input(key="load_src").set_value("pretrained")
    at.button(key="load_btn").click().run()
    _ok(at)
    info = at.session_state["load_info"]
    assert info["layers"] == 6 and info["heads"] == 12
    assert at.session_state["extra_models"]["pretrained"] == "pretrained"
    submit = next(b for b in at.button if b.label == "Start brain-tuning")
    submit.click().run()
    _ok(at)
    job_id = at.session_state["last_job"]
    deadline = time.monotonic() + 60
    while jobs.status(job_id)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs.status(job_id)["state"] == "done"
    at.run()
    _ok(at)
    assert any("epoch 2" in p.text or "done" in (p.text or "") for p in at.get("progress"))


def test_compare_page_runs_and_fills_state(env):
    at = _app(n="60").run()
    _open(at, "compare")
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
    at = _app(base="pretrained", tuned="demo-tuned", nw="2").run()
    _open(at, "attention")
    assert at.selectbox(key="att_base").value == "pretrained"
    assert at.selectbox(key="att_tuned").value == "demo-tuned"
    at.button(key="att_run").click().run()
    _ok(at)
    res = at.session_state["attention"]
    assert res["base"].shape[1:] == (2, 6, 12, 2)
    assert np.all((res["base"] >= 0) & (res["base"] <= 1))
    assert at.radio(key="att_se").value == "examples"
    at.number_input(key="att_head").set_value(3).run()
    _ok(at)


def test_anbn_page(env):
    at = _app(ds="simulated-small/listening", nbn="4", perm="0").run()
    _open(at, "anbn")
    assert at.selectbox(key="cpl_story").value == "listening_1"
    assert at.selectbox(key="cpl_bn").value == "ica"
    at.button(key="cpl_run").click().run(timeout=600)
    _ok(at)
    result = at.session_state["coupling"]["result"]
    assert result.n_bns == 4 and result.n_ans == 6 * 12 * 32
    assert len(at.dataframe[0].value) == 50
    for tab in ["Per layer", "BN map", "AN vs BN", "POS & text"]:
        at.session_state["cpl_tab"] = tab
        at.run()
        _ok(at)
