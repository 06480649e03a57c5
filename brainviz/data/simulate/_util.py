"""Random streams, progress reporting, rounding and the two-thread map shared by the simulator."""

from __future__ import annotations

import os
import sys
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from brainviz.data.simulate.config import ProgressFn

# --------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """Independent generator for (seed, keys...) -- stable across runs and presets."""
    entropy = [int(seed)] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, callback: ProgressFn | None, total: float):
        self.callback = callback
        self.total = max(float(total), 1e-9)
        self.done = 0.0
        self.bar = None
        if callback is None and sys.stderr is not None and hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=100, unit="%", desc="simulating", leave=False, file=sys.stderr,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}]")
            except ImportError:  # pragma: no cover
                self.bar = None

    def step(self, amount: float, message: str) -> None:
        self.done = min(self.total, self.done + amount)
        self.report(message)

    def report(self, message: str) -> None:
        frac = self.done / self.total
        if self.callback is not None:
            self.callback(frac, message)
        elif self.bar is not None:
            self.bar.n = round(100 * frac)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _r2_stats(r2: np.ndarray) -> dict[str, float]:
    r2 = np.asarray(r2, dtype=float)
    if r2.size == 0:
        return {}
    return {"median": _r(np.median(r2)), "p10": _r(np.percentile(r2, 10)), "p90": _r(np.percentile(r2, 90)),
            "max": _r(r2.max()), "mean": _r(r2.mean()), "share_below_0.1": _r((r2 < 0.1).mean())}


def _r(x: float) -> float:
    return float(round(float(x), 6))


def _n_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def _ordered_map(fn: Callable[[Any], Any], items: Sequence[Any]):
    """``map(fn, items)`` on up to 2 threads (numpy releases the GIL); results in input order.

    Each item draws from its own random stream, so the output does not depend on scheduling.
    """
    workers = _n_workers()
    if workers == 1 or len(items) < 2:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = []
        it = iter(items)
        for item in it:  # keep at most workers + 1 results in flight (memory)
            futures.append(pool.submit(fn, item))
            if len(futures) > workers:
                yield futures.pop(0).result()
        for fut in futures:
            yield fut.result()


