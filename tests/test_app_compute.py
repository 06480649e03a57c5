"""The Compare page's adapters: 'significant' comes from the named test only, never from the
display threshold; the group map uses the group test; ROI tables carry names."""

from __future__ import annotations

import numpy as np

from brainviz.app_support.compute import comparison_maps
from brainviz.evaluation import CompareConfig, compare_predictions
from brainviz.evaluation.calibration import ConstructedConfig, constructed_predictions


def _result(level="group"):
    d = constructed_predictions(ConstructedConfig(n_participants=4, n_seeds=2, n_rows=60, n_units=120, n_planted=30,
                                                  n_null_signal=30, effect=1.5), 0)
    return compare_predictions(d["preds_a"], d["preds_b"], d["targets"], d["runs"],
                               CompareConfig(n_samples=60, level=level, alpha=0.05), cache=False)


def test_display_threshold_never_makes_a_unit_significant():
    res = _result()
    maps = comparison_maps(res, ("A", "B"))
    assert maps.level == "group" and maps.group is not None
    loose = maps.frame(None, show_q=1.0)
    np.testing.assert_array_equal(loose["significant"].to_numpy(), res.group.significant)
    assert loose["shown"].sum() >= loose["significant"].sum()
    assert not (loose["significant"] & (loose["q"] > 0.05)).any()  # q 0.83 is never "significant"
    assert (loose["test"] == "group:ttest").all()
    values, shown = maps.map("diff", None, 1.0)
    assert shown.sum() == np.isfinite(res.group.q).sum()
    part = maps.frame("sub-02", show_q=1.0)
    np.testing.assert_array_equal(part["significant"].to_numpy(), res.tests["sub-02"].significant)
    assert "group:ttest" in maps.describe() and "4 participant(s)" in maps.describe()


def test_roi_table_has_names_and_one_test_per_roi():
    from types import SimpleNamespace

    from brainviz.app_support.compute import roi_table

    res = _result()
    atlas = SimpleNamespace(labels=np.repeat([0, 1, 2, 3], 30), names={0: "planted", 1: "null-signal", 2: "n2", 3: "n3"})
    table = roi_table(res, atlas, None)
    assert table["roi"].tolist() == ["planted", "null-signal", "n2", "n3"]
    assert (table["test"] == "group:ttest").all() and (table["n"] == 4).all()
    assert table.set_index("roi").loc["planted", "significant"]
    assert np.isfinite(table["se"]).all()
    one = roi_table(res, atlas, "sub-01")
    assert (one["test"] == "block-sign-flip[pearson]").all() and (one["level"] == "participant").all()


# --------------------------------------------------------------------------------------
# checkpoint card headline, attention cache, quiet logs, sidebar defaults
# --------------------------------------------------------------------------------------


def test_headline_metrics_cross_run_selection_is_not_inflated():
    """Pure-noise units: the cross-run top-5 % mean stays near 0 (selecting and scoring the
    same run would give a large positive value); planted units are reported inside the ROI."""
    from brainviz.app_support.compute import headline_metrics

    rng = np.random.default_rng(0)
    n_units, runs = 2000, ["run-1", "run-2", "run-3", "run-4"]
    mask = np.zeros(n_units, bool)
    mask[:100] = True
    r = {"sub-01": {run: np.where(mask, 0.4, 0.0) + rng.normal(0, 0.1, n_units) for run in runs}}
    h = headline_metrics(r, mask, "planted")
    assert h["roi"]["inside"] > 0.35 and abs(h["roi"]["outside"]) < 0.02
    assert h["top"] > 0.3  # the selection finds the planted units
    noise = {"sub-01": {run: rng.normal(0, 0.1, n_units) for run in runs}}
    hn = headline_metrics(noise)
    same_run = np.mean([np.sort(v)[-100:].mean() for v in noise["sub-01"].values()])
    assert abs(hn["top"]) < 0.03 < same_run and "roi" not in hn
    assert hn["top_n_units"] == 100 and hn["n_units"] == n_units


def test_heldout_r_by_run_matches_manual(tmp_path, small_sim):
    from brainviz.app_support.compute import heldout_r_by_run
    from brainviz.app_support.demo import make_demo_checkpoints
    from brainviz.data.dataset import load_dataset
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples
    from brainviz.evaluation import io

    made = make_demo_checkpoints(small_sim["reading"], tmp_path / "models", participants=["sub-01"], seeds=(0,))
    path = made["demo-tuned"]
    r = heldout_r_by_run(str(path))
    held = io.load_heldout(path, ["sub-01"])
    ex = fmri_examples(load_dataset(small_sim["reading"]), "sub-01",
                       PreprocessConfig.from_dict(io.scan_heldout(path)["card"]["preprocess"]))
    rows = np.searchsorted(ex.tr_index, held["tr_index"]["sub-01"])
    run = held["runs"]["sub-01"][0]
    sel = held["runs"]["sub-01"] == run
    pred, target = held["predictions"]["sub-01"][0][sel][:, 7], ex.data[rows][sel][:, 7]
    assert abs(r["sub-01"][str(run)][7] - np.corrcoef(pred, target)[0, 1]) < 1e-4


