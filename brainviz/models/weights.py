"""On-disk formats of a checkpoint's weights and held-out predictions (lean checkpoints).

Encoder weights of a fit (``fits/<id>/encoder/model.safetensors``):

- format 2 (written since checkpoint format 2): only the tensors that training changed, each
  stored as a float16 *delta* from the base model (``weights = base + delta``); the file's
  metadata say ``{"brainviz_weights": "delta-fp16", "base_fingerprint": ...}``. Frozen tensors
  (the word embeddings in the ``quick`` preset, everything but the adapted matrices with
  LoRA) cost nothing. Before the fit's held-out predictions are made, the encoder in memory
  is rounded to exactly ``base + float16(delta)`` (:func:`round_encoder_delta`), so the stored
  model reproduces the stored predictions.
- format 1 (older checkpoints): a full float32 state dict (``safetensors.torch.save_model``),
  no ``brainviz_weights`` metadata. :func:`load_encoder_weights` reads both.

Heads are stored once per kept fit in float16 (``BrainHeads.save(dtype=float16)``, after
``round_to(float16)``), and read back as float32.

Held-out predictions (``predictions/seed-<S>/<participant>.npz``) are float16 when every
value fits float16's range (:func:`prediction_dtype`): the held-out scores then change by far
less than their sampling error (Pearson r by < 1e-3, the 20-vs-20 accuracy of a unit by at
most a few draws in 1,000; ``tests/test_tuning_lean.py`` measures it). Participants whose
predictions are identical (a participant-shared head) share one file through hard links.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_KEY = "brainviz_weights"
DELTA_FP16 = "delta-fp16"
FP16_MAX = 65504.0


class WeightsError(ValueError):
    """Encoder weights that cannot be applied (wrong base, wrong architecture)."""


def base_fingerprint(state: dict[str, Any], keys) -> str:
    """Short hash of the base model's tensors ``keys`` (what a delta is relative to)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(keys):
        t = state[k].detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()


def round_encoder_delta(encoder, base_state: dict[str, Any]) -> dict[str, Any]:
    """Float16 deltas of the tensors of ``encoder`` that differ from ``base_state``.

    The encoder is changed in place to ``base + float16(delta)`` (what :func:`save_encoder_delta`
    stores), so predictions made afterwards are exactly those of the stored model.
    """
    import torch

    deltas = {}
    with torch.no_grad():
        for name, value in encoder.state_dict().items():
            base = base_state[name]
            if not value.is_floating_point() or torch.equal(value.detach().cpu(), base):
                continue
            d = (value.detach().cpu().float() - base.float()).to(torch.float16)
            deltas[name] = d.contiguous()
            value.copy_((base.float() + d.float()).to(value.dtype).to(value.device))
    return deltas


def relative_change(encoder, base_state: dict[str, Any], trainable: set[str] | None = None) -> dict[str, float]:
    """``||theta - theta_0|| / ||theta_0||`` over all encoder tensors, and over the trainable ones."""
    import torch

    num = den = num_t = den_t = 0.0
    with torch.no_grad():
        for name, value in encoder.state_dict().items():
            if not value.is_floating_point():
                continue
            base = base_state[name].float()
            d2 = float(((value.detach().cpu().float() - base) ** 2).sum())
            b2 = float((base ** 2).sum())
            num, den = num + d2, den + b2
            if trainable is None or name in trainable:
                num_t, den_t = num_t + d2, den_t + b2
    return {"relative_l2": (num / den) ** 0.5 if den else 0.0,
            "relative_l2_trained": (num_t / den_t) ** 0.5 if den_t else 0.0}


def save_encoder_delta(path: str | os.PathLike, deltas: dict[str, Any], base_state: dict[str, Any]) -> None:
    """Write float16 deltas (from :func:`round_encoder_delta`) atomically."""
    from safetensors.torch import save_file

    from brainviz._io import atomic_path

    meta = {WEIGHTS_KEY: DELTA_FP16, "base_fingerprint": base_fingerprint(base_state, deltas.keys())}
    with atomic_path(path, suffix=".safetensors.tmp") as tmp:
        save_file(dict(deltas), str(tmp), metadata=meta)


def load_encoder_weights(model, path: str | os.PathLike) -> None:
    """Apply a fit's encoder file to ``model`` (which holds the base weights): a float16 delta
    (format 2) or a full state dict (format 1). Raises :class:`WeightsError` on mismatch."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_model

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get(WEIGHTS_KEY) != DELTA_FP16:
            kind = None
        else:
            kind = DELTA_FP16
            deltas = {k: f.get_tensor(k) for k in f.keys()}
    if kind is None:
        try:
            load_model(model, str(path), strict=True)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(f"encoder weights do not fit the architecture ({exc})") from None
        return
    state = model.state_dict()
    unknown = [k for k in deltas if k not in state]
    if unknown:
        raise WeightsError(f"delta tensors {unknown[:3]} are not in the base model")
    bad = [k for k in deltas if tuple(deltas[k].shape) != tuple(state[k].shape)]
    if bad:
        raise WeightsError(f"delta tensors {bad[:3]} do not match the base model's shapes")
    if base_fingerprint(state, deltas.keys()) != meta.get("base_fingerprint"):
        raise WeightsError("the stored weights are a delta from a different base model than the one loaded "
                           "(the card's 'base' changed since training?)")
    with torch.no_grad():
        for k, d in deltas.items():
            state[k].copy_((state[k].float() + d.float()).to(state[k].dtype))


def prediction_dtype(predictions: np.ndarray) -> np.dtype:
    """float16 when every finite value fits its range (and no finite value overflows), else float32."""
    p = np.asarray(predictions)
    finite = np.isfinite(p)
    if finite.all() and (p.size == 0 or float(np.abs(p).max()) < FP16_MAX / 2):
        return np.dtype(np.float16)
    return np.dtype(np.float32)


def save_predictions(path: str | os.PathLike, predictions: np.ndarray, *, link_cache: dict | None = None,
                     dtype: str = "float16", **arrays: np.ndarray) -> None:
    """Write a prediction ``.npz`` atomically (``dtype="float16"``: float16 when safe, else float32).

    With ``link_cache`` (a dict kept by the caller), a file whose arrays are identical to an
    earlier one is hard-linked to it instead of written again (participant-shared heads).
    """
    from brainviz._io import atomic_path, content_hash

    pred = np.asarray(predictions)
    pred = pred.astype(prediction_dtype(pred) if dtype == "float16" else np.float32)
    out = {"predictions": pred, **{k: np.asarray(v) for k, v in arrays.items()}}
    key = content_hash(*[(k, out[k]) for k in sorted(out)]) if link_cache is not None else None
    path = Path(path)
    if key is not None and key in link_cache and Path(link_cache[key]).is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(link_cache[key], tmp)
        except OSError:
            import shutil

            shutil.copyfile(link_cache[key], tmp)
        os.replace(tmp, path)
        return
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **out)
    if key is not None:
        link_cache[key] = str(path)
