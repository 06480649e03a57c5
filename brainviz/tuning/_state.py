"""Resume state of a training job: what lets ``train`` continue after an interruption.

The job works in ``<out>.partial/``::

    progress.json                 job_key, finished fit ids, resolved config, transfer sources
    state/model.safetensors       heads (+ encoder once changed) and the torch RNG state
    state/optimizer.safetensors   AdamW moments (mid-stage only)
    state/state.json              fit, stage, epoch, scheduler, param groups

Written after every completed epoch through :func:`brainviz._io.atomic_dir`, so a kill at any
moment leaves either the previous or the new state. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from brainviz._io import atomic_dir, write_json

STATE_DIR = "state"
PROGRESS = "progress.json"


@dataclasses.dataclass(frozen=True)
class EpochSaved:
    """Passed to ``on_epoch_saved`` after a resume state was written.

    ``fit`` is the fit id, ``stage`` / ``epoch`` where training resumes from, ``n_saved``
    the number of states written by this process so far.
    """

    fit: str
    stage: int
    epoch: int
    n_saved: int
    folder: Path


EpochHook = Callable[[EpochSaved], None]


class ResumeState:
    """Reads and writes ``progress.json`` and the per-epoch ``state/`` of a ``.partial`` folder.

    Parameters
    ----------
    partial : Path
        The job's working folder (``<out>.partial``).
    job_key : str
        :meth:`TrainConfig.job_key` of the job; a state of another job is never used.
    on_epoch_saved : callable, optional
        Called with an :class:`EpochSaved` after each state is on disk (tests use it to
        kill the process at a known point; the app could use it to report checkpoints).
    """

    def __init__(self, partial: Path, job_key: str, on_epoch_saved: EpochHook | None = None, writer: bool = True):
        self.partial = Path(partial)
        self.job_key = job_key
        self.on_epoch_saved = on_epoch_saved
        self.n_saved = 0
        # several processes (accelerate launch / torchrun): only the main one writes; the
        # others hold the same model (DDP keeps it in sync) and only read a state to resume
        self.writer = writer

    @property
    def folder(self) -> Path:
        return self.partial / STATE_DIR

    # -- job progress -------------------------------------------------------------------
    def read_progress(self) -> dict[str, Any] | None:
        path = self.partial / PROGRESS
        return json.loads(path.read_text()) if path.is_file() else None

    def write_progress(self, progress: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.partial / PROGRESS, progress)

    def clear(self) -> None:
        """Drop the per-epoch state (a fit is finished)."""
        if self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- per-epoch state ----------------------------------------------------------------
    def save(self, fit, stage: int, epoch: int, model, optimizer, scheduler, dirty: bool, lora_wrapped: bool) -> None:
        """Write the state from which training resumes at (``stage``, ``epoch``) of ``fit``."""
        import torch
        from safetensors.torch import save_file

        if not self.writer:
            return
        with atomic_dir(self.folder, overwrite=True) as tmp:
            tensors = {f"heads.{k}": v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
            if dirty or lora_wrapped or stage < len(fit.stages) and fit.stages[stage].kind == "full" and epoch > 0:
                tensors.update({f"encoder.{k}": v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()})
            tensors["rng.torch"] = torch.get_rng_state()
            save_file(_dedupe(tensors), str(tmp / "model.safetensors"))
            meta = {"fit": fit.id, "stage": stage, "epoch": epoch, "encoder_dirty": dirty, "lora_wrapped": lora_wrapped,
                    "job_key": self.job_key, "scheduler": None, "param_groups": None}
            if optimizer is not None:
                sd = optimizer.state_dict()
                opt_tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items() for k, v in st.items()}
                save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
                meta["param_groups"] = sd["param_groups"]
                meta["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
            (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=list))
        self.n_saved += 1
        if self.on_epoch_saved is not None:
            self.on_epoch_saved(EpochSaved(fit.id, stage, epoch, self.n_saved, self.folder))

    def load_meta(self, fit) -> dict | None:
        """The saved state of ``fit`` (None when there is none for this fit and job)."""
        path = self.folder / "state.json"
        if not path.is_file():
            return None
        meta = json.loads(path.read_text())
        if meta.get("fit") != fit.id or meta.get("job_key") != self.job_key:
            return None
        return meta

    def load_weights(self, model, device: str) -> None:
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(self.folder / "model.safetensors"))
        heads = {k[6:]: v for k, v in tensors.items() if k.startswith("heads.")}
        model.heads.load_state_dict(heads, strict=True)
        enc = {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if enc:
            model.encoder.load_state_dict(enc, strict=True)
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        model.to(device)

    def load_optimizer(self, optimizer, scheduler, meta: dict, device: str) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(self.folder / "optimizer.safetensors"))
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            state.setdefault(int(i), {})[name] = value.to(device) if name != "step" else value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        sched = dict(meta["scheduler"])
        sched["lr_lambdas"] = [None] * len(optimizer.param_groups)
        scheduler.load_state_dict(sched)


def _dedupe(tensors: dict) -> dict:
    """safetensors refuses shared storage: clone tensors that share memory with another."""
    seen, out = set(), {}
    for k, v in tensors.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
