"""Layer-wise hidden states of a Hugging Face encoder for words and word windows.

* :func:`word_states` - for every word, the states of its word pieces (first piece or mean of
  pieces) when the model reads it with up to ``context`` preceding words of the same run
  (a causal context: nothing after the word is seen). One forward pass per word's context
  window returns every layer at once (embeddings = layer 0).
* :func:`window_states` - for every window of words (e.g. the paper's [t - 10.1 s, t) window of
  each TR), one pooled vector per layer: ``cls`` (first token), ``mean`` (mean of the word
  pieces) or ``last`` (last word piece).

Sequences are sorted by length and batched (``batch_size``), run under
``torch.inference_mode`` on the CPU (or ``device``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

WORD_PIECES = ("first", "mean")
WINDOW_POOLS = ("cls", "mean", "last")


def n_layers_of(model) -> int:
    """Number of hidden-state outputs (embeddings + transformer layers)."""
    return int(model.config.num_hidden_layers) + 1


def _batches(lengths: np.ndarray, batch_size: int):
    order = np.argsort(lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        yield order[s : s + batch_size]


def _first_layers(model, n_layers: int):
    """The encoder with only its first ``n_layers`` transformer layers (states of deeper layers
    are not needed), sharing every weight with ``model``; ``model`` itself is left untouched
    (the app shares loaded models between sessions). Models whose layers are not an
    ``encoder.layer`` ``ModuleList`` (BERT family) are returned whole."""
    import copy

    import torch

    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    n_layers = max(int(n_layers), 1)  # with no layer at all, transformers returns no hidden state
    if not isinstance(layers, torch.nn.ModuleList) or n_layers >= len(layers):
        return model
    short_encoder = copy.copy(encoder)
    short_encoder._modules = dict(encoder._modules)
    short_encoder._modules["layer"] = torch.nn.ModuleList(list(layers)[:n_layers])
    short = copy.copy(model)
    short._modules = dict(model._modules)
    short._modules["encoder"] = short_encoder
    return short


def _forward(model, tokenizer, sequences: list[list[str]], max_length: int, device: str):
    """Tokenise pre-split words (truncating from the left) and return (encoding, hidden states (L, B, T, H))."""
    import torch

    old_side = getattr(tokenizer, "truncation_side", "right")
    tokenizer.truncation_side = "left"
    try:
        enc = tokenizer(sequences, is_split_into_words=True, return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length)
    finally:
        tokenizer.truncation_side = old_side
    with torch.inference_mode():
        out = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                    **({"token_type_ids": enc["token_type_ids"].to(device)} if "token_type_ids" in enc else {}),
                    output_hidden_states=True)
    return enc, torch.stack(out.hidden_states)


def word_states(
    model,
    tokenizer,
    words: Sequence[str],
    groups: Sequence[str] | np.ndarray | None = None,
    *,
    context: int = 20,
    layers: Sequence[int] | None = None,
    word_piece: str = "mean",
    batch_size: int = 64,
    max_length: int = 512,
    device: str = "cpu",
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Contextual state of every word at every requested layer.

    Parameters
    ----------
    model, tokenizer
        A Hugging Face encoder and its *fast* tokenizer (``brainviz.models.encoder.load_encoder``).
    words : sequence of str (n_words,)
    groups : array (n_words,), optional
        Context never crosses a change of group (pass the run or story of each word).
    context : int
        Number of preceding words the model sees with each word (0 = the word alone).
    layers : sequence of int, optional
        Hidden-state indices (0 = embeddings); default all.
    word_piece : {"first", "mean"}
        State of the word's first piece or mean over its pieces.

    Returns
    -------
    float32 array (n_layers, n_words, hidden)
    """
    import torch

    if word_piece not in WORD_PIECES:
        raise ValueError(f"word_piece: expected one of {WORD_PIECES}, got {word_piece!r}")
    if context < 0:
        raise ValueError(f"context must be >= 0 words, got {context}")
    words = [str(w) for w in words]
    n = len(words)
    g = np.zeros(n, dtype=int) if groups is None else np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    start_of_group = np.zeros(n, dtype=int)
    for i in range(1, n):
        start_of_group[i] = start_of_group[i - 1] if g[i] == g[i - 1] else i
    starts = np.maximum(start_of_group, np.arange(n) - context)
    layers = list(range(n_layers_of(model))) if layers is None else [int(x) for x in layers]
    out = np.zeros((len(layers), n, int(model.config.hidden_size)), dtype=np.float32)
    model = _first_layers(model, max(layers))  # deeper layers would be computed for nothing
    lengths = np.array([len(w) for w in words])
    approx = np.array([lengths[starts[i] : i + 1].sum() + (i + 1 - starts[i]) for i in range(n)])
    done = 0
    for batch in _batches(approx, batch_size):
        seqs = [words[starts[i] : i + 1] for i in batch]
        enc, hs = _forward(model, tokenizer, seqs, max_length, device)
        weights = np.zeros(enc["input_ids"].shape, dtype=np.float32)
        for b, seq in enumerate(seqs):
            ids = enc.word_ids(b)
            pos = [t for t, w in enumerate(ids) if w == len(seq) - 1]
            if not pos:  # the word itself produced no piece (empty after normalisation)
                continue
            if word_piece == "first":
                weights[b, pos[0]] = 1.0
            else:
                weights[b, pos] = 1.0 / len(pos)
        sel = hs[layers]
        pooled = torch.einsum("lbth,bt->lbh", sel.float(), torch.from_numpy(weights).to(sel.device))
        out[:, batch] = pooled.cpu().numpy()
        done += len(batch)
        if progress:
            progress(done / n)
    return out


