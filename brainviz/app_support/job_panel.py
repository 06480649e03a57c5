"""Inline progress of a background job, drawn wherever the job was started.

:func:`inline_job_status` shows the stage, the progress bar, the elapsed time and the ETA of
one job of :mod:`brainviz.jobs` and refreshes itself every two seconds while the job runs
(an ``st.fragment``, so the rest of the page is not redrawn). It links to the job on the
Models page, which opens its **Jobs** tab with that job expanded (``?tab=Jobs&job=<id>``).
When the job ends the whole app reruns once, so a new checkpoint appears in the sidebar and
on the page.

The timing shown is live: *elapsed* is the wall time since the job started (not the time of
its last progress line) and the ETA is the job's own estimate minus the time since it wrote it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from brainviz import jobs

MODELS_PAGE = "pages/models.py"
JOBS_TAB = "Jobs"
REFRESH_S = 2.0


def fmt_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``; ``"estimating…"`` for None."""
    if seconds is None:
        return "estimating…"
    s = int(round(max(0.0, float(seconds))))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def timing(job: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """``{fraction, stage, message, elapsed_s, eta_s}`` of a :func:`brainviz.jobs.status` record.

    ``elapsed_s`` runs from the job's start (to its end once finished); ``eta_s`` is the last
    estimate written by the job minus the seconds since it was written (None until the job
    gives one; 0 once finished).
    """
    now = time.time() if now is None else now
    d = Path(job["dir"])
    prog = jobs.last_progress(d)
    frac = min(max(float(job.get("fraction") or 0.0), 0.0), 1.0)
    start = job.get("created_ts")
    running = job.get("state") == "running"
    if running and start:
        elapsed: float | None = max(0.0, now - float(start))
    elif start and (d / jobs.EXIT_FILE).is_file():
        elapsed = max(0.0, (d / jobs.EXIT_FILE).stat().st_mtime - float(start))
    else:
        elapsed = prog.get("elapsed_s")
    eta = prog.get("eta_s")
    if not running:
        eta = 0.0 if job.get("state") == "done" else None
    elif eta is not None:
        try:
            written = (d / jobs.PROGRESS_FILE).stat().st_mtime
        except OSError:
            written = now
        eta = max(0.0, float(eta) - max(0.0, now - written))
    stage = prog.get("stage") or ("starting (loading the data and the encoder)" if running and frac == 0 else "")
    return {"fraction": frac, "stage": str(stage), "message": str(job.get("message") or ""),
            "elapsed_s": elapsed, "eta_s": eta}


def job_link(job_id: str, label: str | None = None) -> None:
    """A link to the job on the Models page (its Jobs tab, the job expanded)."""
    st.page_link(MODELS_PAGE, label=label or f"Job `{job_id}` on the Models page (log, cancel)",
                 icon=":material/model_training:", query_params={"tab": JOBS_TAB, "job": job_id})


def draw_job(job: dict[str, Any], *, link: bool = True) -> None:
    """One job's stage, progress bar, elapsed time and ETA (no refresh: see :func:`inline_job_status`)."""
    t = timing(job)
    state = job.get("state", "?")
    head = t["stage"] or state
    text = f"{head} — {t['message']}" if t["message"] and t["message"] != head else head
    st.progress(t["fraction"], text=text)
    c = st.columns(4)
    c[0].metric("state", state)
    c[1].metric("elapsed", fmt_seconds(t["elapsed_s"]) if t["elapsed_s"] is not None else "—")
    c[2].metric("ETA", fmt_seconds(t["eta_s"]) if state == "running" else "—")
    c[3].metric("done", f"{t['fraction']:.0%}")
    if state in ("failed", "lost"):
        st.error(f"Job {state} (exit {job.get('returncode')}); the log is on the Models page.")
    elif state == "cancelled":
        st.warning("Job cancelled.")
    if link:
        job_link(job["id"])


def inline_job_status(job_id: str, *, link: bool = True, title: str | None = None,
                      on_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Draw a self-refreshing progress panel for job ``job_id``; return its status (None if unknown).

    Parameters
    ----------
    job_id : str
        A :mod:`brainviz.jobs` id (``jobs.start(...)["id"]``).
    link : bool
        Add a link to the job on the Models page (Jobs tab, job expanded).
    title : str, optional
        Bold line above the bar (default: the job's label).
    on_end : callable, optional
        Called with the final status when the job ends while this panel watches it (before the
        app reruns), e.g. to select the new checkpoints in the sidebar.
    """
    try:
        first = jobs.status(job_id)
    except jobs.JobError as exc:
        st.warning(f"Job {job_id!r} not found ({exc}).")
        return None
    watching = first["state"] == "running"

    @st.fragment(run_every=REFRESH_S if watching else None)
    def _panel() -> None:
        j = jobs.status(job_id)
        with st.container(border=True, key=f"bv-job-{job_id}"):
            st.markdown(f"**{title or j.get('label') or job_id}**")
            draw_job(j, link=link)
        if watching and j["state"] != "running":
            if on_end is not None:
                on_end(j)
            st.rerun(scope="app")

    _panel()
    return first
