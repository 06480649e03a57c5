"""Sweeps: grids of brain-tuning jobs (variants x participants x folds x seeds) run on Ray.

Modules
-------
config   :class:`SweepConfig`
plan     :func:`plan_sweep` (the jobs: one :class:`~brainviz.tuning.TrainConfig` each), :func:`train_argv`
runner   :func:`run_sweep` (Ray tasks or in-process; resumable), :class:`SweepResult`
results  :func:`evaluate_sweep`, :func:`compare_sweep` (one table over a sweep's checkpoints)
submit   one ``train`` command as a Ray task (the app's job runner uses it)

Ray is imported only when the ray backend runs; everything else works without it.
See ``docs/scaling.md``.

Examples
--------
>>> from brainviz.sweep import SweepConfig, run_sweep                                      # doctest: +SKIP
>>> cfg = SweepConfig(dataset="data/reading", variants=("vanilla", "fine-tuned"),
...                   participants=("P01", "P02"), seeds=(0, 1), out="sweeps/s1",
...                   train={"preset": "quick"})                                           # doctest: +SKIP
>>> result = run_sweep(cfg)                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "SweepConfig": "config",
    "SweepJob": "plan",
    "plan_sweep": "plan",
    "train_argv": "plan",
    "SweepError": "runner",
    "SweepResult": "runner",
    "run_sweep": "runner",
    "evaluate_sweep": "results",
    "compare_sweep": "results",
    "merge_variant": "results",
    "sweep_checkpoints": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brainviz.sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"brainviz.sweep.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
