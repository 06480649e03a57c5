"""Speech: listen to the dataset's audio around a TR; data-efficiency curves and low-level
residual alignment of speech models (issue 15). The science is in
``brainviz.features.speech`` and ``brainviz.evaluation.speech``; this page only draws."""

from brainviz.app_support import router

router.ensure()

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from brainviz.app_support import resources, sidebar, state  # noqa: E402
from brainviz.evaluation.speech import data_ratio, group_statistics  # noqa: E402
from brainviz.viz import speech as vspeech  # noqa: E402

DEMO = "demo: tiny random wav2vec2 (offline; pipeline check only)"

ctx = sidebar.context()
summ = ctx["summary"]
simulated = bool(summ and summ.get("simulated"))
state.page_title("Speech", simulated=simulated)
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
    from brainviz.evaluation.speech import data_efficiency, residual_alignment
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
    st.plotly_chart(vspeech.data_efficiency_figure(curves, simulated=simulated), width="stretch")
    if {"A", "B"} <= set(curves["model"]):
        st.dataframe(data_ratio(curves, "B", "A"), hide_index=True)
    parts = []
    for name, res in result["res"].items():
        labels = result["groups"][res["unit"].to_numpy()] if result["groups"] is not None else np.full(len(res), "all")
        parts.append(group_statistics(res, labels).assign(model=name))
    table = pd.concat(parts, ignore_index=True)
    st.plotly_chart(vspeech.alignment_bars(table, simulated=simulated), width="stretch")
    st.dataframe(table, hide_index=True)
    st.caption(f"Dataset `{Path(str(path)).name}`; participants {', '.join(chosen)}; held-out run {test_run}.")

# -- downstream check ----------------------------------------------------------------------
st.subheader("Downstream check: content vs function words")
st.caption("`brainviz.evaluation.probe.word_class_probe`: each word's audio from its onset goes through the model, "
           "every hidden state is mean-pooled, and a class-balanced logistic regression trained on one story tells "
           "content from function words in the other (balanced accuracy, chance 0.5). A layer must beat the "
           "baseline that sees only the word's spoken duration; p: test labels permuted against the fitted probe.")
probe_models = {f"Model A: {model_a}": model_a}
if model_b.strip():
    probe_models[f"Model B: {model_b.strip()}"] = model_b.strip()
for row in resources.checkpoints():
    if row.get("error") or row.get("variant") == "(partial)" or not row.get("path"):  # pretrained: no folder
        continue
    if ((resources.card(row["path"]) or {}).get("train_config") or {}).get("modality") == "audio":
        probe_models[f"checkpoint: {row['name']}"] = row["path"]
c = st.columns([0.5, 0.25, 0.25])
probe_label = c[0].selectbox("Model to probe", list(probe_models), key="sp_probe_model")
probe_window = float(c[1].number_input("Audio per word (s)", 0.2, 2.0, 0.6, step=0.1, key="sp_probe_window"))
probe_perm = int(c[2].number_input("Permutations", 0, 2000, 200, step=50, key="sp_probe_perm"))
probe_key = (probe_models[probe_label].strip(), str(path), round(probe_window, 3), probe_perm)
probe_cache = st.session_state.setdefault("sp_probe", {})  # (model, dataset, window, permutations) -> ProbeResult
if st.button("Run the probe", key="sp_probe_run"):
    from brainviz.errors import BrainvizError
    from brainviz.evaluation.probe import word_class_probe

    bar = st.progress(0.0, text="probe: loading the model…")
    try:
        probe_cache[probe_key] = word_class_probe(
            _resolve(probe_key[0]), ds, window=probe_window, n_permutations=probe_perm,
            progress=lambda f, m: bar.progress(min(1.0, float(f)), text=f"probe: {m}"))
        bar.progress(1.0, text="probe: done")
    except (BrainvizError, ValueError) as exc:
        bar.empty()
        st.error(str(exc))

probe = probe_cache.get(probe_key)
if probe is not None:
    t = probe.table
    sim = " (simulated data)" if probe.meta.get("simulated") else ""
    st.plotly_chart(vspeech.probe_bars(t, title=f"Word-class probe — {probe_label}{sim}",
                                       simulated=bool(probe.meta.get("simulated"))), width="stretch")
    st.dataframe(t.assign(layer=t["layer"].astype(str)), hide_index=True)
    st.caption(f"{probe.meta['n_words']} words ({probe.meta['content_share']:.0%} content), {probe.meta['window_s']:g} s "
               f"of audio per word, {probe.meta['n_permutations']} permutations; dataset `{Path(str(path)).name}`{sim}.")