def test_attention_readouts_cached_on_disk(monkeypatch, tmp_path):
    from brainviz.app_support import compute

    calls = []
    monkeypatch.setattr(compute, "attention_readouts",
                        lambda source, windows, encoder_pair=None: calls.append(1) or np.ones((1, len(windows), 2, 3, 2)))
    windows = [["a", "b"], ["c"]]
    a, hit = compute.cached_attention_readouts("pretrained", windows)
    b, hit2 = compute.cached_attention_readouts("pretrained", windows)
    assert not hit and hit2 and calls == [1] and np.array_equal(a, b)
    assert compute.attention_cache_file("pretrained", windows) != compute.attention_cache_file("pretrained", [["a"]])


def test_quiet_drops_only_the_missing_context_warning():
    import logging

    from brainviz.app_support import logs

    logs.quiet()
    logs.quiet()  # idempotent
    logger = logging.getLogger(logs.SCRIPT_CTX_LOGGER)
    assert sum(isinstance(f, logs._DropMissingContext) for f in logger.filters) == 1
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    # a handler on the logger itself: Streamlit's loggers do not propagate to the root (caplog's)
    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        logger.warning("Thread 'x': missing ScriptRunContext! This warning can be ignored when running in bare mode.")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert seen == ["something else"]


def test_encoder_load_is_quiet_and_restores_settings(capfd):
    from transformers.utils import logging as hf_logging

    from brainviz.models.encoder import load_encoder

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    load_encoder("pretrained")
    err = capfd.readouterr().err
    assert "Loading weights" not in err
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before


def test_default_models_are_distinct():
    from brainviz.app_support.sidebar import default_model_a, default_model_b, distinct_pair

    names = ["vanilla-quick", "fine-tuned-quick", "other"]
    variants = {"vanilla-quick": "vanilla", "fine-tuned-quick": "fine-tuned", "other": "joint"}
    a = default_model_a(names, variants)
    assert a == "fine-tuned-quick" and default_model_b(names, variants, a) == "vanilla-quick"
    assert default_model_b(names, variants, "vanilla-quick") == "fine-tuned-quick"  # never B = A
    assert default_model_b(["x", "y"], {}, "y") == "x"
    assert not distinct_pair({"models": {"x": 1}, "model_a": "x", "model_b": "x"})
    assert distinct_pair({"models": {"x": 1, "y": 2}, "model_a": "x", "model_b": "y"})


def _deferred_app():
    import streamlit as st

    from brainviz.app_support import state

    state.begin_run()
    box = st.container()                       # where the widget belongs in the layout
    state.widget_value("k", 20, min_value=2, max_value=100)
    k = st.session_state["k"]                   # its value, before the widget is drawn
    st.markdown(f"figure drawn with k = {k}")   # sent first
    state.draw_later(lambda: st.number_input("k", min_value=2, max_value=100, key="k"), box)
    state.draw_later(lambda: st.caption("drawn last"), st.container())
    state.draw_deferred()


def test_draw_later_keeps_layout_and_widget_values():
    """Widgets sent after the figure (state.draw_later) keep their place and their value."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_deferred_app).run()
    assert not at.exception
    assert at.markdown[0].value == "figure drawn with k = 20"
    kinds = [type(e).__name__ for e in at.main]
    assert kinds.index("NumberInput") < kinds.index("Markdown") < kinds.index("Caption")  # layout order
    at.number_input(key="k").set_value(7).run()
    assert at.markdown[0].value == "figure drawn with k = 7"
    at.run()                                                    # kept on a rerun without interaction
    assert at.markdown[0].value == "figure drawn with k = 7" and at.number_input(key="k").value == 7


def test_warm_up_imports_and_draws_a_throwaway_montage(monkeypatch):
    """The server's background warm-up: the pages' imports, the mesh and montage look-ups."""
    import sys

    from brainviz import surface
    from brainviz.app_support import resources
    from brainviz.viz import montage

    calls = []
    real = montage.montage_jpeg
    monkeypatch.setattr(montage, "montage_jpeg", lambda *a, **k: calls.append(k) or real(*a, **k))
    resources._warm_up()
    assert all(name in sys.modules for name in resources.WARM_UP_MODULES)
    assert calls and calls[0]["simulated"] is True
    assert surface.medial_wall_mask().shape == (surface.N_VERTICES,)
