"""An encoder (any Hugging Face ``AutoModel``, eager attention) plus brain heads.

Input of an fMRI example: the words of its window joined as one sequence, tokenised with
``is_split_into_words=True`` so that ``word_ids()`` maps every token to its word. When a window
is longer than ``max_length`` tokens its *oldest* words are cut (the most recent words matter
most for the BOLD response at the end of the window).

Examples
--------
>>> from brainviz.models import load_checkpoint                              # doctest: +SKIP
>>> model, tokenizer = load_checkpoint("models/ft").brain_model()            # doctest: +SKIP
>>> preds = model.predict_fmri(tokenizer, [["the", "boy", "ran"]])          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from torch import nn

from brainviz.models.heads import BrainHeads

DEFAULT_MAX_LENGTH = 128


@dataclasses.dataclass
class TokenizedWindows:
    """Token ids and token -> word maps of a list of word windows (unpadded)."""

    input_ids: list[list[int]]
    word_ids: list[list[int | None]]
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, index: Sequence[int], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids``, ``attention_mask`` and ``token_type_ids`` of some windows."""
        rows = [self.input_ids[i] for i in index]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[b, : len(r)] = 1
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "token_type_ids": torch.zeros_like(ids).to(device),
        }


def tokenize_windows(tokenizer, windows: Sequence[Sequence[str]], max_length: int = DEFAULT_MAX_LENGTH) -> TokenizedWindows:
    """Tokenise word windows (one sequence each) keeping the token -> word map.

    Raises ``ValueError`` for an empty window or a tokenizer that is not a fast tokenizer
    (``word_ids()`` needs one).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("brain-tuning needs a fast tokenizer (word_ids() maps tokens to words)")
    windows = [[str(w) for w in win] for win in windows]
    for i, win in enumerate(windows):
        if not win:
            raise ValueError(f"window {i} has no words")
    old_side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        enc = tokenizer(windows, is_split_into_words=True, truncation=True, max_length=max_length)
    finally:
        tokenizer.truncation_side = old_side
    ids = [list(x) for x in enc["input_ids"]]
    word_ids = [enc.word_ids(i) for i in range(len(windows))]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TokenizedWindows(ids, word_ids, int(pad))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str = "cls") -> torch.Tensor:
    """Head input of each window from the last layer's hidden states (B, T, H).

    ``"cls"``: the first ([CLS]) token, as in Schwartz et al. (2019); ``"mean"``: the mean over
    the window's real tokens (padding excluded; [CLS]/[SEP] included, as sentence-transformers
    pools all-MiniLM-L6-v2).
    """
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {how!r}; expected 'cls' or 'mean'")


class BrainModel(nn.Module):
    """Encoder + :class:`~brainviz.models.heads.BrainHeads`.

    ``forward`` returns ``{"cls": (B, H), "fmri": (B, n_fmri_out), "meg": (M, n_meg_out)}``
    (keys present when the head exists / MEG token positions are given); ``"cls"`` is the
    fMRI head's input (the [CLS] state or the mean over tokens, see :func:`pool`).
    """

    def __init__(self, encoder: nn.Module, heads: BrainHeads):
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer hidden states (B, T, H)."""
        return self.encoder(**batch).last_hidden_state

    @property
    def pooling(self) -> str:
        return getattr(self.heads.fmri, "pooling", "cls") if self.heads.fmri is not None else "cls"

    def pooled(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fMRI head's input (B, H) from hidden states (B, T, H)."""
        return pool(hidden, batch.get("attention_mask"), self.pooling)

    def heads_forward(
        self,
        cls_hidden: torch.Tensor | None,
        token_hidden: torch.Tensor | None = None,
        word_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if cls_hidden is not None and self.heads.fmri is not None:
            out["fmri"] = self.heads.fmri(cls_hidden.float())
        if token_hidden is not None and self.heads.meg is not None and token_hidden.shape[0]:
            out["meg"] = self.heads.meg(token_hidden.float(), word_features)
        return out

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        meg_positions: torch.Tensor | None = None,
        meg_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden = self.encode(batch)
        token_hidden = None
        if meg_positions is not None and len(meg_positions):
            token_hidden = hidden[meg_positions[:, 0], meg_positions[:, 1]]
        pooled = self.pooled(hidden, batch)
        out = self.heads_forward(pooled, token_hidden, meg_features)
        out["cls"] = pooled
        return out

    @torch.no_grad()
    def predict_fmri(
        self,
        tokenizer,
        windows: Sequence[Sequence[str]] | TokenizedWindows,
        batch_size: int = 64,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> dict[str, np.ndarray]:
        """fMRI predictions ``{participant: (n_windows, n_units) float32}`` in eval mode."""
        if self.heads.fmri is None:
            raise ValueError("this model has no fMRI head")
        tok = windows if isinstance(windows, TokenizedWindows) else tokenize_windows(tokenizer, windows, max_length)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        chunks = []
        try:
            for start in range(0, len(tok), batch_size):
                batch = tok.batch(range(start, min(start + batch_size, len(tok))), device)
                chunks.append(self.heads_forward(self.pooled(self.encode(batch), batch))["fmri"].float().cpu())
        finally:
            self.train(was_training)
        full = torch.cat(chunks)
        head = self.heads.fmri
        return {name: np.ascontiguousarray(head.block(full, name).numpy().astype(np.float32)) for name in head.names}
