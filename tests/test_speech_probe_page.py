"""Speech page → "Downstream check" (issue 15): the word-class probe behind a button, on the
small simulated listening dataset with the page's demo model (a tiny random wav2vec2)."""

from __future__ import annotations

import json

import pytest
from _speech_fixtures import listening_small, speech_page_app  # noqa: F401  (fixture)


def test_speech_page_runs_the_word_class_probe(listening_small, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("streamlit.testing.v1")
    monkeypatch.setenv("BRAINVIZ_CACHE", str(tmp_path / "cache"))  # the demo model is built here
    monkeypatch.setenv("BRAINVIZ_MODELS", str(tmp_path / "models"))
    at = speech_page_app(listening_small, ["sub-01"], monkeypatch).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Downstream check" in h.value for h in at.subheader)
    assert at.selectbox(key="sp_probe_model").options[0].startswith("Model A: demo")
    n_charts = len(at.get("plotly_chart"))
    at.number_input(key="sp_probe_window").set_value(0.3)
    at.number_input(key="sp_probe_perm").set_value(19)
    at.button(key="sp_probe_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert set(table["layer"]) == {"0", "1", "2", "duration"} and len(set(table["test_story"])) == 2
    assert table["accuracy"].between(0, 1).all() and table["p"].between(1 / 20, 1).all()
    charts = at.get("plotly_chart")
    assert len(charts) == n_charts + 1
    spec = json.loads(charts[-1].proto.spec)
    layout = spec["layout"]
    assert "simulated" in layout["title"]["text"]
    assert layout["xaxis"]["title"]["text"] and "balanced accuracy" in layout["yaxis"]["title"]["text"]
    assert any(s.get("y0") == 0.5 and s.get("y1") == 0.5 for s in layout["shapes"])  # the chance line
    assert len(spec["data"]) == 2  # one bar trace per held-out story
    # cached: a rerun without clicking shows the same result without recomputing
    at.run()
    assert not at.exception and at.dataframe[-1].value.equals(table)