def window_states(
    model,
    tokenizer,
    windows: Sequence[Sequence[str]],
    *,
    pool: str = "mean",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    max_length: int = 512,
    device: str = "cpu",
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """One pooled vector per window of words at every requested layer.

    ``pool``: ``cls`` (first token), ``mean`` (mean over word pieces, special tokens excluded)
    or ``last`` (last word piece). Empty windows give zeros.

    Returns
    -------
    float32 array (n_layers, n_windows, hidden)
    """
    import torch

    if pool not in WINDOW_POOLS:
        raise ValueError(f"pool: expected one of {WINDOW_POOLS}, got {pool!r}")
    layers = list(range(n_layers_of(model))) if layers is None else [int(x) for x in layers]
    wins = [[str(w) for w in win] for win in windows]
    out = np.zeros((len(layers), len(wins), int(model.config.hidden_size)), dtype=np.float32)
    model = _first_layers(model, max(layers))
    nonempty = np.array([i for i, w in enumerate(wins) if w], dtype=int)
    lengths = np.array([sum(len(w) + 1 for w in wins[i]) for i in nonempty])
    done = 0
    for sub in _batches(lengths, batch_size):
        batch = nonempty[sub]
        seqs = [wins[i] for i in batch]
        enc, hs = _forward(model, tokenizer, seqs, max_length, device)
        weights = np.zeros(enc["input_ids"].shape, dtype=np.float32)
        for b in range(len(seqs)):
            pieces = [t for t, w in enumerate(enc.word_ids(b)) if w is not None]
            if pool == "cls":
                weights[b, 0] = 1.0
            elif pieces and pool == "last":
                weights[b, pieces[-1]] = 1.0
            elif pieces:
                weights[b, pieces] = 1.0 / len(pieces)
        sel = hs[layers]
        pooled = torch.einsum("lbth,bt->lbh", sel.float(), torch.from_numpy(weights).to(sel.device))
        out[:, batch] = pooled.cpu().numpy()
        done += len(batch)
        if progress:
            progress(done / max(len(nonempty), 1))
    return out
