"""Models: checkpoint cards, loading any Hugging Face id or local folder, and brain-tuning jobs
that run in the background (progress and log survive page switches; cancellable)."""

from brainviz.app_support import router

router.ensure()

import json
from pathlib import Path

import streamlit as st

from brainviz import jobs, paths
from brainviz.app_support import resources, state, sidebar

ctx = sidebar.context()
summ = ctx["summary"]
state.page_title("Models", simulated=bool(summ and summ.get("simulated")))

tab_cards, tab_load, tab_train = st.tabs(["Checkpoints", "Load a model", "Brain-tune"])

with tab_cards:
    ckpts = resources.checkpoints()
    st.caption(f"store: `{paths.models_dir()}`")
    for row in ckpts:
        sim_flag = row.get("simulated")
        tag = " · SIMULATED data" if sim_flag else ""
        with st.expander(f"**{row['name']}** — {row['variant']}{tag}", expanded=False):
            if row.get("error"):
                st.error(row["error"])
                continue
            if row["name"] == "pretrained":
                st.write("The packaged all-MiniLM-L6-v2 encoder (6 layers × 12 heads, hidden 384); "
                         "every brain-tuning run starts from it by default.")
                continue
            if row.get("variant") == "(partial)":
                st.info("Training in progress or interrupted (re-run the same command to resume).")
                continue
            if sim_flag:
                state.simulated_badge(True)
            card = resources.card(row["path"], Path(row["path"], "card.json").stat().st_mtime) or {}
            c = st.columns(4)
            c[0].metric("variant", card.get("variant", "?"))
            c[1].metric("participants", len(card.get("participants", [])))
            c[2].metric("folds × seeds", f"{len(card.get('folds', []))} × {len(card.get('seeds', []))}")
            mr = (card.get("metrics") or {}).get("mean_pearson_r")
            c[3].metric("held-out r", f"{mr:.3f}" if isinstance(mr, (int, float)) else "—")
            st.write(f"dataset: `{(card.get('dataset') or {}).get('name')}` · base: `{card.get('base')}` · "
                     f"created {card.get('created')}")
            tc = card.get("train_config") or {}
            if tc:
                st.caption("train config: " + ", ".join(f"{k}={tc[k]}" for k in
                           ("preset", "loss", "lora", "lr", "batch_size", "max_length") if k in tc))
            st.code(json.dumps({k: v for k, v in card.items() if k not in ("fits", "predictions", "versions")},
                               indent=1, default=str)[:4000], language="json")

with tab_load:
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
    if summ is None:
        st.info("No dataset yet.")
    else:
        from brainviz.tuning.losses import LOSSES
        from brainviz.tuning.variants import PRESETS, VARIANTS

        st.write("Brain-tuning runs `python -m brainviz train …` in the background; its state lives in "
                 f"`{jobs.jobs_dir()}` so it survives page switches and app restarts.")
        with st.form("train_form"):
            c = st.columns(3)
            variant = c[0].selectbox("Variant", VARIANTS, index=VARIANTS.index("fine-tuned"))
            preset = c[1].selectbox("Preset", PRESETS, index=PRESETS.index("quick"))
            loss = c[2].selectbox("Loss", LOSSES)
            pids = summ["participants"]
            parts = st.multiselect("Participants", pids, default=[p for p in ctx["participants"] if p in pids][:1] or pids[:1])
            c = st.columns(3)
            lora = c[0].checkbox("LoRA", value=False)
            seeds = c[1].text_input("Seeds", value="0")
            name = c[2].text_input("Checkpoint name", value=f"{variant}-{preset}")
            submitted = st.form_submit_button("Start brain-tuning")
        if submitted:
            try:
                seed_list = [int(s) for s in seeds.replace(",", " ").split()]
                out = paths.models_dir() / name
                if out.exists():
                    raise ValueError(f"{out} already exists: choose another name")
                job = jobs.start_training(dataset=ctx["dataset_path"], variant=variant, out=str(out),
                                          participants=parts, preset=preset, loss=loss, lora=lora, seeds=seed_list)
                st.session_state["last_job"] = job["id"]
                st.success(f"Started job {job['id']}")
            except Exception as exc:
                st.error(str(exc))

    live = any(j["state"] == "running" for j in jobs.list_jobs(kind="train"))

    @st.fragment(run_every=2.0 if live else None)
    def job_panel():
        rows = jobs.list_jobs(kind="train")
        if not rows:
            st.caption("No brain-tuning jobs yet.")
            return
        for j in rows[:8]:
            with st.container(border=True):
                c = st.columns([0.7, 0.3])
                c[0].markdown(f"**{j['label']}**  \n`{j['id']}` · {j['state']} · started {j.get('created')}")
                if j["state"] == "running":
                    if c[1].button("Cancel", key=f"cancel_{j['id']}"):
                        jobs.cancel(j["id"])
                        st.rerun()
                st.progress(min(max(j["fraction"], 0.0), 1.0), text=j["message"] or j["state"])
                if j["state"] == "done" and j.get("out"):
                    st.success(f"Checkpoint ready: `{j['out']}` (now listed under Checkpoints and in the sidebar)")
                elif j["state"] in ("failed", "lost"):
                    st.error(f"Job {j['state']} (exit {j.get('returncode')}); see the log")
                with st.expander("log", expanded=j["state"] in ("running", "failed")):
                    st.code(jobs.tail_log(j["id"], 30) or "(empty)", language="text")
        if live and not any(j["state"] == "running" for j in rows):
            st.rerun()  # a job just ended: redraw the page (new checkpoint in the cards and sidebar)

    st.subheader("Jobs")
    job_panel()
