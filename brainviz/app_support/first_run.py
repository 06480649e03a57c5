"""First run of the Compare page: no checkpoints yet, so offer the default pair.

:func:`offer_default_pair` (called by ``pages/compare.py`` when no model has held-out
predictions) explains what will be trained, starts ``python -m brainviz.tuning.pair`` (the
``quick`` vanilla + fine-tuned pair on all fMRI participants, :mod:`brainviz.tuning.pair`) as
a background job, shows its progress inline (stage, elapsed time, ETA, a link to the job on
the Models page) and, when both checkpoints exist, sets model A to the fine-tuned and model B
to the vanilla checkpoint (never A = B) and reruns the page.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import streamlit as st

from brainviz import jobs, paths
from brainviz.tuning.pair import PAIR_NAMES, pair_paths

JOB_KIND = "train"  # listed with the other brain-tuning jobs on the Models page
LABEL = "default pair (quick vanilla + fine-tuned, all participants)"


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def pair_job(dataset_path: str) -> dict[str, Any] | None:
    """The newest default-pair job for this dataset (any state), or None."""
    for j in jobs.list_jobs(kind=JOB_KIND):
        meta = j.get("meta") or {}
        if meta.get("pair") and meta.get("dataset") == str(dataset_path):
            return j
    return None


def start_pair(dataset_path: str) -> dict[str, Any]:
    """Start the default pair as a background job; returns its status."""
    argv = [sys.executable, "-m", "brainviz.tuning.pair", "--dataset", str(dataset_path),
            "--models-dir", str(paths.models_dir()), "--progress-file", jobs.PROGRESS_PLACEHOLDER]
    return jobs.start(argv, kind=JOB_KIND, label=LABEL, out=str(pair_paths(paths.models_dir())["fine-tuned"]),
                      meta={"pair": True, "dataset": str(dataset_path)})


def select_pair() -> None:
    """Model A = fine-tuned, model B = vanilla (kept across pages and in the URL)."""
    for key, variant in (("model_a", "fine-tuned"), ("model_b", "vanilla")):
        st.session_state[key] = PAIR_NAMES[variant]
        st.session_state[f"_keep:{key}"] = PAIR_NAMES[variant]
    st.session_state.pop("_ctx", None)


def _pair_ready() -> bool:
    return all((p / "card.json").is_file() for p in pair_paths(paths.models_dir()).values())


def offer_default_pair(ctx: dict[str, Any]) -> None:
    """Draw the first-run panel of the Compare page (see the module docstring)."""
    summ = ctx.get("summary") or {}
    dataset_path = ctx.get("dataset_path")
    pids = list(summ.get("participants") or [])
    sim = " (simulated)" if summ.get("simulated") else ""
    if _pair_ready():
        select_pair()
        st.rerun()
    st.warning("No checkpoint with held-out predictions yet.")
    st.markdown(
        f"Brain-tune the **default pair** on all {len(pids)} fMRI participants of this dataset{sim}: "
        f"`{PAIR_NAMES['vanilla']}` (heads only, encoder frozen) and `{PAIR_NAMES['fine-tuned']}` (same heads "
        "and schedule, plus full fine-tuning of the encoder). Participants share one head and each window is "
        "encoded once; about 10–20 minutes on an idle 2-core CPU (longer on a busy one). When both are done, "
        "**A** = fine-tuned and **B** = vanilla.")
    job = pair_job(dataset_path) if dataset_path else None
    if job is None or job["state"] in ("failed", "cancelled", "lost"):
        if job is not None:
            st.error(f"The last default-pair job {job['state']} (exit {job.get('returncode')}).")
            with st.expander("log"):
                st.code(jobs.tail_log(job["id"], 30) or "(empty)", language="text")
        if st.button("Brain-tune the default pair", type="primary", key="first_run_pair", disabled=not dataset_path):
            start_pair(dataset_path)
            st.rerun()
        return

    @st.fragment(run_every=2.0)
    def progress_panel() -> None:
        j = jobs.status(job["id"])
        prog = jobs.last_progress(Path(j["dir"]))
        frac = min(max(float(j.get("fraction") or 0.0), 0.0), 1.0)
        stage = prog.get("stage") or "starting"
        st.progress(frac, text=f"{stage} — {prog.get('message', '') or j['state']}")
        c = st.columns(3)
        c[0].metric("elapsed", _fmt_s(prog.get("elapsed_s", 0.0)))
        c[1].metric("ETA", _fmt_s(prog.get("eta_s")) if j["state"] == "running" else "—")
        c[2].metric("done", f"{frac:.0%}")
        st.page_link("pages/models.py", label=f"Job `{j['id']}` on the Models page (log, cancel)",
                     icon=":material/model_training:")
        if j["state"] != "running":
            if j["state"] == "done" and _pair_ready():
                select_pair()
            st.rerun(scope="app")

    progress_panel()
