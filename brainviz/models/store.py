"""The checkpoint store: one folder per trained model under :func:`brainviz.paths.models_dir`.

Layout (see ``docs/checkpoints.md`` for the full description)::

    <name>/
      card.json                       what was trained, on what, how, with which results
      encoder/                        HF folder of the first fold/seed's tuned encoder
                                      (absent when the encoder is the unchanged base)
      heads.safetensors               heads of the first fold/seed's fit
      fits/<group>/fold-<run>/seed-<S>/
          encoder/model.safetensors   only where the encoder was tuned in that fit
          heads.safetensors
      predictions/seed-<S>/<participant>.npz   held-out predictions, tr_index, run

Everything is safetensors, JSON or ``.npz`` without object arrays: nothing is ever unpickled.
A corrupt or incomplete checkpoint raises :class:`CheckpointError` naming the file and field.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from brainviz import paths
from brainviz.models.encoder import PRETRAINED, load_encoder

CARD = "card.json"
FORMAT_VERSION = 1
REQUIRED_CARD_FIELDS = (
    "format", "name", "variant", "base", "encoder", "dataset", "simulated", "participants",
    "folds", "seeds", "train_config", "preprocess", "versions", "metrics", "created", "fits",
    "predictions",
)
REQUIRED_DATASET_FIELDS = ("name", "path", "hash")
REQUIRED_FIT_FIELDS = ("group", "fold", "seed", "encoder", "heads", "predicts")
PREDICTION_ARRAYS = ("predictions", "tr_index", "run")
BASE_ENCODER = "base"  # value of a fit's "encoder" when the base encoder was not changed


class CheckpointError(ValueError):
    """A checkpoint is corrupt or incomplete; the message names the file and field."""

    def __init__(self, message: str, *, file: str | os.PathLike | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.field = field
        where = ": ".join(p for p in (self.file, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


# --------------------------------------------------------------------------------------
# file checks
# --------------------------------------------------------------------------------------


def check_safetensors(path: str | os.PathLike, field: str = "file") -> dict[str, Any]:
    """Check that a safetensors file is complete (header readable, data not truncated).

    Returns the parsed header. Only the header is read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("file missing", file=path, field=field)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a header")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8 or n > 100_000_000:
                raise ValueError("header length beyond end of file")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a readable safetensors file ({exc})", file=path, field=field) from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"truncated: data needs {8 + n + end} bytes, file has {size}", file=path, field=field)
    return header


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = PREDICTION_ARRAYS) -> dict[str, np.ndarray]:
    """Load a prediction file (no pickles) and check it has the required arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("file missing", file=path, field="predictions")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"unreadable .npz ({exc})", file=path, field="predictions") from None
    for key in required:
        if key not in out:
            raise CheckpointError("array missing", file=path, field=key)
    n = out["predictions"].shape[0]
    for key in ("tr_index", "run"):
        if key in out and out[key].shape != (n,):
            raise CheckpointError(f"shape {out[key].shape} does not match {n} prediction rows", file=path, field=key)
    return out


# --------------------------------------------------------------------------------------
# Checkpoint
# --------------------------------------------------------------------------------------


class Checkpoint:
    """A trained model in the store (or the packaged ``pretrained`` encoder).

    The card is read on construction; heads and encoders are loaded lazily.

    Attributes
    ----------
    path : Path or None
        Checkpoint folder (None for ``pretrained``).
    card : dict
        Contents of ``card.json``.
    """

    def __init__(self, path: Path | None, card: dict[str, Any]):
        self.path = path
        self.card = card
        self._heads: dict[int, Any] = {}

    # -- card accessors ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def variant(self) -> str:
        return self.card["variant"]

    @property
    def base(self) -> str:
        return self.card["base"]

    @property
    def participants(self) -> list[str]:
        return list(self.card.get("participants", []))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.card.get("seeds", [])]

    @property
    def folds(self) -> list[str]:
        return list(self.card.get("folds", []))

    @property
    def simulated(self) -> bool | None:
        return self.card.get("simulated")

    @property
    def dataset(self) -> dict[str, Any] | None:
        return self.card.get("dataset")

    @property
    def is_pretrained(self) -> bool:
        return self.path is None

    @property
    def fits(self) -> list[dict[str, Any]]:
        return list(self.card.get("fits", []))

    def __repr__(self) -> str:
        return f"Checkpoint({self.name!r}, variant={self.variant!r}, path={str(self.path) if self.path else None!r})"

    def summary(self) -> dict[str, Any]:
        """One row of ``models list``."""
        ds = self.dataset or {}
        return {
            "name": self.name,
            "variant": self.variant,
            "base": self.base,
            "dataset": ds.get("name"),
            "participants": self.participants,
            "simulated": self.simulated,
            "created": self.card.get("created"),
            "path": str(self.path) if self.path else None,
        }

    # -- fits ---------------------------------------------------------------------------
    def fit(self, group: str | None = None, fold: str | None = None, seed: int | None = None, participant: str | None = None) -> dict[str, Any]:
        """The first fit matching the given group / fold / seed / predicted participant."""
        for f in self.fits:
            if group is not None and f["group"] != group:
                continue
            if fold is not None and f["fold"] != str(fold):
                continue
            if seed is not None and int(f["seed"]) != int(seed):
                continue
            if participant is not None and participant not in f["predicts"]:
                continue
            return f
        raise CheckpointError(
            f"no fit with group={group!r} fold={fold!r} seed={seed!r} participant={participant!r}",
            file=self._card_path(), field="fits",
        )

    def _card_path(self) -> Path | None:
        return self.path / CARD if self.path else None

    def _resolve(self, rel: str) -> Path:
        assert self.path is not None
        return self.path / rel

    def heads(self, fit: dict[str, Any] | None = None):
        """:class:`~brainviz.models.heads.BrainHeads` of a fit (default: the first fit)."""
        from brainviz.models.heads import BrainHeads

        if self.is_pretrained:
            raise CheckpointError("the pretrained encoder has no heads", field="heads")
        fit = fit or self.fits[0]
        key = self.fits.index(fit)
        if key not in self._heads:
            path = self._resolve(fit["heads"])
            check_safetensors(path, "heads")
            try:
                self._heads[key] = BrainHeads.load(path)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"cannot rebuild heads ({exc})", file=path, field="heads") from None
        return self._heads[key]

    def encoder_source(self) -> str:
        """Folder or name the encoder architecture + tokenizer come from."""
        if self.is_pretrained:
            return PRETRAINED
        if (self.path / "encoder").is_dir():
            return str(self.path / "encoder")
        return self.base

    def encoder(self, device: str = "cpu"):
        """``(model, tokenizer)`` of the top-level encoder (first fold/seed), eager attention."""
        return load_encoder(self.encoder_source(), device=device)

    def fit_encoder(self, fit: dict[str, Any] | None = None, device: str = "cpu"):
        """``(model, tokenizer)`` of the encoder used by one fit."""
        from safetensors.torch import load_model

        model, tokenizer = load_encoder(self.encoder_source(), device="cpu")
        if not self.is_pretrained:
            fit = fit or self.fits[0]
            if fit["encoder"] != BASE_ENCODER:
                path = self._resolve(fit["encoder"]) / "model.safetensors"
                check_safetensors(path, "encoder")
                try:
                    load_model(model, str(path), strict=True)
                except (RuntimeError, KeyError) as exc:
                    raise CheckpointError(f"encoder weights do not fit the architecture ({exc})", file=path, field="encoder") from None
        model.to(device)
        model.eval()
        return model, tokenizer

    def brain_model(self, fit: dict[str, Any] | None = None, device: str = "cpu"):
        """``(BrainModel, tokenizer)`` of one fit (default: the first), in eval mode."""
        from brainviz.models.brain_model import BrainModel

        fit = fit or self.fits[0]
        encoder, tokenizer = self.fit_encoder(fit, device="cpu")
        model = BrainModel(encoder, self.heads(fit)).to(device)
        model.eval()
        return model, tokenizer

    def predictions(self, participant: str, seed: int | None = None) -> dict[str, np.ndarray]:
        """Held-out predictions of one participant: ``predictions``, ``tr_index``, ``run``."""
        seed = self.seeds[0] if seed is None else int(seed)
        table = self.card.get("predictions", {}).get(f"seed-{seed}", {})
        if participant not in table:
            raise CheckpointError(
                f"no predictions for participant {participant!r} and seed {seed}", file=self._card_path(), field="predictions"
            )
        return load_npz(self._resolve(table[participant]))


# --------------------------------------------------------------------------------------
# loading / listing
# --------------------------------------------------------------------------------------


def _pretrained_checkpoint() -> Checkpoint:
    return Checkpoint(None, {
        "name": PRETRAINED, "variant": "pretrained", "base": "all-MiniLM-L6-v2 (packaged)",
        "encoder": PRETRAINED, "dataset": None, "participants": [], "seeds": [], "folds": [],
        "simulated": None, "created": None, "fits": [], "predictions": {},
    })


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``card.json`` of a checkpoint folder."""
    folder = Path(path)
    card_path = folder / CARD
    if not folder.is_dir():
        raise CheckpointError("checkpoint folder not found", file=folder)
    if not card_path.is_file():
        raise CheckpointError("card missing (is this a brainviz checkpoint?)", file=card_path)
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not valid JSON ({exc})", file=card_path) from None
    if not isinstance(card, dict):
        raise CheckpointError("must be a JSON object", file=card_path)
    for key in REQUIRED_CARD_FIELDS:
        if key not in card:
            raise CheckpointError("required field missing", file=card_path, field=key)
    if card["format"] != FORMAT_VERSION:
        raise CheckpointError(f"unsupported format {card['format']!r} (this brainviz reads {FORMAT_VERSION})", file=card_path, field="format")
    if not isinstance(card["dataset"], dict):
        raise CheckpointError("must be an object", file=card_path, field="dataset")
    for key in REQUIRED_DATASET_FIELDS:
        if key not in card["dataset"]:
            raise CheckpointError("required field missing", file=card_path, field=f"dataset.{key}")
    if not isinstance(card["fits"], list) or not card["fits"]:
        raise CheckpointError("must be a non-empty list", file=card_path, field="fits")
    for i, fit in enumerate(card["fits"]):
        for key in REQUIRED_FIT_FIELDS:
            if not isinstance(fit, dict) or key not in fit:
                raise CheckpointError("required field missing", file=card_path, field=f"fits[{i}].{key}")
    return card


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> Checkpoint:
    """Open a checkpoint by folder, store name, or ``"pretrained"``.

    With ``verify`` every file the card lists is checked to exist and be complete (headers
    only; cheap). Raises :class:`CheckpointError` naming the file and field.
    """
    if str(path) == PRETRAINED:
        return _pretrained_checkpoint()
    folder = Path(path)
    if not folder.is_dir() and (paths.models_dir() / str(path)).is_dir():
        folder = paths.models_dir() / str(path)
    card = read_card(folder)
    ckpt = Checkpoint(folder, card)
    if verify:
        _verify_files(ckpt)
    return ckpt


