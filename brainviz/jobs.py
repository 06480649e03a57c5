"""Background jobs (brain-tuning runs started from the app) that outlive a page or a session.

Each job is a folder ``<cache>/jobs/<id>/``::

    job.json        what was started: id, kind, label, argv, out, created, pid
    progress.jsonl  JSON lines {fraction, message} written by the command (--progress-file)
    log.txt         the command's stdout and stderr
    exit.json       written when the command ends: returncode, finished, cancelled

The command runs under a small wrapper process (``python -m brainviz.jobs _wrap <dir>``) in its
own process group: the wrapper waits for it and writes ``exit.json``, so the state is on disk
and any process (another app session, a restarted server, the CLI) can read it. ``cancel``
signals the whole group.

Examples
--------
>>> from brainviz import jobs
>>> job = jobs.start_training(dataset="data/reading", variant="vanilla", out="models/v")  # doctest: +SKIP
>>> jobs.status(job["id"])["state"]                                                        # doctest: +SKIP
'running'
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from brainviz import paths
from brainviz._io import write_json
from brainviz.errors import BrainvizError

JOB_FILE = "job.json"
EXIT_FILE = "exit.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "log.txt"
STATES = ("running", "done", "failed", "cancelled", "lost")
PROGRESS_PLACEHOLDER = "{progress_file}"

_children: dict[int, subprocess.Popen] = {}


class JobError(BrainvizError, ValueError):
    """Unknown job id or unusable job folder."""


def jobs_dir() -> Path:
    """``<cache>/jobs`` (follows ``$BRAINVIZ_CACHE``)."""
    return paths.cache_dir() / "jobs"


def job_dir(job_id: str) -> Path:
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise JobError(f"invalid job id {job_id!r}")
    d = jobs_dir() / job_id
    if not (d / JOB_FILE).is_file():
        raise JobError(f"no job {job_id!r} in {jobs_dir()}")
    return d


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def start(
    argv: Sequence[str],
    *,
    kind: str = "command",
    label: str = "",
    out: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start ``argv`` in the background and return the job's status.

    ``{progress_file}`` in ``argv`` is replaced by the job's ``progress.jsonl``.
    """
    if not argv:
        raise JobError("empty command")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    job_id = f"{stamp}-{secrets.token_hex(3)}"
    d = jobs_dir() / job_id
    d.mkdir(parents=True, exist_ok=False)
    progress = d / PROGRESS_FILE
    argv = [str(a).replace(PROGRESS_PLACEHOLDER, str(progress)) for a in argv]
    record = {
        "id": job_id, "kind": kind, "label": label or " ".join(argv[:6]), "argv": argv,
        "out": str(out) if out is not None else None, "created": _now(), "created_ts": time.time(),
        "cwd": str(cwd or Path.cwd()), "pid": None, "meta": meta or {},
    }
    write_json(d / JOB_FILE, record)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with open(d / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "brainviz.jobs", "_wrap", str(d)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=record["cwd"], env=full_env, start_new_session=True,
        )
    _children[proc.pid] = proc
    record["pid"] = proc.pid
    write_json(d / JOB_FILE, record)
    return status(job_id)


def train_command(
    *,
    dataset: str | os.PathLike,
    variant: str,
    out: str | os.PathLike,
    participants: Sequence[str] = (),
    preset: str = "quick",
    loss: str = "mse",
    lora: bool = False,
    seeds: Sequence[int] = (0,),
    folds: Sequence[str] = (),
    base: str = "pretrained",
    extra: Sequence[str] = (),
    backend: str = "local",
    ray_address: str | None = None,
    ray_num_gpus: float = 0.0,
) -> list[str]:
    """argv of ``python -m brainviz train ... --progress-file {progress_file}``.

    ``backend="ray"``: the same train arguments run as a Ray task through
    ``python -m brainviz.sweep.submit`` (a local Ray, or the cluster at ``ray_address``, with
    ``ray_num_gpus`` GPUs); the default ``"local"`` runs ``train`` as a subprocess here.
    """
    if backend not in ("local", "ray"):
        raise JobError(f"backend: expected local or ray, got {backend!r}")
    if backend == "ray":
        head = [sys.executable, "-m", "brainviz.sweep.submit", "--num-gpus", str(ray_num_gpus)]
        head += (["--address", str(ray_address)] if ray_address else []) + ["--"]
        return head + train_command(dataset=dataset, variant=variant, out=out, participants=participants,
                                    preset=preset, loss=loss, lora=lora, seeds=seeds, folds=folds, base=base,
                                    extra=extra)[4:]
    argv = [sys.executable, "-m", "brainviz", "train", "--dataset", str(dataset), "--variant", variant,
            "--out", str(out), "--preset", preset, "--loss", loss, "--base", str(base), "--quiet",
            "--progress-file", PROGRESS_PLACEHOLDER]
    if participants:
        argv += ["--participants", *map(str, participants)]
    if folds:
        argv += ["--folds", *map(str, folds)]
    if seeds:
        argv += ["--seeds", *map(str, seeds)]
    if lora:
        argv.append("--lora")
    return argv + list(extra)


