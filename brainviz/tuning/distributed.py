"""Multi-GPU data parallelism, bf16 autocast and gradient accumulation through HF Accelerate.

A thin wrapper around :class:`accelerate.Accelerator` for the brain-tuning loop. The loop keeps
its own batching (one *global* batch of ``batch_size`` windows per optimizer step, as in the
2019 paper's schedule), so the learning-rate schedule, the epoch boundaries, the checkpoints and
the resume states do not depend on how many devices or micro-batches compute a step:

- each of the ``num_processes`` processes takes its share of a global batch
  (:meth:`Distributed.micro_batches`), split into ``grad_accum`` micro-batches;
- :meth:`Distributed.backward` scales each micro-batch's loss so that the summed gradient is
  the global batch's mean gradient exactly (Accelerate divides by the accumulation steps and
  DDP averages over processes; uneven or empty micro-batches are accounted for);
- the optimizer (prepared) steps only when the gradients of the whole global batch are in;
- bf16 autocast on CUDA (``mixed_precision="bf16"``; also on CPU, where it is slower and only
  useful for testing); ``"no"`` keeps float32.

CPU and one process stay the default. The training loop (``_loop.FitTrainer``) uses this
wrapper in full stages when the config has ``grad_accum > 1`` or ``mixed_precision != "no"``.
The training job runs under ``accelerate launch --multi_gpu --num_processes N -m brainviz train …``
(or ``torchrun``): every process builds the same corpus and model, full stages split each global
batch over the processes (DDP), and only the main process takes the ``.partial`` lock and writes
resume states, held-out predictions and the card (:func:`launched_processes`, :func:`barrier`;
tested with 2 CPU processes). See ``docs/scaling.md``.

Examples
--------
>>> dist = Distributed(mixed_precision="no", grad_accum=2, cpu=True)        # doctest: +SKIP
>>> model, optimizer = dist.prepare(model, optimizer)                       # doctest: +SKIP
>>> for rows, counted in dist.micro_batches(global_batch_rows):             # doctest: +SKIP
...     with dist.accumulate(model):
...         if len(rows):
...             with dist.autocast():
...                 loss = loss_fn(model(x[rows]), y[rows]).mean()
...             dist.backward(loss, rows=counted, total=len(global_batch_rows))
...         optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import numpy as np

from brainviz.errors import ConfigError

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """What the wrapper needs from a :class:`~brainviz.tuning.TrainConfig`.

    ``mixed_precision``: ``no`` (float32), ``bf16`` or ``fp16`` autocast; ``grad_accum``:
    micro-batches per process and optimizer step; ``device``: ``auto``, ``cpu`` or ``cuda``.
    """

    mixed_precision: str = "no"
    grad_accum: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"expected one of {MIXED_PRECISION}, got {self.mixed_precision!r}", field="mixed_precision")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise ConfigError(f"must be an integer >= 1, got {self.grad_accum!r}", field="grad_accum")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"expected auto, cpu or cuda, got {self.device!r}", field="device")

    @classmethod
    def from_config(cls, config: Any) -> "DistributedSettings":
        """Read ``mixed_precision``, ``grad_accum`` and ``device`` of a TrainConfig (defaults when absent)."""
        return cls(mixed_precision=getattr(config, "mixed_precision", "no") or "no",
                   grad_accum=1 if getattr(config, "grad_accum", None) is None else config.grad_accum,
                   device=getattr(config, "device", "auto"))


def _fresh_state() -> None:
    """Forget a previous single-process Accelerator's settings (Accelerate keeps them per process)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    if PartialState._shared_state and PartialState().num_processes > 1:
        return  # launched with several processes: the process group must stay
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class Distributed:
    """One fit's Accelerator: data parallel, autocast, gradient accumulation.

    Parameters
    ----------
    settings : DistributedSettings, optional
    mixed_precision, grad_accum : optional
        Override ``settings``.
    cpu : bool, optional
        Force the CPU (default: ``settings.device == "cpu"``, or no CUDA available).
    """

    def __init__(self, settings: DistributedSettings | None = None, *, mixed_precision: str | None = None,
                 grad_accum: int | None = None, cpu: bool | None = None):
        import torch
        from accelerate import Accelerator

        s = settings or DistributedSettings()
        s = dataclasses.replace(s, **{k: v for k, v in (("mixed_precision", mixed_precision), ("grad_accum", grad_accum))
                                      if v is not None})
        self.settings = s
        if cpu is None:
            cpu = s.device == "cpu" or not torch.cuda.is_available()
        if s.device == "cuda" and cpu:
            raise ConfigError("CUDA was asked for but torch sees no GPU", field="device")
        from accelerate.utils import DistributedDataParallelKwargs

        _fresh_state()
        # find_unused_parameters: a brain model leaves parts unused in a step (the encoder's
        # pooler, the MEG head on fMRI-only batches); DDP must not wait for their gradients.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=s.mixed_precision, gradient_accumulation_steps=s.grad_accum,
                                       step_scheduler_with_optimizer=False, kwargs_handlers=[ddp])

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> "Distributed":
        """The wrapper for a :class:`TrainConfig` (``mixed_precision``, ``grad_accum``, ``device``)."""
        return cls(DistributedSettings.from_config(config), **kwargs)

    # -- topology -----------------------------------------------------------------------
    @property
    def device(self):
        return self.accelerator.device

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def grad_accum(self) -> int:
        return self.settings.grad_accum

    @property
    def sync_gradients(self) -> bool:
        """True on the micro-batch that completes a global batch (the optimizer steps then)."""
        return self.accelerator.sync_gradients

    # -- wrapping -----------------------------------------------------------------------
    def prepare(self, model, optimizer, loader=None) -> tuple:
        """``accelerator.prepare`` (DDP wrapper, device placement, optimizer that skips
        steps while accumulating); returns ``(model, optimizer)`` or ``(model, optimizer, loader)``.
        Keep the learning-rate scheduler unprepared and step it when :attr:`sync_gradients`."""
        objs = (model, optimizer) if loader is None else (model, optimizer, loader)
        return tuple(self.accelerator.prepare(*objs))

    def unwrap(self, model, keep_autocast: bool = False):
        """The model without its DDP / compile wrapper (for ``.heads``, saving, ...).

        With mixed precision, ``prepare`` patches the model's ``forward`` with autocast; that
        patch is removed too unless ``keep_autocast`` (so later inference runs in float32)."""
        return self.accelerator.unwrap_model(model, keep_fp32_wrapper=keep_autocast)

    # -- one global batch ---------------------------------------------------------------
    def micro_batches(self, rows: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """This process's share of one global batch, as ``grad_accum`` micro-batches.

        Returns ``grad_accum`` pairs ``(rows, n_counted)`` (always that many, so Accelerate's
        step count stays aligned). Rows are dealt round-robin to the processes, then cut into
        contiguous pieces; when there are fewer rows than pieces the *first* pieces are empty,
        so the last micro-batch (the one that synchronises the gradients) has rows whenever
        the process has any. A process left without rows (a last batch shorter than the number
        of processes) gets one row of the batch with ``n_counted = 0``: it must still run its
        forward and :meth:`backward` (scaled to zero) so that the gradient all-reduce happens.
        """
        rows = np.asarray(rows)
        mine = rows[self.process_index :: self.num_processes]
        pieces = sorted(np.array_split(mine, self.grad_accum), key=len)  # empty pieces first
        out = [(p, len(p)) for p in pieces]
        if len(mine) == 0 and len(rows) > 0:
            out[-1] = (rows[:1], 0)
        return out

    def accumulate(self, model) -> contextlib.AbstractContextManager:
        """Context of one micro-batch (no gradient all-reduce until the last one)."""
        return self.accelerator.accumulate(model)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16/fp16 autocast when ``mixed_precision`` asks for it, else nothing."""
        return self.accelerator.autocast()

    def backward(self, loss, rows: int, total: int) -> None:
        """Backward of a micro-batch loss that is a *mean over its* ``rows`` examples, scaled so
        that the accumulated gradient is the mean over the ``total`` rows of the global batch
        (``rows`` = the ``n_counted`` of :meth:`micro_batches`; 0 for a stand-in row)."""
        if rows < 0 or total <= 0:
            raise ValueError(f"backward: rows must be >= 0 and total > 0 (rows={rows}, total={total})")
        scale = rows * self.grad_accum * self.num_processes / total  # 0 for a stand-in row
        self.accelerator.backward(loss * scale)

    def gather(self, tensor):
        """Concatenate a tensor over processes (for losses/metrics; identity on one process)."""
        return self.accelerator.gather(tensor)

    def wait(self) -> None:
        """Barrier: every process reaches this point before any goes on."""
        self.accelerator.wait_for_everyone()


def launched_processes() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` of a ``torchrun`` / ``accelerate launch`` process;
    ``(0, 0, 1)`` for a plain process."""
    import os

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return 0, 0, 1
    return (rank, local, world) if world > 1 else (0, 0, 1)


def init_processes(cpu: bool) -> None:
    """Join the process group of a multi-process launch (Accelerate's ``PartialState``:
    gloo on CPU, NCCL on GPUs); nothing for a plain process."""
    if launched_processes()[2] > 1:
        from accelerate import PartialState

        PartialState(cpu=cpu)


def barrier() -> None:
    """Wait until every launched process gets here (no-op for a plain process)."""
    import torch.distributed as tdist

    if launched_processes()[2] > 1 and tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def iterate_global_batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """The global batches of an epoch (the loop's own order; ``batch_size`` rows each, the last shorter)."""
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