def _verify_files(ckpt: Checkpoint) -> None:
    assert ckpt.path is not None
    card_path = ckpt.path / CARD
    if ckpt.card["encoder"] != ckpt.base:
        enc = ckpt.path / ckpt.card["encoder"]
        if not (enc / "config.json").is_file():
            raise CheckpointError("encoder config missing", file=enc / "config.json", field="encoder")
        check_safetensors(enc / "model.safetensors", "encoder")
    check_safetensors(ckpt.path / "heads.safetensors", "heads")
    for i, fit in enumerate(ckpt.fits):
        check_safetensors(ckpt.path / fit["heads"], f"fits[{i}].heads")
        if fit["encoder"] != BASE_ENCODER:
            check_safetensors(ckpt.path / fit["encoder"] / "model.safetensors", f"fits[{i}].encoder")
    table = ckpt.card["predictions"]
    if not isinstance(table, dict):
        raise CheckpointError("must be an object", file=card_path, field="predictions")
    for seed_key, per_pid in table.items():
        for pid, rel in per_pid.items():
            if not (ckpt.path / rel).is_file():
                raise CheckpointError("file missing", file=ckpt.path / rel, field=f"predictions.{seed_key}.{pid}")
    for found in ckpt.path.rglob("*"):
        if found.suffix in (".pkl", ".pickle", ".pt", ".bin", ".pth"):
            raise CheckpointError("pickle-based file in a checkpoint (only safetensors/JSON/npz allowed)", file=found)


def list_checkpoints(root: str | os.PathLike | None = None, include_pretrained: bool = True) -> list[dict[str, Any]]:
    """Summaries of the store's checkpoints (``pretrained`` first), newest last.

    Folders that are not valid checkpoints are listed with an ``error`` entry instead of
    raising, so one broken folder does not hide the others. ``*.partial`` folders (training
    in progress or interrupted) are listed with variant ``(partial)``.
    """
    root = Path(root) if root is not None else paths.models_dir()
    rows = [_pretrained_checkpoint().summary()] if include_pretrained else []
    if not root.is_dir():
        return rows
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name.endswith(".partial"):
            found.append({"name": folder.name, "variant": "(partial)", "base": None, "dataset": None,
                          "participants": [], "simulated": None, "created": None, "path": str(folder)})
            continue
        if not (folder / CARD).is_file():
            continue
        try:
            found.append(Checkpoint(folder, read_card(folder)).summary())
        except CheckpointError as exc:
            found.append({"name": folder.name, "variant": "?", "base": None, "dataset": None, "participants": [],
                          "simulated": None, "created": None, "path": str(folder), "error": str(exc)})
    found.sort(key=lambda r: (r.get("created") or "", r["name"]))
    return rows + found

