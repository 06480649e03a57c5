"""A sweep on a local Ray: killed in the middle, resumed, equal to the train jobs run one by one.

2 variants x 3 participants x 2 folds x 2 seeds = 24 jobs on a tiny random BERT (one Ray
start for the killed run, one for the resume; about a minute on 2 busy cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from brainviz.sweep import SweepConfig, plan_sweep, run_sweep, train_argv
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,comm="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1:2] == [str(sid)]]


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session the sweep was started in (driver, Ray, workers:
    Ray workers have their own process group, so killing the driver's group is not enough)."""
    for line in _session_processes(sid):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _predictions(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted((folder / "predictions").rglob("*.npz")):
        with np.load(f, allow_pickle=False) as npz:
            out[str(f.relative_to(folder))] = npz["predictions"]
    return out


def test_ray_sweep_killed_resumed_equals_sequential(tmp_path):
    bert = make_tiny_bert(tmp_path / "bert")
    data = make_tiny_dataset(tmp_path / "data", n_fmri=3, n_meg=0)
    train = {"base": str(bert), "preset": "quick", "preprocess": TINY_PREPROCESS}
    (tmp_path / "train.json").write_text(json.dumps(train))
    out = tmp_path / "sweep"
    cfg = SweepConfig(dataset=str(data), variants=("vanilla", "fine-tuned"), out=str(out),
                      participants=("P1", "P2", "P3"), folds=("run-1", "run-2"), seeds=(0, 1), train=train,
                      epochs={"vanilla": [3], "fine-tuned": [2, 2]}, backend="ray", ray_cpus=2, num_cpus=1)
    jobs = plan_sweep(cfg)
    assert len(jobs) == 24

    # 1. the CLI on a local Ray, SIGKILLed (driver, Ray and workers) once some jobs are done and
    #    one is mid-way (a .partial with a saved epoch state)
    argv = [sys.executable, "-m", "brainviz", "sweep", "--dataset", str(data), "--variants", "vanilla", "fine-tuned",
            "--participants", "P1", "P2", "P3", "--folds", "run-1", "run-2", "--seeds", "0", "1",
            "--epochs", "vanilla=3", "fine-tuned=2,2", "--train-config", str(tmp_path / "train.json"),
            "--ray-cpus", "2", "--num-cpus", "1", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 400
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            n_done = sum(j.state() == "done" for j in jobs)
            # a fine-tuned job (2 + 2 epochs) with a saved state has several epochs to go, so it is still
            # partial when the kill lands (a vanilla job's last saved epoch can finish in that instant)
            mid = [j for j in jobs if j.config.variant == "fine-tuned" and (j.partial / "state" / "state.json").is_file()]
            if n_done >= 4 and mid:
                _kill_session(proc.pid)
                killed = True
                break
            time.sleep(0.02)
    finally:
        if not killed:
            _kill_session(proc.pid)
        proc.wait(timeout=60)
    assert killed, f"the sweep ended (rc {proc.returncode}) before it could be killed: {proc.stdout.read()[-3000:]!r}"
    for _ in range(100):  # nothing of that local Ray is left
        if not _session_processes(proc.pid):
            break
        time.sleep(0.1)
    assert not _session_processes(proc.pid)
    states = [j.state() for j in jobs]
    n_done_before = states.count("done")
    assert 4 <= n_done_before < 24 and "partial" in states, states

    # 2. the same sweep again: finished jobs skipped, interrupted ones resumed, the rest run
    res = run_sweep(cfg, bar=False)
    counts = res.counts()
    assert res.ok, res.failed
    assert counts["skipped"] == n_done_before and counts["done"] == 24 - n_done_before
    assert counts["resumed"] == states.count("partial") >= 1
    assert all(j.state() == "done" for j in jobs)
    assert not list(out.glob("*.partial"))

    # 3. the same TrainConfigs run one by one in this process (the train commands, sequentially)
    ref = run_sweep(cfg.replace(out=str(tmp_path / "sequential"), backend="local"), bar=False)
    assert ref.ok and ref.counts()["done"] == 24
    for job in jobs:
        got, want = _predictions(job.out), _predictions(tmp_path / "sequential" / job.name)
        assert list(got) == list(want) and got, job.name
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{job.name} {key}")
    # ... and one of them literally as its `python -m brainviz train` command (1 torch thread, as a job)
    job = jobs[-1]
    argv = train_argv(job.config)
    out_index = argv.index("--out") + 1
    argv[out_index] = str(tmp_path / "cli" / job.name)
    proc = subprocess.run(argv + ["--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _predictions(tmp_path / "cli" / job.name), _predictions(job.out)
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"train CLI {key}")


def test_job_runner_submits_a_train_job_to_ray(tmp_path):
    """brainviz.jobs with backend="ray": the same train arguments run as a Ray task (local Ray)."""
    from brainviz import jobs
    from brainviz.models.store import load_checkpoint

    bert = make_tiny_bert(tmp_path / "bert")
    data = make_tiny_dataset(tmp_path / "data", n_fmri=1, n_meg=0, trs_per_run=60)  # default trims fit
    job = jobs.start_training(dataset=str(data), variant="vanilla", out=str(tmp_path / "m"), base=str(bert),
                              folds=("run-1",), extra=["--epochs", "2"], backend="ray")
    assert job["argv"][1:3] == ["-m", "brainviz.sweep.submit"]
    deadline = time.monotonic() + 300
    while jobs.status(job["id"])["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    st = jobs.status(job["id"])
    log = jobs.tail_log(job["id"], 30)
    assert st["state"] == "done" and st["fraction"] == 1.0, log
    assert "submitted to Ray (local)" in log
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.variant == "vanilla" and ckpt.folds == ["run-1"]
