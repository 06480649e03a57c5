"""Home: what brainviz does, the state of datasets / checkpoints / jobs; builds the simulated
default dataset on first launch."""

from brainviz.app_support import router

router.ensure()

import pandas as pd
import streamlit as st

from brainviz import jobs, paths
from brainviz.app_support import job_panel, resources, sidebar, state

ctx = sidebar.context()
state.page_title("brainviz", simulated=bool(ctx["summary"] and ctx["summary"].get("simulated")),
                 caption="Brain-tuning and brain alignment of language models")

st.markdown(
    """
brainviz fine-tunes BERT-family encoders to predict fMRI recorded while people read or listen to
stories (**brain-tuning**, Schwartz, Toneva & Wehbe 2019) and compares models voxel by voxel.

* **Data** — participants, runs and TRs; which words feed which fMRI example; a vertex's time
  course; the planted ground truth of simulated data.
* **Models** — checkpoint cards; load any Hugging Face folder; start brain-tuning in the background.
* **Compare** — 20-vs-20 accuracy of models A and B on paired draws, paired test across seeds
  with FDR; cortical maps, flat map with lasso selection, Fig. 2 curves, ROI bars, exports.
* **Attention** — [CLS]→[CLS] / [CLS]→[SEP] attention per layer, base vs tuned (Fig. 4).
* **AN–BN** — artificial neurons (query⊙key dimensions) coupled with brain networks.

Choices in the sidebar (dataset, participants, models) are shared by every page and kept in
the URL, so a view can be shared by copying the address.
"""
)

datasets = resources.discover_datasets()
if not datasets:
    st.subheader("First launch: building the simulated default dataset")
    st.caption(f"into `{paths.default_dataset_dir()}` — once; later launches reuse it.")
    with st.status("Building the simulated default dataset…", expanded=True) as status:
        bar = st.progress(0.0, text="starting")

        def report(fraction, message):
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=str(message))

        from brainviz.data.simulate import ensure_default_dataset

        ensure_default_dataset(progress=report)
        bar.progress(1.0, text="preparing cortical meshes")
        resources.meshes_ready()
        status.update(label="Simulated default dataset ready", state="complete")
    st.rerun()

st.subheader("Datasets")
rows = []
for key, path in datasets.items():
    try:
        s = resources.summary(path)
    except Exception as exc:  # a broken folder must not hide the others
        rows.append({"dataset": key, "status": f"error: {exc}"})
        continue
    rows.append({
        "dataset": key, "status": "SIMULATED" if s["simulated"] else "real", "modality": s["modality"],
        "fMRI participants": s["n_fmri_participants"], "MEG participants": s["n_meg_participants"],
        "runs": s["n_runs"], "TR (s)": s["tr"], "space": s["space"], "units": s["n_units"], "words": s["n_words"],
    })
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

st.subheader("Checkpoints")
ckpts = resources.checkpoints()
st.dataframe(pd.DataFrame([{
    "name": r["name"], "variant": r["variant"], "dataset": r.get("dataset"),
    "participants": ", ".join(r.get("participants") or []),
    "simulated": "SIMULATED" if r.get("simulated") else ("" if r.get("simulated") is None else "real"),
    "created": r.get("created"), "problem": r.get("error", ""),
} for r in ckpts]), hide_index=True, width="stretch")
if len(ckpts) <= 1:
    st.info("No brain-tuned checkpoint yet: start one on the **Models** page "
            "(or on **Compare**, which offers a quick vanilla + fine-tuned pair).")

running = [j for j in jobs.list_jobs() if j["state"] == "running"]
if running:
    st.subheader("Running jobs")
    for j in running[:4]:
        job_panel.inline_job_status(j["id"])
