"""Attention read-outs of an encoder (the [CLS] analysis of Schwartz et al. 2019, section 4).

- :func:`cls_attention`: for every example window, layer and head, the attention weight from
  [CLS] to itself and from [CLS] to [SEP] -> array ``(examples, layers, heads, 2)``;
- :func:`checkpoint_cls_attention`: the same for each seed of a checkpoint (one encoder per
  seed) -> ``(seeds, examples, layers, heads, 2)``;
- :func:`layer_summary`: mean +- standard error per layer over examples / heads / seeds;
- :func:`attention_change`: tuned minus base, per layer x head;
- :func:`token_attention`: the token x token attention matrix of one window, layer and head.

``model`` arguments accept a model name or folder (anything :func:`load_encoder` takes), a
:class:`~brainviz.models.store.Checkpoint`, or an already loaded ``(model, tokenizer)`` pair.
The encoder must use eager attention (``load_encoder`` does) to return attention weights.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from brainviz.models.brain_model import DEFAULT_MAX_LENGTH, tokenize_windows

KINDS = ("cls->cls", "cls->sep")
SE_OVER = ("examples", "heads", "seeds")


def _encoder(model: Any, device: str = "cpu"):
    from brainviz.models.store import Checkpoint

    if isinstance(model, tuple) and len(model) == 2:
        return model
    if isinstance(model, Checkpoint):
        return model.encoder(device=device)
    from brainviz.models.encoder import load_encoder

    return load_encoder(model, device=device)


def _sep_positions(input_ids, attention_mask, sep_id: int | None):
    import torch

    last = attention_mask.sum(dim=1) - 1
    if sep_id is None:
        return last
    is_sep = input_ids == sep_id
    first = torch.where(is_sep.any(dim=1), is_sep.float().argmax(dim=1), last)
    return first


def cls_attention(
    model: Any,
    windows: Sequence[Sequence[str]],
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_size: int = 16,
    device: str = "cpu",
) -> np.ndarray:
    """[CLS]->[CLS] and [CLS]->[SEP] attention, float32 ``(examples, layers, heads, 2)``."""
    import torch

    encoder, tokenizer = _encoder(model, device)
    if not windows:
        raise ValueError("no example windows given")
    tok = tokenize_windows(tokenizer, windows, max_length)
    dev = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(tok), batch_size):
                batch = tok.batch(range(start, min(start + batch_size, len(tok))), dev)
                result = encoder(**batch, output_attentions=True)
                if not result.attentions or result.attentions[0] is None:
                    raise ValueError("the encoder returned no attention weights (load it with attn_implementation='eager')")
                att = torch.stack(result.attentions, dim=1).float()  # (B, L, H, T, T)
                sep = _sep_positions(batch["input_ids"], batch["attention_mask"], tokenizer.sep_token_id)
                b = torch.arange(att.shape[0], device=att.device)
                to_cls = att[:, :, :, 0, 0]
                to_sep = att[b, :, :, 0, sep]  # (B, L, H)
                out.append(torch.stack([to_cls, to_sep], dim=-1).cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out).astype(np.float32)


def checkpoint_cls_attention(
    checkpoint: Any,
    windows: Sequence[Sequence[str]],
    fold: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: str = "cpu",
) -> np.ndarray:
    """:func:`cls_attention` for every seed of a checkpoint: ``(seeds, examples, layers, heads, 2)``.

    For each seed the encoder of the first fit of that seed (optionally of one ``fold``) that
    tuned an encoder is used; a heads-only checkpoint gives the base encoder for each seed.
    """
    from brainviz.models.store import BASE_ENCODER, Checkpoint, load_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.is_pretrained:
        return cls_attention(ckpt, windows, max_length=max_length, device=device)[None]
    out = []
    for seed in ckpt.seeds:
        fits = [f for f in ckpt.fits if int(f["seed"]) == seed and (fold is None or f["fold"] == fold)]
        if not fits:
            raise ValueError(f"{ckpt.name}: no fit for seed {seed}" + (f" and fold {fold!r}" if fold else ""))
        fit = next((f for f in fits if f["encoder"] != BASE_ENCODER), fits[0])
        out.append(cls_attention(ckpt.fit_encoder(fit, device=device), windows, max_length=max_length, device=device))
    return np.stack(out)


def layer_summary(attention: np.ndarray, se_over: str = "examples") -> dict[str, np.ndarray]:
    """Mean and standard error per layer of ``(..., examples, layers, heads, 2)`` read-outs.

    The mean is over every axis but layers and the [CLS]/[SEP] kind. The standard error is
    taken across ``se_over`` (``examples``, ``heads`` or ``seeds``; a leading seeds axis is
    needed for ``seeds``) after averaging the other axes.

    Returns ``{"mean": (layers, 2), "se": (layers, 2), "n": int}``.
    """
    att = np.asarray(attention, dtype=np.float64)
    if att.ndim == 4:
        att = att[None]
    if att.ndim != 5 or att.shape[-1] != 2:
        raise ValueError(f"expected (examples, layers, heads, 2) or (seeds, examples, layers, heads, 2), got {attention.shape}")
    if se_over not in SE_OVER:
        raise ValueError(f"se_over must be one of {SE_OVER}, got {se_over!r}")
    axis = {"seeds": 0, "examples": 1, "heads": 3}[se_over]
    others = tuple(a for a in (0, 1, 3) if a != axis)
    samples = att.mean(axis=others, keepdims=True)  # one value per unit of `axis`
    n = att.shape[axis]
    mean = att.mean(axis=(0, 1, 3))
    if n > 1:
        se = samples.std(axis=axis, ddof=1, keepdims=True) / np.sqrt(n)
        se = se.reshape(mean.shape)
    else:
        se = np.full(mean.shape, np.nan)
    return {"mean": mean, "se": se, "n": int(n)}


def attention_change(base: np.ndarray, tuned: np.ndarray) -> np.ndarray:
    """Tuned minus base attention per ``(layers, heads, 2)``, averaged over examples (and seeds)."""
    base, tuned = np.asarray(base, dtype=np.float64), np.asarray(tuned, dtype=np.float64)

    def avg(a: np.ndarray) -> np.ndarray:
        if a.ndim == 5:
            a = a.mean(axis=0)
        if a.ndim != 4:
            raise ValueError(f"expected (examples, layers, heads, 2) read-outs, got shape {a.shape}")
        return a.mean(axis=0)

    b, t = avg(base), avg(tuned)
    if b.shape != t.shape:
        raise ValueError(f"base {b.shape} and tuned {t.shape} read-outs differ in layers/heads")
    return t - b


def token_attention(
    model: Any, words: Sequence[str], layer: int, head: int, max_length: int = DEFAULT_MAX_LENGTH, device: str = "cpu"
) -> tuple[list[str], np.ndarray]:
    """Tokens and the ``(tokens, tokens)`` attention matrix (rows attend to columns) of one head."""
    import torch

    encoder, tokenizer = _encoder(model, device)
    tok = tokenize_windows(tokenizer, [list(words)], max_length)
    dev = next(encoder.parameters()).device
    with torch.no_grad():
        att = encoder(**tok.batch([0], dev), output_attentions=True).attentions
    n_layers, n_heads = len(att), att[0].shape[1]
    if not 0 <= layer < n_layers or not 0 <= head < n_heads:
        raise ValueError(f"layer must be in [0, {n_layers}) and head in [0, {n_heads}), got {layer}, {head}")
    tokens = tokenizer.convert_ids_to_tokens(tok.input_ids[0])
    return tokens, att[layer][0, head].float().cpu().numpy()
