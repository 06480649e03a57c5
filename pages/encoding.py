"""Encoding: layer-wise LM encoding models vs low-level baselines (``python -m brainviz encode``):
layer profile, baselines vs LM vs unique variance, ceiling-normalised scores, best-layer map."""

from brainviz.app_support import router

router.ensure()

import sys
from pathlib import Path

import streamlit as st

from brainviz import jobs, paths
from brainviz.app_support import sidebar, state
from brainviz.viz import encoding as encviz

ctx = sidebar.context()
summ = ctx["summary"]
sim = bool(summ and summ.get("simulated"))
state.page_title("Encoding models", simulated=sim,
                 caption="Every layer of a language model and low-level baselines (word rate, letters, surprisal, "
                         "content words, time-in-run trend), cross-validated without shuffling TRs, tested across "
                         "participants. Same numbers as `python -m brainviz encode`.")
state.require_dataset(summ)

results_dir = paths.cache_dir() / "encode" / Path(ctx["dataset_path"]).name
found = sorted(results_dir.glob("*.csv"), key=lambda p: p.stat().st_mtime, reverse=True) if results_dir.is_dir() else []

with st.expander("Run an encoding analysis in the background", expanded=not found):
    c = st.columns(4)
    model = c[0].text_input("Model", "pretrained", help="'pretrained' (packaged MiniLM), a checkpoint, a local "
                                                        "Hugging Face folder or a hub id")
    layers = c[1].selectbox("Layers", ["best", "all"], help="best: each unit's layer by inner CV; all: also a row per layer")
    features = c[2].selectbox("Features", ["words", "window:mean", "window:cls", "window:last"])
    cv = c[3].text_input("Cross-validation", "auto", help="auto, runs or blocks:K")
    c2 = st.columns(3)
    trim_start = c2[0].number_input("Trim start (TRs)", 0, 200, 20)
    trim_end = c2[1].number_input("Trim end (TRs)", 0, 200, 15)
    name = c2[2].text_input("Result name", f"{model.replace('/', '_')}-{layers}-{features.replace(':', '_')}")
    if st.button("Start encode", key="enc_start"):
        out = results_dir / f"{name}.csv"
        results_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "brainviz", "encode", "--dataset", ctx["dataset_path"], "--model", model,
                "--layers", layers, "--features", features, "--cv", cv, "--trim-start", str(trim_start),
                "--trim-end", str(trim_end), "--out", str(out)]
        if ctx["participants"]:
            argv += ["--participants", *ctx["participants"]]
        st.session_state["enc_job"] = jobs.start(argv, kind="encode", label=f"encode {name}", out=out)["id"]
    job_id = st.session_state.get("enc_job")
    if job_id:
        stat = jobs.status(job_id)
        st.caption(f"job {job_id}: {stat.get('state', '?')}")
        st.code(jobs.tail_log(job_id, 8) or "(no output yet)")
        if st.button("Refresh", key="enc_refresh"):
            st.rerun()

if not found:
    st.info(f"No encoding result for this dataset yet (looked in `{results_dir}`). Start one above, or run "
            f"`python -m brainviz encode --dataset {ctx['dataset_path']} --out {results_dir}/NAME.csv`.")
    state.stop()

choice = st.selectbox("Result", [p.name for p in found], key="enc_result")
try:
    frame, summary = encviz.read_encode_outputs(results_dir / choice)
except (OSError, ValueError) as exc:
    st.error(f"Cannot read {choice}: {exc}")
    state.stop()
if summary.get("simulated"):
    state.simulated_badge(True)
st.markdown(f"**{summary.get('dataset_name')}** · model `{summary.get('model')}` · {summary.get('n_participants')} "
            f"participants · {summary.get('cv')} · space `{summary.get('space')}`")
for note in summary.get("notes", []):
    st.caption(note)

table = encviz.group_table(summary)
many = len(table) > 12
units = None
if many:
    units = st.multiselect("Units shown in the profiles (default: the 12 with the highest mean r)",
                           table["unit"].tolist(), key="enc_units") or None

tab_profile, tab_models, tab_maps, tab_table = st.tabs(["Layer profile", "Baselines vs LM", "Maps", "Table"])
with tab_profile:
    norm = st.toggle("Divide by the noise ceiling", key="enc_prof_norm")
    st.plotly_chart(encviz.layer_profile(summary, units, normalised=norm), use_container_width=True)
with tab_models:
    norm2 = st.toggle("Ceiling-normalised", key="enc_models_norm")
    st.plotly_chart(encviz.model_scores(summary, units, normalised=norm2), use_container_width=True)
    st.plotly_chart(encviz.unique_variance(summary, units), use_container_width=True)
with tab_maps:
    col = st.selectbox("Value", list(encviz.MAP_VALUES), format_func=encviz.MAP_VALUES.get, key="enc_map_value")
    if summary.get("space") == "fsaverage5":
        cc = st.columns(3)
        hemi = cc[0].radio("Hemisphere", ["both", "left", "right"], horizontal=True, key="enc_map_hemi")
        thr = cc[1].number_input("Hide |value| <", 0.0, 1.0, 0.0, 0.01, format="%.3f", key="enc_map_thr")
        vmax = cc[2].number_input("Colour max (0 = auto)", 0.0, 100.0, 0.0, 0.05, format="%.3f", key="enc_map_vmax")
        preview = encviz.encoding_montage(frame, summary, col, threshold=(thr or None) if col != "layer" else None,
                                          vmax=vmax or None, hemi=hemi, fmt="jpeg")
        state.inline_image(preview, caption="Inflated surface, lateral and medial views; grey = hidden or no "
                                                  "value (curvature: light gyri, dark sulci).")
        st.download_button("Montage (PNG, 2× resolution)",
                           lambda: encviz.encoding_montage(frame, summary, col, threshold=(thr or None) if col != "layer"
                                                           else None, vmax=vmax or None, hemi=hemi, scale=2.0),
                           file_name=Path(choice).stem + f"_{col}_montage.png", mime="image/png", key="enc_map_png")
        if st.toggle("Interactive 3-D view", key="enc_map_3d"):
            st.plotly_chart(encviz.encoding_map(frame, summary, col, hemi=hemi, threshold=thr or None),
                            use_container_width=True)
    else:
        st.plotly_chart(encviz.encoding_map(frame, summary, col), use_container_width=True)
with tab_table:
    st.dataframe(table, hide_index=True, use_container_width=True)
    st.download_button("Download the per-participant table (CSV)", frame.to_csv(index=False), file_name=choice,
                       mime="text/csv")
