"""Progress of a training job: a callback, a JSON-lines file and a tqdm bar.

Progress is counted in *cost units*: a heads-only batch (cached features) counts 1, a full
fine-tuning batch :data:`FULL_BATCH_COST` (forward + backward through the encoder is about
that much slower on a CPU, ``bench/train_throughput.py``), so the fraction and the ETA track
wall time rather than batches. Each JSON line is
``{"fraction", "message", "stage", "elapsed_s", "eta_s"}`` (``eta_s`` null until it can be
estimated).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

ProgressFn = Callable[[float, str], None]
FULL_BATCH_COST = 25


class Progress:
    """Fan out progress to a callback, a JSON-lines file and a tqdm bar."""

    def __init__(self, total: int, done: int, callback: ProgressFn | None, file: str | os.PathLike | None,
                 bar: bool | None, started: float | None = None):
        from tqdm.auto import tqdm

        self.total = max(1, total)
        self.done = done
        self.callback = callback
        self.file = Path(file) if file else None
        self.stage = ""
        self._last = 0.0
        self._t0 = started if started is not None else time.monotonic()
        self._rate_t0 = time.monotonic()
        self._rate_done0 = done
        self.bar = tqdm(total=self.total, initial=done, disable=(None if bar is None else not bar), unit="unit", dynamic_ncols=True)

    def set_stage(self, stage: str) -> None:
        self.stage = stage

    def step(self, n: int = 1, message: str = "", force: bool = False) -> None:
        self.done += n
        self.bar.update(n)
        if message:
            self.bar.set_description_str(message, refresh=False)
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            self.emit(message)

    def eta(self) -> float | None:
        """Seconds left, from the rate since this process started counting (None: too early)."""
        done = self.done - self._rate_done0
        dt = time.monotonic() - self._rate_t0
        if done <= 0 or dt < 2.0 or done < 0.01 * self.total:
            return None
        return max(0.0, (self.total - self.done) * dt / done)

    def emit(self, message: str, fraction: float | None = None) -> None:
        fraction = min(1.0, self.done / self.total) if fraction is None else fraction
        if self.callback is not None:
            self.callback(fraction, message)
        if self.file is not None:
            eta = 0.0 if fraction >= 1.0 else self.eta()
            rec = {"fraction": round(fraction, 6), "message": message, "stage": self.stage,
                   "elapsed_s": round(time.monotonic() - self._t0, 1), "eta_s": None if eta is None else round(eta, 1)}
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.file, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        self.bar.close()
