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
from typing import Any

import streamlit as st

from brainviz import jobs, paths
from brainviz.app_support.job_panel import inline_job_status
from brainviz.tuning.pair import PAIR_NAMES, pair_paths

JOB_KIND = "train"  # listed with the other brain-tuning jobs on the Models page
LABEL = "default pair (quick vanilla + fine-tuned, all participants)"


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
        f"`{PAIR_NAMES['vanilla']}` (heads only, encoder frozen) and `{PAIR_NAMES['fine-tuned']}` (the encoder "
        "fine-tuned on what participants share, then the same heads and schedule as vanilla). Participants share "
        "one head and each window is encoded once; about 8 minutes on an idle 2-core CPU for the simulated "
        "default's 18 participants (longer on a busy one). When both are done, **A** = fine-tuned and "
        "**B** = vanilla; the group test then runs per held-out run (the models pooled participants).")
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

    def _on_end(j: dict[str, Any]) -> None:
        if j["state"] == "done" and _pair_ready():
            select_pair()

    inline_job_status(job["id"], title=LABEL, on_end=_on_end)


def require_distinct_pair(ctx: dict[str, Any], title: str = "Compare models") -> bool:
    """Whether models A and B of the sidebar are two different checkpoints; if not, draw why
    (with the page title) and what to do, and return False.

    - no checkpoint: :func:`offer_default_pair`;
    - one checkpoint: say that a second one is needed and offer the default pair (or a
      vanilla on the Models page); a default-pair job that is running is shown inline (it may
      have produced one model of the two already);
    - A = B chosen by hand: ask for two different models.
    """
    from brainviz.app_support import state

    models = ctx.get("models") or {}
    a, b = ctx.get("model_a"), ctx.get("model_b")
    if len(models) >= 2 and a in models and b in models and a != b:
        return True
    summ = ctx.get("summary") or {}
    state.page_title(title, simulated=bool(summ.get("simulated")))
    if not models:
        offer_default_pair(ctx)
        return False
    if len(models) == 1:
        only = next(iter(models))
        st.warning(f"Only one checkpoint has held-out predictions (`{only}`): a comparison needs a second model. "
                   "Comparing a model with itself would show nothing.")
        dataset_path = ctx.get("dataset_path")
        job = pair_job(dataset_path) if dataset_path else None
        if job is not None and job["state"] == "running":
            st.info("The default pair is still training: Compare opens with A = fine-tuned and B = vanilla "
                    "when both are done.")

            def _on_end(j: dict[str, Any]) -> None:
                if j["state"] == "done" and _pair_ready():
                    select_pair()

            inline_job_status(job["id"], title=LABEL, on_end=_on_end)
            return False
        c = st.columns(2)
        if c[0].button("Brain-tune the default pair", type="primary", key="first_run_pair",
                       disabled=not dataset_path, help=LABEL):
            start_pair(dataset_path)
            st.rerun()
        c[1].page_link("pages/models.py", label="Train a vanilla (or any variant) on the Models page",
                       icon=":material/model_training:", query_params={"tab": "Brain-tune"})
        return False
    st.warning(f"Model A and model B are the same (`{a}`): choose two different checkpoints in the sidebar.")
    return False
