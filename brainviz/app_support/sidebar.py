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
        variants = {r["name"]: str(r.get("variant") or "") for r in resources.checkpoints()}
        if len(names) >= 2:
            def_a = default_model_a(names, variants)
            state.widget_value("model_a", def_a, options=names)
            out["model_a"] = st.selectbox("Model A", names, key="model_a", help="Checkpoints with held-out predictions")
            # B defaults to a model other than the A actually chosen (never A = B by default)
            state.widget_value("model_b", default_model_b(names, variants, out["model_a"]), options=names)
            out["model_b"] = st.selectbox("Model B", names, key="model_b",
                                          help="Another checkpoint; A and B must differ to be compared")
            if out["model_a"] == out["model_b"]:
                st.warning("A and B are the same model: choose two different checkpoints to compare.")
        elif names:
            for stale in ("model_b", "_keep:model_b"):  # so that B defaults to the next new model, never to A
                st.session_state.pop(stale, None)
            state.widget_value("model_a", names[0], options=names)
            out["model_a"] = st.selectbox("Model A", names, key="model_a", help="Checkpoints with held-out predictions")
            st.caption(f"**Model B**: only one checkpoint (`{names[0]}`) has held-out predictions; a comparison "
                       "needs a second one (Compare offers the default pair; Models → Brain-tune trains a vanilla).")
        else:
            st.caption("No checkpoints with held-out predictions yet (Models page: brain-tune one).")
        st.divider()
        st.caption(f"cache: `{_short(resources.paths.cache_dir())}`  \nmodels: `{_short(resources.paths.models_dir())}`")
    return out


def distinct_pair(ctx: dict[str, Any]) -> bool:
    """Whether the sidebar's models A and B are two different checkpoints with predictions."""
    models = ctx.get("models") or {}
    a, b = ctx.get("model_a"), ctx.get("model_b")
    return a in models and b in models and a != b


def _variant_rank(name: str, variant: str, prefer: str) -> int:
    v, n = variant.lower(), name.lower()
    if prefer == "tuned":
        return 0 if v == "fine-tuned" else 1 if ("tuned" in v or "tuned" in n) and "vanilla" not in v + n else 2
    return 0 if v == "vanilla" else 1 if "vanilla" in v + n else 2


def default_model_a(names: list[str], variants: dict[str, str]) -> str:
    """The default model A: a fine-tuned checkpoint when there is one (newest name order kept)."""
    return min(names, key=lambda n: (_variant_rank(n, variants.get(n, ""), "tuned"), names.index(n)))


def default_model_b(names: list[str], variants: dict[str, str], model_a: str | None) -> str:
    """The default model B: a vanilla checkpoint other than ``model_a`` (any other one when
    there is no vanilla); ``model_a`` itself only when it is the only model."""
    others = [n for n in names if n != model_a] or list(names)
    return min(others, key=lambda n: (_variant_rank(n, variants.get(n, ""), "vanilla"), others.index(n)))


def _short(p: Path) -> str:
    s = str(p)
    return s if len(s) < 40 else "…" + s[-38:]


def context() -> dict[str, Any]:
    """The shared choices of this run (drawn by ``app.py``; drawn here when a page runs alone)."""
    ctx = st.session_state.get("_ctx")
    if ctx is None:
        ctx = st.session_state["_ctx"] = sidebar()
    return ctx
