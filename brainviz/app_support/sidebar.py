"""The sidebar with the shared choices: dataset, participants, models A and B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from brainviz.app_support import resources, state


def sidebar() -> dict[str, Any]:
    """Draw the shared choices; return ``{dataset_key, dataset_path, summary, participants,
    model_a, model_b, models}`` (None where nothing is available yet)."""
    out: dict[str, Any] = {"dataset_key": None, "dataset_path": None, "summary": None, "participants": [],
                           "model_a": None, "model_b": None, "models": {}}
    datasets = resources.discover_datasets()
    with st.sidebar:
        st.markdown("### Shared choices")
        if not datasets:
            st.info("No dataset yet: the Home page builds the simulated default.")
        else:
            keys = list(datasets)
            default = next((k for k in keys if k.endswith("simulated-default/reading")), next((k for k in keys if k.endswith("reading")), keys[0]))
            state.widget_value("dataset", default, options=keys)
            key = st.selectbox("Dataset", keys, key="dataset", help="Folders with dataset.json under data_cache/datasets")
            path = datasets[key]
            summ = resources.summary(path)
            out.update(dataset_key=key, dataset_path=str(path), summary=summ)
            if summ.get("simulated"):
                state.simulated_badge(True)
            pids = list(summ.get("participants") or [])
            state.widget_value("participants", pids[: min(len(pids), 3)], options=pids)
            out["participants"] = st.multiselect("Participants", pids, key="participants",
                                                 help="fMRI participants used by the analyses")
        models = resources.comparable_models()
        out["models"] = models
        names = list(models)
        if names:
            def_a = next((n for n in names if "tuned" in n and "vanilla" not in n), names[0])
            def_b = next((n for n in names if n != def_a and "vanilla" in n), next((n for n in names if n != def_a), names[0]))
            state.widget_value("model_a", def_a, options=names)
            out["model_a"] = st.selectbox("Model A", names, key="model_a", help="Checkpoints with held-out predictions")
            state.widget_value("model_b", def_b, options=names)
            out["model_b"] = st.selectbox("Model B", names, key="model_b")
        else:
            st.caption("No checkpoints with held-out predictions yet (Models page: brain-tune one).")
        st.divider()
        st.caption(f"cache: `{_short(resources.paths.cache_dir())}`  \nmodels: `{_short(resources.paths.models_dir())}`")
    return out


def _short(p: Path) -> str:
    s = str(p)
    return s if len(s) < 40 else "…" + s[-38:]


def context() -> dict[str, Any]:
    """The shared choices of this run (drawn by ``app.py``; drawn here when a page runs alone)."""
    ctx = st.session_state.get("_ctx")
    if ctx is None:
        ctx = st.session_state["_ctx"] = sidebar()
    return ctx
