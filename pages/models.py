"""Models: checkpoint cards, loading any Hugging Face id or local folder, and brain-tuning jobs
that run in the background (progress and log survive page switches; cancellable)."""

from brainviz.app_support import router

router.ensure()

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from brainviz import jobs, paths
from brainviz.app_support import job_panel, resources, sidebar, state

ctx = sidebar.context()
summ = ctx["summary"]
state.page_title("Models", simulated=bool(summ and summ.get("simulated")))

TABS = ["Checkpoints", "Load a model", "Brain-tune", job_panel.JOBS_TAB]
tabs = state.lazy_tabs(TABS, key="models_tab", qp="tab")
tab_cards, tab_load, tab_train, tab_jobs = tabs


def _fmt(x, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "—"


def draw_card(row: dict) -> None:
    """A readable checkpoint card; the full card.json in a collapsed expander."""
    card = resources.card(row["path"], Path(row["path"], "card.json").stat().st_mtime) or {}
    sim_flag = bool(card.get("simulated", row.get("simulated")))
    tc = card.get("train_config") or {}
    ds = card.get("dataset") or {}
    metrics = card.get("metrics") or {}
    demo = bool(tc.get("demo")) or str(card.get("variant", "")).startswith("demo")
    st.markdown(f"#### {row['name']}")
    if sim_flag:
        state.simulated_badge(True)
    if demo:
        st.caption("**demo** prediction folder built from the simulated ground truth (for tests): not a trained model.")
    c = st.columns(3)
    c[0].metric("participants", len(card.get("participants", [])))
    c[1].metric("folds × seeds", f"{len(card.get('folds', []))} × {len(card.get('seeds', []))}")
    change = (metrics.get("encoder_change") or {}).get("relative_l2_mean")
    c[2].metric("encoder ‖Δθ‖/‖θ‖", _fmt(change, ".4f") if change is not None else "0 (frozen)",
                help="‖θ − θ₀‖ / ‖θ₀‖ of the encoder after brain-tuning, mean over fits; 0: the encoder is the base")
    lines = [
        f"**variant**: `{card.get('variant', '?')}` · **base model**: `{card.get('base', '?')}`",
        f"**dataset**: `{ds.get('name')}`" + (" — **SIMULATED**" if sim_flag else " — real data"),
        f"**participants**: {', '.join(card.get('participants', [])) or '—'}"
        + (f"; MEG: {', '.join(card['meg_participants'])}" if card.get("meg_participants") else ""),
        f"**held-out folds** (runs): {', '.join(map(str, card.get('folds', []))) or '—'}; "
        f"**seeds**: {', '.join(map(str, card.get('seeds', []))) or '—'}",
    ]
    settings = [f"{k} = {tc[k]}" for k in ("preset", "loss", "lora", "lr", "batch_size", "max_length", "stage_epochs",
                                            "head_mode") if k in tc and tc[k] is not None]
    if settings:
        lines.append("**training**: " + ", ".join(settings))
    if card.get("train_seconds"):
        lines.append(f"**training time**: {job_panel.fmt_seconds(card['train_seconds'])}")
    lines.append(f"created {card.get('created', '?')} · folder `{row['path']}`")
    st.markdown("  \n".join(lines))

    st.markdown("**Held-out prediction accuracy** (Pearson r per unit on runs the model never saw)")
    dataset_path = ds.get("path") if ds.get("path") and Path(ds["path"]).is_dir() else ctx.get("dataset_path")
    try:
        with st.spinner("Reading held-out predictions…"):
            h = resources.checkpoint_headline(row["path"], dataset_path)
    except Exception as exc:  # missing targets / predictions: say so, keep the card
        st.info(f"Held-out summary unavailable: {exc}")
        h = None
    if h:
        c = st.columns(3)
        if "roi" in h:
            roi = h["roi"]
            c[0].metric("mean r in planted regions" if "planted" in roi["label"] else "mean r in ROI",
                        _fmt(roi["inside"]),
                        help=f"{roi['label']}: {roi['n_units']} units; outside them r = {_fmt(roi['outside'])}")
        c[1].metric(f"mean r, top {h['top_fraction']:.0%} (cross-run)", _fmt(h["top"]),
                    help="for each held-out run, the top units by r on the other runs, scored on this run "
                         "(selection and score use disjoint data, so the value is not inflated)")
        c[2].metric(f"mean r, all {h['n_units']:,} units", _fmt(h["all"]),
                    help="most cortical units carry no language signal, so this average is close to 0 for any model")
        if "roi" in h:
            st.caption(f"ROI: {h['roi']['label']} ({h['roi']['n_units']} units; outside it: r = "
                       f"{_fmt(h['roi']['outside'])}).")
        st.caption(f"{h['n_participants']} participant(s); predictions averaged over seeds. Compare two models on "
                   "the **Compare** page for tests with FDR.")
    elif isinstance(metrics.get("mean_pearson_r"), (int, float)):
        st.caption(f"card: mean r over all units {metrics['mean_pearson_r']:.3f} (mostly null units)")
    with st.expander("Full card (card.json)", expanded=False):
        st.code(json.dumps({k: v for k, v in card.items() if k not in ("fits", "predictions", "versions")},
                           indent=1, default=str)[:8000], language="json")


with tab_cards:
    if state.tab_open(tab_cards):
        ckpts = resources.checkpoints()
        st.caption(f"store: `{paths.models_dir()}`")
        st.dataframe(pd.DataFrame([{
            "name": r["name"], "variant": r["variant"], "dataset": r.get("dataset"),
            "data": "SIMULATED" if r.get("simulated") else ("" if r.get("simulated") is None else "real"),
            "participants": ", ".join(r.get("participants") or []), "created": r.get("created"),
            "problem": r.get("error", ""),
        } for r in ckpts]), hide_index=True, width="stretch")
        names = [r["name"] for r in ckpts]
        trained = [n for n in names if n != "pretrained"]
        state.widget_value("models_card", (trained or names)[0], qp="ck", options=names)
        pick = st.selectbox("Checkpoint card", names, key="models_card")
        row = next(r for r in ckpts if r["name"] == pick)
        with st.container(border=True):
            if row.get("error"):
                st.error(row["error"])
            elif row["name"] == "pretrained":
                st.markdown("#### pretrained")
                st.write("The packaged all-MiniLM-L6-v2 encoder (6 layers × 12 heads, hidden 384); "
                         "every brain-tuning run starts from it by default. It has no held-out predictions.")
            elif row.get("variant") == "(partial)":
                st.info("Training in progress or interrupted (re-run the same command to resume).")
            else:
                draw_card(row)

with tab_load:
    if state.tab_open(tab_load):
        st.write("Load any Hugging Face model folder, hub id (needs internet) or checkpoint; it becomes "
                 "available on the Attention and AN–BN pages for this session.")
        state.widget_value("load_src", "pretrained", qp="load")
        src = st.text_input("Model id or folder", key="load_src")
        if st.button("Load model", key="load_btn"):
            with st.status(f"Loading {src}…", expanded=False) as s:
                try:
                    model, tok = resources.encoder(src)
                except Exception as exc:  # ModelNotFoundError, OSError: show the message
                    s.update(label=f"Could not load {src}", state="error")
                    st.session_state["load_error"] = str(exc)
                else:
                    cfg = model.config
                    st.session_state.setdefault("extra_models", {})[Path(src).name or src] = src
                    st.session_state["load_info"] = {
                        "model": src, "type": cfg.model_type, "layers": cfg.num_hidden_layers,
                        "heads": cfg.num_attention_heads, "hidden": cfg.hidden_size,
                        "vocab": getattr(tok, "vocab_size", None),
                    }
                    st.session_state.pop("load_error", None)
                    s.update(label=f"Loaded {src}", state="complete")
        if st.session_state.get("load_error"):
            st.error(st.session_state["load_error"])
        if st.session_state.get("load_info"):
            st.json(st.session_state["load_info"])

with tab_train:
    if state.tab_open(tab_train):
        if summ is None:
            st.info("No dataset yet.")
        else:
            from brainviz.tuning.losses import LOSSES
            from brainviz.tuning.variants import PRESETS, VARIANTS

            st.write("Brain-tuning runs `python -m brainviz train …` in the background; its state lives in "
                     f"`{jobs.jobs_dir()}` so it survives page switches and app restarts.")
            pids = summ["participants"]
            state.widget_value("train_variant", "fine-tuned", qp="tv", options=list(VARIANTS))
            state.widget_value("train_preset", "quick", qp="tp", options=list(PRESETS))
            state.widget_value("train_loss", LOSSES[0], qp="tl", options=list(LOSSES))
            state.widget_value("train_parts", [p for p in ctx["participants"] if p in pids] or pids[:1],
                               qp="tpp", options=pids)
            with st.form("train_form"):
                c = st.columns(3)
                variant = c[0].selectbox("Variant", VARIANTS, key="train_variant")
                preset = c[1].selectbox("Preset", PRESETS, key="train_preset")
                loss = c[2].selectbox("Loss", LOSSES, key="train_loss")
                parts = st.multiselect("Participants", pids, key="train_parts",
                                       help="Defaults to the participants chosen in the sidebar")
                c = st.columns(3)
                lora = c[0].checkbox("LoRA", value=False, key="train_lora")
                seeds = c[1].text_input("Seeds", value="0", key="train_seeds")
                name = c[2].text_input("Checkpoint name", value="", key="train_name",
                                       placeholder="variant-preset (default)")
                submitted = st.form_submit_button("Start brain-tuning")
            if submitted:
                try:
                    seed_list = [int(s) for s in seeds.replace(",", " ").split()]
                    out = paths.models_dir() / (name.strip() or f"{variant}-{preset}")
                    if out.exists():
                        raise ValueError(f"{out} already exists: choose another name")
                    job = jobs.start_training(dataset=ctx["dataset_path"], variant=variant, out=str(out),
                                              participants=parts, preset=preset, loss=loss, lora=lora,
                                              seeds=seed_list)
                    st.session_state["last_job"] = job["id"]
                except Exception as exc:
                    st.error(str(exc))
            if st.session_state.get("last_job"):
                job_panel.inline_job_status(st.session_state["last_job"])
        state.remember("train_lora", "train_seeds", "train_name")

with tab_jobs:
    if state.tab_open(tab_jobs):
        state.widget_value("models_job", "", qp="job")
        focus = st.session_state.get("models_job") or ""
        rows = jobs.list_jobs(kind="train")
        if focus and any(j["id"] == focus for j in rows):  # the job a link pointed at comes first
            rows.sort(key=lambda j: j["id"] != focus)
        live = any(j["state"] == "running" for j in rows[:8])

        @st.fragment(run_every=job_panel.REFRESH_S if live else None)
        def jobs_list() -> None:
            rows_now = jobs.list_jobs(kind="train")
            if focus:
                rows_now.sort(key=lambda j: j["id"] != focus)
            if not rows_now:
                st.caption("No brain-tuning jobs yet (start one on the Brain-tune tab).")
                return
            for j in rows_now[:8]:
                with st.container(border=True, key=f"bv-jobrow-{j['id']}"):
                    c = st.columns([0.8, 0.2])
                    c[0].markdown(f"**{j['label']}**  \n`{j['id']}` · started {j.get('created')}"
                                  + (" · ← linked" if j["id"] == focus else ""))
                    if j["state"] == "running" and c[1].button("Cancel", key=f"cancel_{j['id']}"):
                        jobs.cancel(j["id"])
                        st.rerun()
                    job_panel.draw_job(j, link=False)
                    if j["state"] == "done" and j.get("out"):
                        st.success(f"Checkpoint ready: `{j['out']}` (Checkpoints tab and the sidebar)")
                    with st.expander("log", expanded=j["state"] in ("running", "failed") or j["id"] == focus):
                        st.code(jobs.tail_log(j["id"], 30) or "(empty)", language="text")
            if live and not any(j["state"] == "running" for j in rows_now):
                st.rerun()  # a job just ended: redraw the page (new checkpoint in the cards and sidebar)

        jobs_list()
