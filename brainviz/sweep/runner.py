"""Running a sweep: every job of :func:`plan_sweep` as a Ray task (or in this process).

Resumable: a job whose checkpoint exists is skipped (after checking that it was trained
with the same configuration); an interrupted job continues from its ``.partial`` folder
(the training engine's resume). Running the same sweep again after a crash, a ``kill -9``
or a lost node therefore finishes it. Progress: one tqdm bar for the whole sweep and one
per running job (read from the jobs' progress files), a callback and a JSON-lines file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from brainviz._io import write_json
from brainviz.errors import BrainvizError, BusyError
from brainviz.sweep.config import SweepConfig
from brainviz.sweep.plan import SweepJob, plan_sweep

ProgressFn = Callable[[float, str], None]
MANIFEST = "sweep.json"
STATUS = "sweep-status.json"
WORK_DIR = ".sweep"   # <out>/.sweep/progress/<job>.jsonl and the lock
LOCK = "lock"


class SweepError(BrainvizError, ValueError):
    """A sweep cannot run as configured (message names the folder or job)."""


@dataclasses.dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes
    ----------
    out : Path
        The sweep folder.
    jobs : list of dict
        One row per job: ``name, variant, participants, folds, seeds, out, state`` (``done``,
        ``skipped`` = finished before, ``failed``), ``resumed``, ``seconds``, ``error``.
    wall_seconds : float
    backend : str
    """

    out: Path
    jobs: list[dict[str, Any]]
    wall_seconds: float
    backend: str

    @property
    def ok(self) -> bool:
        return all(j["state"] in ("done", "skipped") for j in self.jobs)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [j for j in self.jobs if j["state"] == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j["state"]] = out.get(j["state"], 0) + 1
        out["resumed"] = sum(bool(j.get("resumed")) for j in self.jobs)
        return out

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.jobs)


# --------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------


def _last_fraction(path: Path) -> tuple[float, str]:
    """Last ``{fraction, message}`` of a JSON-lines progress file ((0, "") when none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return 0.0, ""
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            return float(rec.get("fraction", 0.0) or 0.0), str(rec.get("message", ""))
    return 0.0, ""


class _Monitor:
    """Overall + per-job progress (tqdm bars, a callback and a JSON-lines file)."""

    def __init__(self, jobs: list[SweepJob], n_skipped: int, work: Path, callback: ProgressFn | None,
                 file: str | os.PathLike | None, bar: bool | None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.n_total = len(jobs) + n_skipped
        self.done = n_skipped
        self.running: dict[str, float] = {}
        self.work = work
        self.callback = callback
        self.file = Path(file) if file else None
        self.disable = None if bar is None else not bar
        self.overall = tqdm(total=self.n_total, initial=n_skipped, unit="job", desc="sweep", disable=self.disable,
                            dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.2f}/{total} jobs [{elapsed}<{remaining}]")
        self.bars: dict[str, Any] = {}
        self._last_emit = 0.0

    def progress_file(self, name: str) -> Path:
        return self.work / "progress" / f"{name}.jsonl"

    def start(self, name: str) -> None:
        self.running.setdefault(name, 0.0)

    def update(self, name: str, fraction: float, message: str = "") -> None:
        if name not in self.running:
            return
        self.running[name] = fraction
        bar = self.bars.get(name)
        if bar is None:
            bar = self._tqdm(total=1000, desc=name, leave=False, disable=self.disable, dynamic_ncols=True,
                             position=len(self.bars) + 1, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            self.bars[name] = bar
        bar.n = int(round(1000 * fraction))
        bar.set_postfix_str(message[-60:], refresh=False)
        bar.refresh()
        self._refresh(f"{name}: {message}")

    def poll(self) -> None:
        """Read the progress files of the jobs that run elsewhere (Ray workers)."""
        for name in list(self.running):
            fraction, message = _last_fraction(self.progress_file(name))
            if fraction or message:
                self.update(name, fraction, message)

    def finish(self, name: str, state: str) -> None:
        self.running.pop(name, None)
        bar = self.bars.pop(name, None)
        if bar is not None:
            bar.close()
        self.done += 1
        self._refresh(f"{name}: {state}", force=True)

    def _refresh(self, message: str, force: bool = False) -> None:
        value = self.done + sum(self.running.values())
        self.overall.n = round(value, 2)
        self.overall.refresh()
        now = time.monotonic()
        if not force and now - self._last_emit < 0.5:
            return
        self._last_emit = now
        fraction = value / max(1, self.n_total)
        text = f"{self.done}/{self.n_total} jobs finished; {message}"
        if self.callback is not None:
            self.callback(fraction, text)
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.file, "a") as fh:
                fh.write(json.dumps({"fraction": round(fraction, 6), "message": text}) + "\n")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


# --------------------------------------------------------------------------------------
# checks and bookkeeping
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(work: Path) -> Iterator[None]:
    """One sweep driver per folder on this machine (an advisory ``flock``)."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    with open(work / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError("another sweep is running on this folder (its driver holds the lock)",
                            file=work.parent) from None
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def finished_key(job: SweepJob) -> str | None:
    """Job key of the configuration a finished checkpoint was trained with (None: unreadable)."""
    from brainviz.tuning.config import TrainConfig

    try:
        card = json.loads((job.out / "card.json").read_text())
        values = {f.name: card["train_config"][f.name] for f in dataclasses.fields(TrainConfig) if f.name in card["train_config"]}
        return TrainConfig.from_dict(values).job_key()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_finished(jobs: list[SweepJob]) -> None:
    """Raise :class:`SweepError` when a finished checkpoint of the sweep came from another config."""
    for job in jobs:
        if job.state() == "done" and finished_key(job) != job.config.job_key():
            raise SweepError(f"{job.out}: a checkpoint trained with a different configuration is in the way "
                             "(remove it or choose another sweep folder)")