def start_training(*, label: str = "", env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Start ``python -m brainviz train`` (arguments of :func:`train_command`) as a job."""
    argv = train_command(**kwargs)
    meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items() if k != "extra"}
    meta = json.loads(json.dumps(meta, default=str))
    return start(argv, kind="train", label=label or f"train {kwargs.get('variant')} -> {kwargs.get('out')}",
                 out=kwargs.get("out"), env=env, meta=meta)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def last_progress(d: Path) -> dict[str, Any]:
    """Last ``{fraction, message}`` line of the job's progress file (``{}`` when none)."""
    f = d / PROGRESS_FILE
    if not f.is_file():
        return {}
    try:
        with open(f, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            return rec
    return {}


def status(job_id: str) -> dict[str, Any]:
    """State of one job: the ``job.json`` record plus ``state``, ``fraction``, ``message``,
    ``returncode`` and ``finished``. ``state`` is one of :data:`STATES` (``lost``: the process
    is gone without an exit record, e.g. the machine restarted)."""
    d = job_dir(job_id)
    record = _read_json(d / JOB_FILE) or {"id": job_id}
    exit_rec = _read_json(d / EXIT_FILE)
    prog = last_progress(d)
    out = dict(record)
    out["dir"] = str(d)
    out["fraction"] = float(prog.get("fraction", 0.0) or 0.0)
    out["message"] = str(prog.get("message", ""))
    if exit_rec is not None:
        out["returncode"] = exit_rec.get("returncode")
        out["finished"] = exit_rec.get("finished")
        if exit_rec.get("cancelled"):
            out["state"] = "cancelled"
        else:
            out["state"] = "done" if exit_rec.get("returncode") == 0 else "failed"
        if out["state"] == "done":
            out["fraction"] = 1.0
    elif _alive(record.get("pid")):
        out["state"] = "running"
        out["returncode"] = None
        out["finished"] = None
    else:
        # the wrapper may be between its child's exit and writing exit.json
        time.sleep(0.05)
        exit_rec = _read_json(d / EXIT_FILE)
        if exit_rec is not None:
            return status(job_id)
        out["state"] = "lost"
        out["returncode"] = None
        out["finished"] = None
    return out


def list_jobs(kind: str | None = None) -> list[dict[str, Any]]:
    """Status of every job, newest first."""
    root = jobs_dir()
    if not root.is_dir():
        return []
    rows = []
    for d in root.iterdir():
        if (d / JOB_FILE).is_file():
            try:
                st = status(d.name)
            except JobError:
                continue
            if kind is None or st.get("kind") == kind:
                rows.append(st)
    rows.sort(key=lambda r: r.get("created_ts", 0), reverse=True)
    return rows


def cancel(job_id: str, grace: float = 5.0) -> dict[str, Any]:
    """Stop a running job (SIGTERM to its process group, SIGKILL after ``grace`` seconds)."""
    d = job_dir(job_id)
    record = _read_json(d / JOB_FILE) or {}
    pid = record.get("pid")
    if (d / EXIT_FILE).is_file() or not _alive(pid):
        return status(job_id)
    (d / "cancel-requested").write_text(_now())
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not (d / EXIT_FILE).is_file():
        if not _alive(pid):
            break
        time.sleep(0.05)
    if not (d / EXIT_FILE).is_file():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        write_json(d / EXIT_FILE, {"returncode": -9, "finished": _now(), "cancelled": True})
    _alive(pid)  # reap
    return status(job_id)


def tail_log(job_id: str, n_lines: int = 40, max_bytes: int = 65536) -> str:
    """The last ``n_lines`` lines of the job's log."""
    f = job_dir(job_id) / LOG_FILE
    if not f.is_file():
        return ""
    with open(f, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        text = fh.read().decode(errors="replace")
    # progress bars rewrite one line with carriage returns: keep the last state of each line
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(lines[-n_lines:])


def remove(job_id: str) -> None:
    """Delete a finished job's folder."""
    import shutil

    st = status(job_id)
    if st["state"] == "running":
        raise JobError(f"job {job_id} is still running; cancel it first")
    shutil.rmtree(job_dir(job_id), ignore_errors=True)


# --------------------------------------------------------------------------------------
# the wrapper process
# --------------------------------------------------------------------------------------


def _wrap(d: Path) -> int:
    record = json.loads((d / JOB_FILE).read_text())
    cancelled = {"flag": False}
    child: subprocess.Popen | None = None

    def on_term(signum, frame):  # noqa: ARG001
        cancelled["flag"] = True
        if child is not None and child.poll() is None:
            try:
                child.terminate()
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"[brainviz job {record['id']}] {_now()} $ {' '.join(record['argv'])}", flush=True)
    try:
        child = subprocess.Popen(record["argv"], cwd=record.get("cwd") or None)
        while True:
            try:
                rc = child.wait()
                break
            except InterruptedError:  # pragma: no cover
                continue
    except OSError as exc:
        print(f"cannot start the command: {exc}", flush=True)
        rc = 127
    cancelled_flag = cancelled["flag"] or (d / "cancel-requested").is_file()
    print(f"[brainviz job {record['id']}] {_now()} exit {rc}" + (" (cancelled)" if cancelled_flag else ""), flush=True)
    write_json(d / EXIT_FILE, {"returncode": rc, "finished": _now(), "cancelled": cancelled_flag})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "_wrap":
        return _wrap(Path(argv[1]))
    for st in list_jobs():
        print(f"{st['id']}  {st['state']:9s}  {st['fraction']:5.0%}  {st.get('label', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
