"""The function one sweep job runs (in a Ray worker or in this process).

Kept in its own small module so that Ray workers import it (and brainviz) by name.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable


def run_job(
    config: dict[str, Any],
    progress_file: str | None = None,
    num_threads: int = 1,
    progress: Callable[[float, str], None] | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run one :class:`~brainviz.tuning.TrainConfig` (as a dict) with ``num_threads`` torch threads.

    Returns ``{"out", "seconds", "resumed", "host", "pid", "device"}``. The training engine
    resumes from ``<out>.partial`` when it exists (an interrupted run of the same job).
    """
    import torch

    from brainviz.tuning.config import TrainConfig
    from brainviz.tuning.train import resolve_out, train

    cfg = TrainConfig.from_dict(config)
    out = resolve_out(cfg.out)
    resumed = out.with_name(out.name + ".partial").is_dir()
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(num_threads)))
    t0 = time.perf_counter()
    try:
        path = train(cfg, progress=progress, progress_file=progress_file, bar=False)
    finally:
        torch.set_num_threads(old_threads)
    device = cfg.device
    if device == "auto":
        from brainviz.backend import default_device

        device = default_device()
    return {"out": str(Path(path)), "seconds": time.perf_counter() - t0, "resumed": resumed,
            "host": socket.gethostname(), "pid": os.getpid(), "device": device}
