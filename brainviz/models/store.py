"""The checkpoint store: one folder per trained model under :func:`brainviz.paths.models_dir`.

Layout (see ``docs/checkpoints.md`` for the full description)::

    <name>/
      card.json                       what was trained, on what, how, with which results
      heads.safetensors               heads of the first fold/seed's fit (hard link)
      fits/<group>/fold-<run>/seed-<S>/
          encoder/model.safetensors   only where the encoder was tuned in that fit: float16
                                      deltas from the base (format 2, models/weights.py)
          heads.safetensors           float16 (format 2) or float32 (format 1)
      predictions/seed-<S>/<participant>.npz   held-out predictions, tr_index, run

Format 1 checkpoints also have ``encoder/`` (a Hugging Face folder of the first fit's
encoder) and full float32 fit encoders; both formats are read.

Everything is safetensors, JSON or ``.npz`` without object arrays: nothing is ever unpickled.
A corrupt or incomplete checkpoint raises :class:`CheckpointError` naming the file and field.
Every path in ``card.json`` must stay inside the checkpoint folder, participant ids must be safe
file names, and the shapes of the heads are checked against their spec from the safetensors
header before anything is allocated.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from brainviz import paths
from brainviz._io import check_safe_id, confined
from brainviz.errors import BrainvizError, CheckpointError
from brainviz.models.encoder import PRETRAINED, load_encoder

CARD = "card.json"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: full float32 fit encoders + top-level encoder/ copy; 2: lean (models/weights.py)
REQUIRED_CARD_FIELDS = (
    "format", "name", "variant", "base", "encoder", "dataset", "simulated", "participants",
    "folds", "seeds", "train_config", "preprocess", "versions", "metrics", "created", "fits",
    "predictions",
)
REQUIRED_DATASET_FIELDS = ("name", "path", "hash")
REQUIRED_FIT_FIELDS = ("group", "fold", "seed", "encoder", "heads", "predicts")
PREDICTION_ARRAYS = ("predictions", "tr_index", "run")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".bin", ".pth", ".ckpt")
BASE_ENCODER = "base"  # value of a fit's "encoder" when the base encoder was not changed
MAX_CARD_BYTES = 64 << 20
MAX_HEAD_PARAMS = 200_000_000  # ~800 MB of float32: larger heads are refused before allocating


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
    if not isinstance(header, dict):
        raise CheckpointError("not a readable safetensors file (header is not a JSON object)", file=path, field=field)
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError("not a readable safetensors file (bad tensor entry in the header)", file=path, field=field) from None
    if 8 + n + end > size:
        raise CheckpointError(f"truncated: data needs {8 + n + end} bytes, file has {size}", file=path, field=field)
    if 8 + n + end < size:
        raise CheckpointError(f"corrupt: {size - 8 - n - end} bytes after the last tensor", file=path, field=field)
    return header


def heads_shapes(spec: Any, file: Any = None, field: str = "heads") -> dict[str, tuple[int, ...]]:
    """Tensor shapes a heads spec (see :meth:`BrainHeads.spec`) implies, checked for type and size.

    Raises :class:`CheckpointError` for a malformed spec or one above :data:`MAX_HEAD_PARAMS`
    parameters, without allocating anything.
    """

    def ints(value: Any, name: str) -> list[int]:
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise CheckpointError(f"spec.{name} must be a non-empty list of positive integers, got {value!r:.80}", file=file, field=field)
        return value

    def names(value: Any, name: str, n: int) -> None:
        if not isinstance(value, list) or len(value) != n or not all(isinstance(v, str) for v in value) or len(set(value)) != n:
            raise CheckpointError(f"spec.{name} must be {n} distinct names, got {value!r:.80}", file=file, field=field)

    if not isinstance(spec, dict) or not (spec.get("fmri") or spec.get("meg")):
        raise CheckpointError("spec must be an object with an 'fmri' and/or 'meg' head", file=file, field=field)
    hidden = spec.get("hidden")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or not 0 < hidden <= 65536:
        raise CheckpointError(f"spec.hidden must be an integer in [1, 65536], got {hidden!r:.40}", file=file, field=field)
    shapes: dict[str, tuple[int, ...]] = {}
    if spec.get("fmri"):
        f = spec["fmri"]
        if not isinstance(f, dict):
            raise CheckpointError("spec.fmri must be an object", file=file, field=field)
        sizes = ints(f.get("n_units"), "fmri.n_units")
        names(f.get("participants"), "fmri.participants", len(sizes))
        mode = f.get("mode", "split")
        if mode not in ("split", "shared", "shared+split") or (mode != "split" and len(set(sizes)) != 1):
            raise CheckpointError(f"spec.fmri.mode {mode!r} does not fit n_units {sizes[:5]}", file=file, field=field)
        n_out = sizes[0] if mode == "shared" else sum(sizes) + (sizes[0] if mode == "shared+split" else 0)
        shapes.update({"fmri.linear.weight": (n_out, hidden), "fmri.linear.bias": (n_out,)})
    if spec.get("meg"):
        m = spec["meg"]
        if not isinstance(m, dict):
            raise CheckpointError("spec.meg must be an object", file=file, field=field)
        sensors, bins = ints(m.get("n_sensors"), "meg.n_sensors"), ints(m.get("n_bins"), "meg.n_bins")
        if len(sensors) != len(bins):
            raise CheckpointError("spec.meg.n_sensors and n_bins differ in length", file=file, field=field)
        names(m.get("participants"), "meg.participants", len(sensors))
        n_out = sum(s * b for s, b in zip(sensors, bins))
        shapes.update({"meg.linear.weight": (n_out, hidden + 2), "meg.linear.bias": (n_out,)})
    n_params = sum(int(np.prod(s, dtype=object)) for s in shapes.values())
    if n_params > MAX_HEAD_PARAMS:
        raise CheckpointError(f"heads of {n_params:,} parameters exceed the limit of {MAX_HEAD_PARAMS:,}", file=file, field=field)
    return shapes


def check_heads_file(path: str | os.PathLike, field: str = "heads") -> dict[str, Any]:
    """:func:`check_safetensors` plus: the header's spec is well-formed and matches the tensors
    stored (names, float32 or float16, shapes), so rebuilding the heads allocates only what the file holds."""
    header = check_safetensors(path, field)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), str):
        raise CheckpointError("'spec' missing from the safetensors metadata", file=path, field=field)
    try:
        spec = json.loads(meta["spec"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"spec in the safetensors metadata is not valid JSON ({exc})", file=path, field=field) from None
    expected = heads_shapes(spec, path, field)
    found = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, shape in expected.items():
        entry = found.get(name)
        if not isinstance(entry, dict) or entry.get("dtype") not in ("F32", "F16") or tuple(entry.get("shape") or ()) != shape:
            got = None if not isinstance(entry, dict) else (entry.get("dtype"), entry.get("shape"))
            raise CheckpointError(f"tensor {name!r} must be F32 or F16 of shape {shape} (from the spec), got {got}", file=path, field=field)
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"unexpected tensors {extra[:5]} (not in the spec)", file=path, field=field)
    return header


def check_base(base: Any, card_path: Any = None) -> str:
    """A card's ``base`` model: ``pretrained``, a store name, a hub id or a relative folder
    without ``..``, or an absolute Hugging Face model folder (with ``config.json``)."""
    if not isinstance(base, str) or not base.strip() or "\x00" in base:
        raise CheckpointError(f"must be a model name, got {base!r:.80}", file=card_path, field="base")
    if base == PRETRAINED:
        return base
    p = Path(base)
    if ".." in p.parts:
        raise CheckpointError(f"{base!r} leaves the folder it is resolved in ('..' is not allowed); use 'pretrained', "
                              "a checkpoint name, a hub id or an absolute model folder", file=card_path, field="base")
    if p.is_absolute() and not ((p / "config.json").is_file() or (p / CARD).is_file()):
        raise CheckpointError(f"{base!r} is not a Hugging Face model folder (no config.json) nor a checkpoint",
                              file=card_path, field="base")
    return base


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = PREDICTION_ARRAYS) -> dict[str, np.ndarray]:
    """Load a prediction file (no pickles) and check it has the required arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("file missing", file=path, field="predictions")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError) as exc:
        raise CheckpointError(f"unreadable .npz (truncated or not written by brainviz: {exc})", file=path, field="predictions") from None
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

    def _resolve(self, rel: str, field: str = "file") -> Path:
        assert self.path is not None
        return confined(self.path, rel, file=self._card_path(), field=field, error=CheckpointError)

    def heads(self, fit: dict[str, Any] | None = None):
        """:class:`~brainviz.models.heads.BrainHeads` of a fit (default: the first fit)."""
        from brainviz.models.heads import BrainHeads

        if self.is_pretrained:
            raise CheckpointError("the pretrained encoder has no heads", field="heads")
        fit = fit or self.fits[0]
        key = self.fits.index(fit)
        if not fit.get("heads"):
            raise CheckpointError(f"the weights of fit {fit.get('group')}/fold-{fit.get('fold')}/seed-{fit.get('seed')} were "
                                  "not kept (train_config.keep_weights = 'first'); only its held-out predictions are stored",
                                  file=self._card_path(), field="fits.heads")
        if key not in self._heads:
            path = self._resolve(fit["heads"], "heads")
            check_heads_file(path, "heads")
            from safetensors import SafetensorError

            try:
                self._heads[key] = BrainHeads.load(path)
            except (ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
                raise CheckpointError(f"cannot rebuild heads ({exc})", file=path, field="heads") from None
        return self._heads[key]

    def encoder_source(self) -> str:
        """Folder or name the encoder architecture + tokenizer come from."""
        if self.is_pretrained:
            return PRETRAINED
        if (self.path / "encoder").is_dir():
            return str(self.path / "encoder")
        if self.card.get("format", 1) >= 2 and self.card["encoder"] not in (self.base, BASE_ENCODER):
            return str(self.path)  # lean format: load_encoder applies the first fit's delta to the base
        return check_base(self.base, self._card_path())

    def encoder(self, device: str = "cpu"):
        """``(model, tokenizer)`` of the top-level encoder (first fold/seed), eager attention."""
        return load_encoder(self.encoder_source(), device=device)

    def fit_encoder(self, fit: dict[str, Any] | None = None, device: str = "cpu"):
        """``(model, tokenizer)`` of the encoder used by one fit."""
        from safetensors import SafetensorError

        from brainviz.models.weights import WeightsError, load_encoder_weights

        lean = not self.is_pretrained and self.card.get("format", 1) >= 2
        # format 2 stores deltas from the base model; format 1 full weights on the top-level encoder's architecture
        source = check_base(self.base, self._card_path()) if lean else self.encoder_source()
        model, tokenizer = load_encoder(source, device="cpu")
        if not self.is_pretrained:
            fit = fit or self.fits[0]
            if fit["encoder"] is None:
                raise CheckpointError(f"the weights of fit {fit.get('group')}/fold-{fit.get('fold')}/seed-{fit.get('seed')} "
                                      "were not kept (train_config.keep_weights = 'first')", file=self._card_path(),
                                      field="fits.encoder")
            if fit["encoder"] != BASE_ENCODER:
                path = self._resolve(fit["encoder"], "encoder") / "model.safetensors"
                check_safetensors(path, "encoder")
                try:
                    load_encoder_weights(model, path)
                except (WeightsError, RuntimeError, KeyError, SafetensorError) as exc:
                    raise CheckpointError(f"cannot apply the encoder weights ({exc})", file=path, field="encoder") from None
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
        return load_npz(self._resolve(table[participant], f"predictions.seed-{seed}.{participant}"))


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
    if card_path.stat().st_size > MAX_CARD_BYTES:
        raise CheckpointError(f"larger than {MAX_CARD_BYTES >> 20} MB: not a card", file=card_path)
    try:
        card = json.loads(card_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"not UTF-8 text ({exc})", file=card_path) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"not valid JSON ({exc})", file=card_path) from None
    if not isinstance(card, dict):
        raise CheckpointError("must be a JSON object", file=card_path)
    for key in REQUIRED_CARD_FIELDS:
        if key not in card:
            raise CheckpointError("required field missing", file=card_path, field=key)
    if card["format"] not in READABLE_FORMATS:
        raise CheckpointError(f"unsupported format {card['format']!r} (this brainviz reads {list(READABLE_FORMATS)})", file=card_path, field="format")
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
    _check_card_types(card, folder, card_path)
    return card