def _row(job: SweepJob, state: str, **extra: Any) -> dict[str, Any]:
    return {"name": job.name, "variant": job.variant, "participants": list(job.participants), "folds": list(job.folds),
            "seeds": list(job.seeds), "out": str(job.out), "state": state, "resumed": False, "seconds": None,
            "error": None, **extra}


def write_manifest(config: SweepConfig, jobs: list[SweepJob]) -> Path:
    """``<out>/sweep.json``: the sweep's config and every job (name, grid cell, TrainConfig)."""
    path = Path(config.out) / MANIFEST
    write_json(path, {"format": 1, "kind": "brainviz-sweep", "config": config.to_dict(),
                      "jobs": [j.to_dict() for j in jobs]})
    return path


# --------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------


def _run_local(config: SweepConfig, todo: list[SweepJob], monitor: _Monitor, rows: dict[str, dict]) -> None:
    from brainviz.sweep._worker import run_job

    for job in todo:
        monitor.start(job.name)
        try:
            res = run_job(job.config.to_dict(), str(monitor.progress_file(job.name)), int(max(1, config.num_cpus)),
                          progress=lambda f, m, name=job.name: monitor.update(name, f, m), quiet=False)
        except Exception as exc:  # noqa: BLE001 - a failed job is reported, the others still run
            rows[job.name].update(state="failed", error=f"{type(exc).__name__}: {exc}")
            monitor.finish(job.name, "failed")
            continue
        rows[job.name].update(state="done", seconds=res["seconds"], resumed=res["resumed"], host=res["host"],
                              device=res["device"])
        monitor.finish(job.name, "done")


def _run_ray(config: SweepConfig, todo: list[SweepJob], monitor: _Monitor, rows: dict[str, dict]) -> None:
    from brainviz.sweep import _ray
    from brainviz.sweep._worker import run_job

    ray = _ray.import_ray()
    started = _ray.connect(config.address, config.ray_cpus)
    try:
        task = ray.remote(run_job)
        refs = {}
        for job in todo:
            opts = _ray.remote_options(config.num_cpus, config.num_gpus, config.memory_gb, config.max_retries, job.name)
            ref = task.options(**opts).remote(job.config.to_dict(), str(monitor.progress_file(job.name)),
                                              int(max(1, config.num_cpus)))
            refs[ref] = job
            monitor.start(job.name)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    job = refs[ref]
                    try:
                        res = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                        rows[job.name].update(state="failed", error=f"{type(exc).__name__}: {_short(exc)}")
                        monitor.finish(job.name, "failed")
                        continue
                    rows[job.name].update(state="done", seconds=res["seconds"], resumed=res["resumed"],
                                          host=res["host"], device=res["device"])
                    monitor.finish(job.name, "done")
                monitor.poll()
        except BaseException:
            for ref in pending:  # interrupted: stop the running jobs (their .partial stays for a rerun)
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def _short(exc: BaseException, limit: int = 2000) -> str:
    text = str(exc).strip()
    return text if len(text) <= limit else "..." + text[-limit:]


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def run_sweep(
    config: SweepConfig,
    progress: ProgressFn | None = None,
    progress_file: str | os.PathLike | None = None,
    bar: bool | None = None,
) -> SweepResult:
    """Run (or finish) every job of a sweep; return what happened to each.

    Parameters
    ----------
    config : SweepConfig
    progress : callable ``(fraction, message)``, optional
        Overall progress of the sweep (at most twice a second, and when a job ends).
    progress_file : path, optional
        Also append ``{"fraction", "message"}`` JSON lines to this file.
    bar : bool or None
        tqdm bars (None: only on a terminal).

    Jobs that fail are reported in the result (``state == "failed"`` with the error); the
    others still run. Run the same sweep again to retry them: finished jobs are skipped and
    interrupted ones resume from their ``.partial`` folders.
    """
    out = Path(config.out)
    jobs = plan_sweep(config)
    check_finished(jobs)
    work = out / WORK_DIR
    t0 = time.perf_counter()
    with _locked(work):
        write_manifest(config, jobs)
        rows = {}
        todo = []
        for job in jobs:
            state = job.state()
            rows[job.name] = _row(job, "skipped" if state == "done" else "pending", resumed=False)
            if state != "done":
                rows[job.name]["resumed"] = state == "partial"
                todo.append(job)
        monitor = _Monitor(todo, len(jobs) - len(todo), work, progress, progress_file, bar)
        for job in todo:
            monitor.progress_file(job.name).unlink(missing_ok=True)
        try:
            if todo:
                (_run_ray if config.backend == "ray" else _run_local)(config, todo, monitor, rows)
        finally:
            monitor.close()
            result = SweepResult(out, [rows[j.name] for j in jobs], time.perf_counter() - t0, config.backend)
            write_json(out / STATUS, {"finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                      "backend": config.backend, "address": config.address,
                                      "wall_seconds": result.wall_seconds, "counts": result.counts(), "jobs": result.jobs})
    return result
