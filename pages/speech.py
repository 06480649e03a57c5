"""Speech: listen to the dataset's audio around a TR; data-efficiency curves and low-level
residual alignment of speech models (issue 15). The science is in
``brainviz.features.speech`` and ``brainviz.evaluation.speech``; this page only draws."""

from brainviz.app_support import router

router.ensure()

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from brainviz.app_support import resources, sidebar, state  # noqa: E402

DEMO = "demo: tiny random wav2vec2 (offline; pipeline check only)"

ctx = sidebar.context()
summ = ctx["summary"]
state.page_title("Speech", simulated=bool(summ and summ.get("simulated")))
state.require_dataset(summ)
path = ctx["dataset_path"]
ds = resources.dataset(path)
if not getattr(ds, "audio", None):
    st.info("This dataset has no audio. Simulate a listening dataset (`python -m brainviz simulate`) or import "
            "one with `python -m brainviz import generic ... --audio RUN=FILE` (see docs/speech.md).")
    state.stop()

# -- listen --------------------------------------------------------------------------------
st.subheader("Listen")
runs = sorted(ds.audio)
c = st.columns([0.3, 0.5, 0.2])
run = c[0].selectbox("Run", runs, key="sp_run")
track = ds.audio[run]
start = c[1].slider("Start (s, run clock)", 0.0, max(0.0, float(track.end) - 1.0), min(30.0, float(track.end) / 2),
                    step=0.5, key="sp_start")
length = c[2].number_input("Length (s)", 1.0, 30.0, 7.5, step=0.5, key="sp_len")
samples = track.window(start, start + length)
st.audio(samples, sample_rate=track.sample_rate)
stim = ds.stimulus
in_win = stim[(stim["run"].astype(str) == run) & (stim["onset"] >= start) & (stim["onset"] < start + length)]
st.caption(f"{track.source or 'audio'}{' — ' + track.note if track.note else ''}")
st.write(" ".join(in_win["word"].astype(str)) or "(no words in this window)")

# -- models --------------------------------------------------------------------------------
st.subheader("Speech models: data efficiency and residual alignment")
pids_all = summ["participants"]
chosen = [p for p in ctx["participants"] if p in pids_all] or pids_all[:4]
c = st.columns(3)
model_a = c[0].text_input("Model A (folder, hub id or speech checkpoint)", DEMO, key="sp_model_a")
model_b = c[1].text_input("Model B (optional)", "", key="sp_model_b")
test_run = c[2].selectbox("Held-out run", ds.runs, index=len(ds.runs) - 1, key="sp_test")
minutes = st.multiselect("Minutes of training data", [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0], [1.0, 2.0, 4.0],
                         key="sp_minutes")


def _resolve(name: str) -> str:
    if name != DEMO:
        return name
    from brainviz import paths
    from brainviz.models.speech import tiny_speech_model

    folder = paths.cache_dir() / "speech-demo" / "tiny-wav2vec2"
    if not (folder / "model.safetensors").is_file():
        tiny_speech_model(folder, "wav2vec2")
    return str(folder)


if st.button("Compute", key="sp_compute", type="primary"):
    from brainviz.errors import BrainvizError
    from brainviz.evaluation.speech import data_efficiency, data_ratio, residual_alignment
    from brainviz.features.speech import audio_corpus, lowlevel_audio_features, speech_layer_features

    units = None
    groups = None
    gt = resources.ground_truth(path) if summ.get("has_ground_truth") else None
    if gt is not None and "planted_mask" in gt:
        planted = np.asarray(gt["planted_mask"], bool)
        rng = np.random.default_rng(0)
        null = np.sort(rng.choice(np.flatnonzero(~planted), min(500, int((~planted).sum())), replace=False))
        units = np.r_[np.flatnonzero(planted), null]
        groups = np.array(["planted"] * int(planted.sum()) + ["null"] * len(null))
    try:
        with st.spinner("speech features…"):
            corpus = audio_corpus(ds, chosen, units=units)
            feats = {"low-level bands": lowlevel_audio_features(corpus, ds)}
            for label, name in (("A", model_a), ("B", model_b)):
                if name.strip():
                    feats[label] = speech_layer_features(_resolve(name.strip()), ds, chosen, corpus=corpus).layers[-1]
            curves = data_efficiency(feats, corpus, chosen, test_run, sorted(minutes) or [1.0], float(ds.tr or 1.0))
            res = {k: residual_alignment(v, feats["low-level bands"], corpus, chosen, test_run)
                   for k, v in feats.items() if k != "low-level bands"}
        st.session_state["sp_result"] = {"curves": curves, "res": res, "groups": groups}
    except (BrainvizError, ValueError) as exc:
        st.error(str(exc))

result = st.session_state.get("sp_result")
if result:
    curves = result["curves"]
    mean = curves.groupby(["model", "minutes"], as_index=False)["mean_r"].mean()
    fig = go.Figure()
    for name, g in mean.groupby("model"):
        fig.add_trace(go.Scatter(x=g["minutes"], y=g["mean_r"], mode="lines+markers", name=str(name)))
    fig.update_layout(xaxis_title="minutes of the participant's training data", yaxis_title="mean held-out r",
                      height=360, margin=dict(t=30))
    st.plotly_chart(fig, use_container_width=True)
    if {"A", "B"} <= set(mean["model"]):
        st.dataframe(data_ratio(curves, "B", "A"), hide_index=True)
    rows = []
    for name, res in result["res"].items():
        grp = result["groups"][res["unit"].to_numpy()] if result["groups"] is not None else np.full(len(res), "all")
        for g, sub in res.assign(group=grp).groupby("group"):
            rows.append({"model": name, "units": g, "raw": sub["r_raw"].mean(), "low-level removed": sub["r_residual"].mean(),
                         "low-level alone": sub["r_lowlevel"].mean()})
    table = pd.DataFrame(rows)
    bars = go.Figure()
    for col in ("raw", "low-level removed", "low-level alone"):
        bars.add_trace(go.Bar(x=table["model"] + " / " + table["units"], y=table[col], name=col))
    bars.update_layout(barmode="group", yaxis_title="mean held-out r", height=360, margin=dict(t=30))
    st.plotly_chart(bars, use_container_width=True)
    st.dataframe(table, hide_index=True)
    st.caption(f"Dataset `{Path(str(path)).name}`; participants {', '.join(chosen)}; held-out run {test_run}.")