def _check_card_types(card: dict[str, Any], folder: Path, card_path: Path) -> None:
    """Types of the card's fields, and every path in it confined to the checkpoint folder."""

    def fail(field: str, what: str, value: Any) -> None:
        raise CheckpointError(f"must be {what}, got {value!r:.80}", file=card_path, field=field)

    def inside(rel: Any, field: str) -> None:
        confined(folder, rel, file=card_path, field=field, error=CheckpointError)

    for key in ("name", "variant", "encoder"):
        if not isinstance(card[key], str) or not card[key]:
            fail(key, "a non-empty string", card[key])
    check_base(card["base"], card_path)
    if card["created"] is not None and not isinstance(card["created"], str):
        fail("created", "an ISO date string (e.g. 2026-01-31T12:00:00+00:00) or null", card["created"])
    if card["simulated"] is not None and not isinstance(card["simulated"], bool):
        fail("simulated", "true, false or null", card["simulated"])
    for key in ("participants", "folds"):
        if not isinstance(card[key], list) or not all(isinstance(v, str) for v in card[key]):
            fail(key, "a list of strings", card[key])
    for pid in card["participants"]:
        check_safe_id(pid, file=card_path, field="participants")
    if (not isinstance(card["seeds"], list) or not card["seeds"]
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in card["seeds"])):
        fail("seeds", "a non-empty list of integers", card["seeds"])
    if card["encoder"] not in (card["base"], BASE_ENCODER):
        inside(card["encoder"], "encoder")
    for i, fit in enumerate(card["fits"]):
        fld = f"fits[{i}]"
        if fit["heads"] is None and fit["encoder"] is None and card["format"] >= 2:
            pass  # lean format: this fit's weights were not kept (only its held-out predictions)
        else:
            if not isinstance(fit["heads"], str):
                fail(f"{fld}.heads", "a path inside the checkpoint", fit["heads"])
            inside(fit["heads"], f"{fld}.heads")
            if fit["encoder"] != BASE_ENCODER:
                inside(fit["encoder"], f"{fld}.encoder")
        if not isinstance(fit["group"], str) or not isinstance(fit["fold"], str):
            fail(f"{fld}.group/fold", "strings", [fit["group"], fit["fold"]])
        if not isinstance(fit["seed"], int) or isinstance(fit["seed"], bool):
            fail(f"{fld}.seed", "an integer", fit["seed"])
        if not isinstance(fit["predicts"], list) or not all(isinstance(v, str) for v in fit["predicts"]):
            fail(f"{fld}.predicts", "a list of participant ids", fit["predicts"])
    table = card["predictions"]
    if not isinstance(table, dict):
        fail("predictions", "an object {seed-S: {participant: file}}", table)
    for seed_key, per_pid in table.items():
        if not isinstance(per_pid, dict):
            fail(f"predictions.{seed_key}", "an object {participant: file}", per_pid)
        for pid, rel in per_pid.items():
            check_safe_id(pid, file=card_path, field=f"predictions.{seed_key}")
            inside(rel, f"predictions.{seed_key}.{pid}")


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
    if ckpt.card["encoder"] not in (ckpt.base, BASE_ENCODER):
        enc = ckpt._resolve(ckpt.card["encoder"], "encoder")
        if ckpt.card["format"] < 2 and not (enc / "config.json").is_file():
            raise CheckpointError("encoder config missing", file=enc / "config.json", field="encoder")
        check_safetensors(enc / "model.safetensors", "encoder")
    check_heads_file(ckpt.path / "heads.safetensors", "heads")
    for i, fit in enumerate(ckpt.fits):
        if fit["heads"] is None and fit["encoder"] is None:  # weights not kept (keep_weights = first)
            continue
        check_heads_file(ckpt._resolve(fit["heads"], f"fits[{i}].heads"), f"fits[{i}].heads")
        if fit["encoder"] != BASE_ENCODER:
            check_safetensors(ckpt._resolve(fit["encoder"], f"fits[{i}].encoder") / "model.safetensors", f"fits[{i}].encoder")
    table = ckpt.card["predictions"]
    if not isinstance(table, dict):
        raise CheckpointError("must be an object", file=card_path, field="predictions")
    for seed_key, per_pid in table.items():
        for pid, rel in per_pid.items():
            if not ckpt._resolve(rel, f"predictions.{seed_key}.{pid}").is_file():
                raise CheckpointError("file missing", file=ckpt.path / rel, field=f"predictions.{seed_key}.{pid}")
    for found in ckpt.path.rglob("*"):
        if found.suffix in PICKLE_SUFFIXES:
            raise CheckpointError("pickle-based file in a checkpoint: brainviz never unpickles (only safetensors, JSON "
                                  "and .npz are loaded); remove it or convert it to safetensors", file=found)


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
        except BrainvizError as exc:
            found.append({"name": folder.name, "variant": "?", "base": None, "dataset": None, "participants": [],
                          "simulated": None, "created": None, "path": str(folder), "error": str(exc)})
    found.sort(key=lambda r: (str(r.get("created") or ""), str(r["name"])))
    return rows + found

