"""Finishing a training job: merge held-out predictions, write ``card.json``, publish.

The partial folder's per-fold predictions are merged per (seed, participant), sorted by
``tr_index`` and stored float16 when safe (:mod:`brainviz.models.weights`); identical files
(a participant-shared head predicts the same for everyone) are hard links of one file. The
card lists every fit; with ``keep_weights="first"`` (the ``quick`` preset) only the fits of
each seed's first fold keep their weights on disk (the others' held-out predictions are all
evaluation needs), which keeps the default pair small. Publishing hard-links the finished
files into a temporary sibling that :func:`brainviz._io.atomic_dir` renames onto ``out``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from brainviz._io import atomic_dir, content_hash, write_json
from brainviz.data.dataset import Dataset
from brainviz.tuning._loop import FIT_INFO
from brainviz.tuning._state import PROGRESS, STATE_DIR

CARD_FORMAT = 2


def versions() -> dict[str, str]:
    import importlib.metadata as md

    import brainviz

    out = {"python": platform.python_version(), "brainviz": brainviz.__version__}
    for pkg in ("torch", "transformers", "peft", "safetensors", "numpy", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def dataset_hash(dataset: Dataset) -> str:
    """Content hash of a dataset folder's manifest, stimulus and arrays (memoised per file)."""
    from brainviz.cache import cached_file_hash

    if dataset.path is None:
        parts = [dataset.stimulus.to_csv(index=False)]
        parts += [np.asarray(r.data) for r in dataset.fmri.values()] + [np.asarray(r.data) for r in dataset.meg.values()]
        return content_hash(*parts)
    root = Path(dataset.path)
    files = [root / "dataset.json", root / "stimulus.tsv"]
    files += sorted((root / "fmri").glob("*.npy")) + sorted((root / "meg").glob("*.npy"))
    return content_hash([(str(f.relative_to(root)), cached_file_hash(f)) for f in files if f.is_file()])


def roi_card(spec: str | None, units: np.ndarray | None) -> dict[str, Any] | None:
    """The card's ``roi_mask`` entry: the spec and unit count, plus, for ``glasser:PATH[:SET]``,
    the resolved ROI set, its parcels, the atlas file read and the vertices per hemisphere."""
    if units is None:
        return None
    out: dict[str, Any] = {"file": str(spec), "n_units": int(len(units))}
    from brainviz.tuning.data import glasser_roi, is_glasser_spec

    if is_glasser_spec(spec):
        out.update(glasser_roi(str(spec), None).card())
    return out


def fold_prediction_path(partial: Path, seed: int, pid: str, fold: str) -> Path:
    return partial / "preds" / f"seed-{seed}" / pid / f"fold-{fold}.npz"


def kept_fits(job) -> set[str]:
    """Fit ids whose weights the published checkpoint keeps."""
    if job.config.setting("keep_weights") == "all":
        return {f.id for f in job.plan}
    first_fold = {}
    for f in job.plan:
        first_fold.setdefault(f.seed, f.fold)
    return {f.id for f in job.plan if f.fold == first_fold[f.seed]}


