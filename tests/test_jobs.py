"""Background job runner (brainviz.jobs): start, status, progress, log, cancel, list."""

from __future__ import annotations

import sys
import time

import pytest

from brainviz import jobs

WORKER = (
    "import json, sys, time\n"
    "path = sys.argv[1]\n"
    "for i in range(1, 4):\n"
    "    with open(path, 'a') as fh:\n"
    "        fh.write(json.dumps({'fraction': i / 4, 'message': f'step {i}'}) + '\\n')\n"
    "    print('line', i, flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
    "sys.exit(int(sys.argv[3]))\n"
)


def _wait(job_id, states, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = jobs.status(job_id)
        if st["state"] in states:
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {jobs.status(job_id)['state']}")


def test_job_runs_to_completion_with_progress_and_log():
    job = jobs.start([sys.executable, "-c", WORKER, "{progress_file}", "0.05", "0"], kind="test", label="ok")
    assert job["state"] in ("running", "done")
    st = _wait(job["id"], {"done", "failed"})
    assert st["state"] == "done" and st["returncode"] == 0
    assert st["fraction"] == 1.0
    assert st["message"] == "step 3"
    log = jobs.tail_log(job["id"])
    assert "line 3" in log and "exit 0" in log
    assert [j["id"] for j in jobs.list_jobs()] == [job["id"]]
    assert jobs.list_jobs(kind="other") == []


def test_failed_job_reports_failure():
    job = jobs.start([sys.executable, "-c", WORKER, "{progress_file}", "0.01", "3"], kind="test")
    st = _wait(job["id"], {"done", "failed"})
    assert st["state"] == "failed" and st["returncode"] == 3


def test_cancel_stops_a_running_job():
    job = jobs.start([sys.executable, "-c", WORKER, "{progress_file}", "30", "0"], kind="test")
    _wait(job["id"], {"running"})
    deadline = time.monotonic() + 20
    while jobs.status(job["id"])["fraction"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    st = jobs.cancel(job["id"], grace=5)
    assert st["state"] == "cancelled"
    assert 0 < st["fraction"] < 1
    # cancelling twice is harmless
    assert jobs.cancel(job["id"])["state"] == "cancelled"


def test_status_survives_a_new_process_view(monkeypatch):
    """State is on disk: forgetting the in-memory child handles changes nothing."""
    job = jobs.start([sys.executable, "-c", WORKER, "{progress_file}", "0.01", "0"], kind="test")
    _wait(job["id"], {"done"})
    monkeypatch.setattr(jobs, "_children", {})
    assert jobs.status(job["id"])["state"] == "done"


def test_unknown_job_and_bad_ids():
    with pytest.raises(jobs.JobError):
        jobs.status("nope")
    with pytest.raises(jobs.JobError):
        jobs.status("../etc")
    with pytest.raises(jobs.JobError):
        jobs.start([])


def test_train_command_argv():
    argv = jobs.train_command(dataset="d", variant="vanilla", out="models/x", participants=["s1", "s2"],
                              preset="quick", loss="correlation", lora=True)
    assert argv[1:4] == ["-m", "brainviz", "train"]
    assert argv[argv.index("--variant") + 1] == "vanilla"
    assert argv[argv.index("--participants") + 1 : argv.index("--participants") + 3] == ["s1", "s2"]
    assert "--lora" in argv and jobs.PROGRESS_PLACEHOLDER in argv
    assert argv[argv.index("--loss") + 1] == "correlation"


def test_remove_finished_job():
    job = jobs.start([sys.executable, "-c", "print('hi')"], kind="test")
    _wait(job["id"], {"done"})
    jobs.remove(job["id"])
    assert jobs.list_jobs() == []
