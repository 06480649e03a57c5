"""The default pair (brainviz.tuning.pair) and the Compare page's first-run panel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return {"root": root, "bert": make_tiny_bert(root / "bert"),
            "data": make_tiny_dataset(root / "data", n_fmri=2, n_meg=0)}


def test_train_pair_trains_vanilla_then_fine_tuned_with_one_progress_file(tiny):
    from brainviz.models.store import load_checkpoint
    from brainviz.tuning.pair import PAIR_NAMES, train_pair

    progress = tiny["root"] / "progress.jsonl"
    out = train_pair(str(tiny["data"]), tiny["root"] / "models", progress, base=str(tiny["bert"]),
                     preprocess=TINY_PREPROCESS, folds=("run-1",), pooling="cls")
    assert out["vanilla"].name == PAIR_NAMES["vanilla"] and out["fine-tuned"].name == PAIR_NAMES["fine-tuned"]
    va, ft = load_checkpoint(out["vanilla"]), load_checkpoint(out["fine-tuned"])
    # same heads and schedule, minus the encoder updates
    # vanilla's heads and the fine-tuned model's refitted heads get the same schedule
    assert va.card["train_config"]["stage_epochs"]["heads"] == ft.card["train_config"]["stage_epochs"]["refit"]
    assert va.card["head_mode"] == ft.card["head_mode"] == "shared" and va.participants == ft.participants == ["P1", "P2"]
    lines = [json.loads(x) for x in progress.read_text().splitlines()]
    fractions = [x["fraction"] for x in lines]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one monotone bar for the pair
    assert {x["stage"] for x in lines} == {"1/2 vanilla", "2/2 fine-tuned"}
    assert all(x["elapsed_s"] >= 0 for x in lines) and any(x["eta_s"] is not None for x in lines)
    # a second call finds both and trains nothing
    again = train_pair(str(tiny["data"]), tiny["root"] / "models", None, base=str(tiny["bert"]),
                       preprocess=TINY_PREPROCESS, folds=("run-1",), pooling="cls")
    assert again == out
    assert np.isfinite(ft.card["metrics"]["mean_pearson_r"])


def test_first_run_panel_offers_the_pair_then_shows_the_job(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BRAINVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINVIZ_MODELS", str(tmp_path / "models"))
    missing = str(tmp_path / "no-such-dataset")

    def page(dataset_path: str):
        from brainviz.app_support.first_run import offer_default_pair

        offer_default_pair({"summary": {"participants": ["sub-01", "sub-02", "sub-03"], "simulated": True},
                            "dataset_path": dataset_path})

    at = AppTest.from_function(page, args=(missing,), default_timeout=30)
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "all 3 fMRI participants" in text and "(simulated)" in text
    assert at.button[0].label == "Brain-tune the default pair"
    at.button[0].click().run()
    from brainviz import jobs

    started = jobs.list_jobs(kind="train")
    assert len(started) == 1 and started[0]["meta"] == {"pair": True, "dataset": missing}
    assert "brainviz.tuning.pair" in " ".join(started[0]["argv"])
    # the job fails (no dataset): the panel says so and offers to start again
    import time

    for _ in range(100):
        if jobs.status(started[0]["id"])["state"] != "running":
            break
        time.sleep(0.3)
    at.run()
    assert not at.exception
    assert any("failed" in e.value for e in at.error) and at.button[0].label == "Brain-tune the default pair"


def test_select_pair_sets_a_fine_tuned_and_b_vanilla():
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from brainviz.app_support.first_run import select_pair

        select_pair()
        st.write(f"{st.session_state['model_a']}|{st.session_state['model_b']}")

    at = AppTest.from_function(page).run()
    a, b = at.markdown[0].value.split("|")
    assert (a, b) == ("fine-tuned-quick", "vanilla-quick") and a != b