def write_checkpoint(job, progress: dict[str, Any]) -> Path:
    """Merge predictions, write the card into ``job.partial`` and publish it as ``job.out``."""
    from brainviz.models.weights import save_predictions

    cfg = job.config
    p = job.partial
    metrics: dict[str, Any] = {"pearson_r": {}}
    table: dict[str, dict[str, str]] = {}
    all_means = []
    links: dict[str, str] = {}
    for seed in cfg.seeds:
        seed_key = f"seed-{seed}"
        for pid in job.participants:
            parts = []
            for fold in job.folds:
                with np.load(fold_prediction_path(p, seed, pid, fold), allow_pickle=False) as npz:
                    parts.append({k: npz[k] for k in npz.files})
            preds = np.concatenate([x["predictions"] for x in parts])
            tr_index = np.concatenate([x["tr_index"] for x in parts])
            runs = np.concatenate([x["run"] for x in parts])
            order = np.argsort(tr_index, kind="stable")
            rel = f"predictions/{seed_key}/{pid}.npz"
            units = job.units if job.units is not None else np.arange(preds.shape[1])
            save_predictions(p / rel, preds[order], link_cache=links, dtype=cfg.setting("predictions_dtype"),
                             tr_index=tr_index[order],
                             run=runs[order].astype(str), units=units.astype(np.int64))
            table.setdefault(seed_key, {})[pid] = rel
            per_fold = {fold: float(np.nanmean(x["r"])) for fold, x in zip(job.folds, parts)}
            mean = float(np.mean(list(per_fold.values())))
            all_means.append(mean)
            metrics["pearson_r"].setdefault(seed_key, {})[pid] = {"mean": mean, "folds": per_fold}
    metrics["mean_pearson_r"] = float(np.mean(all_means)) if all_means else None
    metrics["description"] = "held-out Pearson r per unit, averaged over units, then over folds"

    keep = kept_fits(job)
    fits, changes = [], []
    for f in job.plan:
        info_path = p / "fits" / f.id / FIT_INFO
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        ref = job.encoder_ref(f)
        kept = f.id in keep and (ref is None or ref in keep)
        entry = {
            "group": f.group, "fold": f.fold, "seed": f.seed, "fmri": list(f.fmri), "meg": list(f.meg),
            "stages": [dataclasses.asdict(s) for s in f.stages], "init": f.init, "predicts": list(f.predicts),
            "encoder": (f"fits/{ref}/encoder" if ref else "base") if kept else None,
            "heads": f"fits/{f.id}/heads.safetensors" if kept else None,
            "weights_kept": kept,
        }
        if "encoder_change" in info:
            entry["encoder_change"] = info["encoder_change"]
            changes.append(info["encoder_change"])
        fits.append(entry)
    if changes:
        metrics["encoder_change"] = {
            "relative_l2_mean": float(np.mean([c["relative_l2"] for c in changes])),
            "relative_l2_trained_mean": float(np.mean([c["relative_l2_trained"] for c in changes])),
            "description": "||theta - theta_0|| / ||theta_0|| of the encoder after training, over all its tensors "
                           "and over the tensors training changed; mean over fits",
        }

    first = next((f for f in job.plan if f.predicts), job.plan[0])
    first_ref = job.encoder_ref(first)
    (p / "heads.safetensors").unlink(missing_ok=True)
    _link_or_copy(str(p / "fits" / first.id / "heads.safetensors"), str(p / "heads.safetensors"))
    ds = job.dataset
    card = {
        "format": CARD_FORMAT,
        "name": job.out.name,
        "variant": cfg.variant,
        "base": cfg.base,
        "encoder": f"fits/{first_ref}/encoder" if first_ref is not None else cfg.base,
        "heads": "heads.safetensors",
        "dataset": {"name": ds.name, "path": str(Path(ds.path).resolve()) if ds.path else None, "hash": dataset_hash(ds)},
        "simulated": bool(ds.simulated),
        "participants": list(job.participants),
        "meg_participants": list(job.meg_participants),
        "folds": list(job.folds),
        "seeds": [int(s) for s in cfg.seeds],
        "train_config": cfg.resolved(),
        "head_mode": job.head_mode,
        "pooling": job.pooling,
        "preprocess": job.pre.to_dict(),
        "roi_mask": roi_card(cfg.roi_mask, job.units),
        "stimulus_targets": getattr(job, "stimulus_info", None),  # issue 15: stimulus-tuned
        "shuffle_targets": bool(cfg.shuffle_targets),
        "shuffle_encoder_targets": bool(cfg.shuffle_encoder_targets),
        "transfer_source": progress.get("sources"),
        "weights": {"encoder": "float16 delta from the base model (changed tensors only)", "heads": "float16",
                    "predictions": cfg.setting("predictions_dtype"),
                    "kept": cfg.setting("keep_weights")},
        "fits": fits,
        "predictions": table,
        "metrics": metrics,
        "train_seconds": progress.get("train_seconds"),
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(p / "card.json", card)
    dropped = {f.id for f in job.plan} - keep

    def ignore(folder: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in (PROGRESS, STATE_DIR, "preds")}
        rel = Path(folder).relative_to(p).as_posix()
        for n in names:
            if f"{rel}/{n}".removeprefix("fits/") in dropped and rel.startswith("fits"):
                out.add(n)
        return out

    # The partial folder stays intact until the rename, so a kill here loses nothing.
    with atomic_dir(job.out, overwrite=cfg.overwrite) as tmp:
        shutil.copytree(p, tmp, copy_function=_link_or_copy, dirs_exist_ok=True, ignore=ignore)
        _prune_empty(tmp / "fits")
    shutil.rmtree(p, ignore_errors=True)
    return job.out


def _prune_empty(folder: Path) -> None:
    if not folder.is_dir():
        return
    for d in sorted((x for x in folder.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
        if not any(d.iterdir()):
            d.rmdir()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
