"""Prediction heads put on top of an encoder for brain-tuning.

Two heads, as in Schwartz, Toneva & Wehbe (2019):

- :class:`FMRIHead`: dropout + one linear layer on the last layer's pooled hidden state
  (``pooling="cls"``: the [CLS] token, not the tanh pooler, as in the paper; ``"mean"``: the
  mean over the window's tokens). With several participants the output columns are split
  per participant (``mode="split"``); when participants share a space (fsaverage5) the
  ``"shared"`` mode of the multi-participant papers uses one block of columns for every
  participant, and ``"shared+split"`` adds a participant-specific block to the shared one
  (prediction = shared + own).
- :class:`MEGHead`: one linear layer applied to every token's ``[hidden; word length; log
  frequency]``, predicting sensors x time bins of each MEG participant (split columns).

A :class:`BrainHeads` holds either or both and is described by a JSON-able *spec*, which is
stored next to the weights (``heads.safetensors`` metadata and the checkpoint card), so heads
can be rebuilt without pickles.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch
from torch import nn

HEAD_MODES = ("split", "shared", "shared+split")
POOLINGS = ("cls", "mean")
N_WORD_FEATURES = 2  # word length, log frequency


def _splits(names: Sequence[str], sizes: Sequence[int], shared: bool, offset: int = 0) -> dict[str, tuple[int, int]]:
    out, start = {}, int(offset)
    for name, size in zip(names, sizes):
        if shared:
            out[name] = (0, int(size))
        else:
            out[name] = (start, start + int(size))
            start += int(size)
    return out


class _SplitLinear(nn.Module):
    """A linear layer whose output columns are split into named blocks."""

    def __init__(self, in_features: int, names: Sequence[str], sizes: Sequence[int], shared: bool = False,
                 both: bool = False):
        super().__init__()
        if not names:
            raise ValueError("a head needs at least one target")
        if len(names) != len(sizes) or len(set(names)) != len(names):
            raise ValueError(f"head targets must be unique names with one size each, got {names} / {sizes}")
        if (shared or both) and len(set(int(s) for s in sizes)) != 1:
            raise ValueError(f"a shared head needs targets of equal size, got {dict(zip(names, sizes))}")
        self.names = list(names)
        self.sizes = [int(s) for s in sizes]
        self.shared = bool(shared)
        self.both = bool(both)  # a shared block (first columns) + one block per target, summed
        self.splits = _splits(self.names, self.sizes, self.shared, offset=self.sizes[0] if self.both else 0)
        n_out = self.sizes[0] if self.shared else sum(self.sizes) + (self.sizes[0] if self.both else 0)
        self.linear = nn.Linear(in_features, n_out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def block(self, output: torch.Tensor, name: str) -> torch.Tensor:
        """The columns of ``output`` that belong to target ``name``."""
        start, stop = self.splits[name]
        if self.both:
            return output[..., : self.sizes[0]] + output[..., start:stop]
        return output[..., start:stop]


class FMRIHead(_SplitLinear):
    """Dropout + linear map from the [CLS] hidden state to fMRI units of each participant."""

    def __init__(self, hidden: int, participants: Sequence[str], n_units: Sequence[int], mode: str = "split",
                 dropout: float = 0.1, pooling: str = "cls"):
        if mode not in HEAD_MODES:
            raise ValueError(f"unknown fMRI head mode {mode!r}; expected one of {HEAD_MODES}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        super().__init__(hidden, participants, n_units, shared=(mode == "shared"), both=(mode == "shared+split"))
        self.mode = mode
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.p_dropout = float(dropout)

    def forward(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(cls_hidden))


class MEGHead(_SplitLinear):
    """Per-token linear map from [hidden; length; log frequency] to sensors x bins."""

    def __init__(self, hidden: int, participants: Sequence[str], n_sensors: Sequence[int], n_bins: Sequence[int]):
        self.n_sensors = [int(s) for s in n_sensors]
        self.n_bins = [int(b) for b in n_bins]
        sizes = [s * b for s, b in zip(self.n_sensors, self.n_bins)]
        super().__init__(hidden + N_WORD_FEATURES, participants, sizes, shared=False)

    def forward(self, token_hidden: torch.Tensor, word_features: torch.Tensor) -> torch.Tensor:
        x = torch.cat([token_hidden, word_features.to(token_hidden.dtype)], dim=-1)
        return self.linear(x)


class BrainHeads(nn.Module):
    """The fMRI and/or MEG heads of one fitted model."""

    def __init__(self, fmri: FMRIHead | None = None, meg: MEGHead | None = None):
        super().__init__()
        if fmri is None and meg is None:
            raise ValueError("BrainHeads needs an fMRI head, an MEG head or both")
        self.fmri = fmri
        self.meg = meg

    # -- description ------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fmri is not None:
            out["hidden"] = self.fmri.linear.in_features
            out["fmri"] = {
                "participants": self.fmri.names,
                "n_units": self.fmri.sizes,
                "mode": self.fmri.mode,
                "dropout": self.fmri.p_dropout,
                "pooling": self.fmri.pooling,
            }
        if self.meg is not None:
            out["hidden"] = self.meg.linear.in_features - N_WORD_FEATURES
            out["meg"] = {
                "participants": self.meg.names,
                "n_sensors": self.meg.n_sensors,
                "n_bins": self.meg.n_bins,
            }
        return out

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "BrainHeads":
        hidden = int(spec["hidden"])
        fmri = meg = None
        if spec.get("fmri"):
            f = spec["fmri"]
            fmri = FMRIHead(hidden, f["participants"], f["n_units"], f.get("mode", "split"), f.get("dropout", 0.1),
                            f.get("pooling", "cls"))
        if spec.get("meg"):
            m = spec["meg"]
            meg = MEGHead(hidden, m["participants"], m["n_sensors"], m["n_bins"])
        return cls(fmri, meg)

    # -- (de)serialisation --------------------------------------------------------------
    def save(self, path, dtype: torch.dtype = torch.float32) -> None:
        """Write weights + spec to a ``.safetensors`` file atomically.

        ``dtype=torch.float16`` halves the file; call :meth:`round_to` with the same dtype
        first so that the module in memory equals what is stored.
        """
        from safetensors.torch import save_file

        from brainviz._io import atomic_path

        tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path, suffix=".safetensors.tmp") as tmp:
            save_file(tensors, str(tmp), metadata={"spec": json.dumps(self.spec(), sort_keys=True)})

    @torch.no_grad()
    def round_to(self, dtype: torch.dtype) -> "BrainHeads":
        """Round the weights (in place) to ``dtype`` and back, i.e. to what :meth:`save` stores."""
        for p in self.parameters():
            p.copy_(p.to(dtype).to(p.dtype))
        return self

    @classmethod
    def load(cls, path) -> "BrainHeads":
        """Rebuild heads from a file written by :meth:`save` (no pickles involved)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "spec" not in meta:
                raise ValueError(f"{path}: field 'spec' missing from the safetensors metadata")
            spec = json.loads(meta["spec"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        heads = cls.from_spec(spec)
        heads.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
        return heads
