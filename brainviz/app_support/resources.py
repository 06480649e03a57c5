"""Cached loaders of the app: datasets, ground truth, checkpoints, encoders, atlases, meshes.

``st.cache_resource`` holds shared objects (datasets are memory-mapped, encoders are torch
modules, meshes are read-only arrays); ``st.cache_data`` holds small derived tables. Keys
include file modification times, so a rebuilt dataset or a new checkpoint is picked up.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import streamlit as st

from brainviz import paths

DATASETS_ENV = "BRAINVIZ_DATASETS"  # extra folders (os.pathsep-separated) searched for datasets


# --------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------


def dataset_roots() -> list[Path]:
    roots = [paths.cache_dir() / "datasets"]
    extra = os.environ.get(DATASETS_ENV, "")
    roots += [Path(p) for p in extra.split(os.pathsep) if p]
    return roots


def discover_datasets() -> dict[str, Path]:
    """``{key: folder}`` of every dataset (a folder with ``dataset.json``) up to two levels
    below the dataset roots; keys are paths relative to their root (``simulated-default/reading``)."""
    found: dict[str, Path] = {}
    for root in dataset_roots():
        if not root.is_dir():
            continue
        if (root / "dataset.json").is_file():
            found.setdefault(root.name, root)
            continue
        for level1 in sorted(root.iterdir()):
            if level1.name.startswith(".") or not level1.is_dir():
                continue
            if (level1 / "dataset.json").is_file():
                found.setdefault(level1.name, level1)
                continue
            for level2 in sorted(level1.iterdir()):
                if level2.name.startswith(".") or not level2.is_dir():
                    continue
                if (level2 / "dataset.json").is_file():
                    found.setdefault(f"{level1.name}/{level2.name}", level2)
    return found


def _mtime(path: Path) -> float:
    try:
        return (path / "dataset.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def _dataset(path: str, mtime: float):
    from brainviz.data.dataset import load_dataset

    return load_dataset(path, check_values=False)


def dataset(path: str | Path):
    """The loaded (memory-mapped) dataset at ``path``."""
    return _dataset(str(path), _mtime(Path(path)))


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(path: str, mtime: float) -> dict[str, Any]:
    """``Dataset.summary()`` read from ``dataset.json`` and ``stimulus.tsv`` only: the sidebar and
    Home need it on every first page, and loading a dataset imports pandas and scipy (seconds).
    Falls back to loading the dataset when the manifest is not the expected shape."""
    import csv
    import json

    root = Path(path)
    try:
        man = json.loads((root / "dataset.json").read_text())
        fmri = (man.get("participants") or {}).get("fmri") or {}
        meg = (man.get("participants") or {}).get("meg") or {}
        stories: dict[str, None] = {}
        runs: dict[str, None] = {}
        n_words = 0
        with open(root / man.get("stimulus", "stimulus.tsv"), newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                n_words += 1
                stories.setdefault(str(row["story"]), None)
                runs.setdefault(str(row["run"]), None)
        trs = {float(e["tr"]) for e in fmri.values()}
        units = sorted({int(e["shape"][1]) for e in fmri.values() if "shape" in e})
        out = {
            "name": man["name"], "simulated": bool(man["simulated"]), "modality": man.get("modality", "reading"),
            "participants": list(fmri), "meg_participants": list(meg),
            "n_fmri_participants": len(fmri), "n_meg_participants": len(meg), "n_runs": len(runs),
            "tr": trs.pop() if len(trs) == 1 else None,
            "space": (man.get("space") or {}).get("kind"),
            "n_units": units[0] if len(units) == 1 else (units or None), "n_words": n_words, "stories": list(stories),
            "runs_table": [{"participant": pid, "run": r["name"], "n_trs": int(r["n_trs"]), "tr": float(e["tr"]),
                            "start": float(r.get("start", 0.0))} for pid, e in fmri.items() for r in e["runs"]],
        }
    except (OSError, KeyError, TypeError, ValueError):
        ds = _dataset(path, mtime)
        out = ds.summary()
        out["runs_table"] = [
            {"participant": pid, "run": r.name, "n_trs": r.n_trs, "tr": rec.tr, "start": r.start}
            for pid, rec in ds.fmri.items() for r in rec.runs
        ]
    out["path"] = path
    out["has_ground_truth"] = (root / "ground_truth").is_dir()
    return out


def summary(path: str | Path) -> dict[str, Any]:
    return _summary(str(path), _mtime(Path(path)))


@st.cache_resource(show_spinner=False, max_entries=4)
def _ground_truth(path: str, mtime: float) -> dict[str, Any]:
    from brainviz.data.simulate import load_ground_truth

    return load_ground_truth(path)


def ground_truth(path: str | Path) -> dict[str, Any] | None:
    """The planted ground truth of a simulated dataset, or None."""
    if not (Path(path) / "ground_truth").is_dir():
        return None
    return _ground_truth(str(path), _mtime(Path(path)))


@st.cache_resource(show_spinner=False, max_entries=16)
def _examples(path: str, mtime: float, participant: str, preprocess: tuple):
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples

    return fmri_examples(_dataset(path, mtime), participant, PreprocessConfig.from_dict(dict(preprocess)))


def examples(path: str | Path, participant: str, preprocess: dict | None = None):
    """Preprocessed fMRI examples (targets + word windows); do not modify the result."""
    return _examples(str(path), _mtime(Path(path)), participant, tuple(sorted((preprocess or {}).items())))


# --------------------------------------------------------------------------------------
# checkpoints and encoders
# --------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, ttl=3)
def _checkpoints(root: str, stamp: float) -> list[dict[str, Any]]:
    from brainviz.models.store import list_checkpoints

    return list_checkpoints(root)


def checkpoints() -> list[dict[str, Any]]:
    """``list_checkpoints()`` rows (``pretrained`` first), refreshed when the store changes."""
    root = paths.models_dir()
    try:
        stamp = max([root.stat().st_mtime] + [p.stat().st_mtime for p in root.iterdir()]) if root.is_dir() else 0.0
    except OSError:
        stamp = 0.0
    return _checkpoints(str(root), stamp)


def comparable_models() -> dict[str, str]:
    """``{name: folder}`` of checkpoints with held-out predictions (usable on Compare)."""
    out = {}
    for row in checkpoints():
        if row.get("error") or row.get("variant") in ("(partial)", "pretrained") or not row.get("path"):
            continue
        if (Path(row["path"]) / "predictions").is_dir():
            out[row["name"]] = row["path"]
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def card(path: str, stamp: float = 0.0) -> dict[str, Any] | None:
    import json

    f = Path(path) / "card.json"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def encoder_models() -> dict[str, str]:
    """``{label: model source}`` of models whose attention can be read (pretrained, checkpoints,
    models loaded on the Models page)."""
    out = {"pretrained": "pretrained"}
    for row in checkpoints():
        if row.get("error") or row.get("variant") == "(partial)" or row["name"] == "pretrained":
            continue
        if _speech_checkpoint(row["path"]):  # no [CLS] attention in a speech encoder (train --modality audio)
            continue
        out[row["name"]] = row["path"]
    for label, src in st.session_state.get("extra_models", {}).items():
        out.setdefault(label, src)
    return out


def _speech_checkpoint(path: str) -> bool:
    """True for a speech brain-tuning checkpoint (its card's ``train_config.modality`` is audio)."""
    from brainviz.models.store import read_card

    try:  # the rule of brainviz.models.speech.is_speech_checkpoint, without importing torch here
        return (read_card(Path(path)).get("train_config") or {}).get("modality") == "audio"
    except Exception:  # an unreadable card is reported by the checkpoint listing, not here
        return False


@st.cache_resource(show_spinner=False, max_entries=6)
def encoder(source: str):
    """``(model, tokenizer)`` with eager attention (shared by all sessions)."""
    from brainviz.models.encoder import load_encoder

    return load_encoder(source)


@st.cache_resource(show_spinner=False, max_entries=8)
def checkpoint(path: str):
    from brainviz.models.store import load_checkpoint

    return load_checkpoint(path, verify=False)


# --------------------------------------------------------------------------------------
# atlases and meshes
# --------------------------------------------------------------------------------------


def atlas_files() -> dict[str, Path]:
    """Atlases saved by ``python -m brainviz fetch atlas NAME --dest <cache>/atlases``."""
    root = paths.cache_dir() / "atlases"
    if not root.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(root.glob("*/atlas.npz"))}


@st.cache_resource(show_spinner=False, max_entries=8)
def _atlas(kind: str, path: str, mtime: float):
    from brainviz.data import atlases

    if kind == "simulated":
        return atlases.simulated_atlas(path, include_networks=True)
    return atlases.Atlas.load(path)


def atlas_options(dataset_path: str | Path | None) -> list[str]:
    opts = ["none"]
    if dataset_path is not None and (Path(dataset_path) / "ground_truth").is_dir():
        opts.append("planted regions")
    opts += sorted(atlas_files())
    return opts


def atlas(name: str, dataset_path: str | Path | None):
    """The atlas behind an :func:`atlas_options` entry (None for ``none``)."""
    if name == "none":
        return None
    if name == "planted regions":
        return _atlas("simulated", str(dataset_path), _mtime(Path(dataset_path)))
    f = atlas_files().get(name)
    if f is None:
        return None
    return _atlas("file", str(f), f.stat().st_mtime)


#: Modules the analysis pages import on first use (brainviz.data alone: ~1.5 s, scipy.signal + pandas).
WARM_UP_MODULES = ("brainviz.data", "brainviz.evaluation.compare", "brainviz.app_support.compute", "brainviz.viz.cortex",
                   "brainviz.viz.flatmap", "brainviz.viz.curves", "brainviz.viz.heldout", "brainviz.viz.montage")


WARM_UP_DELAY_S = 3.0


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Once per server process, after its first run: import what the analysis pages need and draw
    one throwaway montage (meshes and look-ups from the disk cache, fonts, the medial-wall mask) in
    a background thread.

    Without it the first page that needs them pays: a shared Compare link opened on a restarted
    server spent 1.9 s importing ``brainviz.data`` (for the planted-regions outline) and 0.35–0.6 s
    on its first montage before the montage was sent. Not the text encoders (torch, ~0.4 GB): only
    the Attention page and jobs need them.
    """
    # started a little later: the browser is still drawing that first page, and the imports would
    # hold the GIL the server needs to send it and take a core the browser draws with
    thread = threading.Timer(WARM_UP_DELAY_S, _warm_up)
    thread.name, thread.daemon = "brainviz-warm-up", True
    thread.start()
    return thread


def _warm_up() -> None:
    import importlib
    import logging

    try:
        for name in WARM_UP_MODULES:
            importlib.import_module(name)
        import numpy as np

        from brainviz import surface
        from brainviz.viz import montage

        # loads the meshes and the views' look-ups, the fonts and the medial-wall mask (0.23 s alone)
        montage.montage_jpeg(np.zeros(surface.N_VERTICES), outline=np.zeros(surface.N_VERTICES, dtype=np.int32),
                             title="warm-up", colorbar_title="warm-up", simulated=True)
    except Exception:  # noqa: BLE001 - a warm-up must never break the app; the page will say what is wrong
        logging.getLogger(__name__).debug("warm-up failed", exc_info=True)


@st.cache_resource(show_spinner=False)
def meshes_ready() -> bool:
    """Load the fsaverage5 meshes once per server (builds the cache file on first use)."""
    from brainviz.viz import _mesh, montage

    _mesh.prewarm()
    montage.prewarm()  # the static montage's per-view pixel look-ups (about a second, cached on disk)
    return True


@st.cache_data(show_spinner=False, max_entries=32)
def _checkpoint_headline(path: str, stamp: float, dataset_path: str | None, ds_stamp: float) -> dict[str, Any]:
    import numpy as np

    from brainviz.app_support import compute

    r = compute.heldout_r_by_run(path, dataset=dataset_path)
    mask, label = None, None
    if dataset_path and (Path(dataset_path) / "ground_truth").is_dir():
        gt = _ground_truth(dataset_path, ds_stamp)
        if "planted_mask" in gt:
            mask, label = np.asarray(gt["planted_mask"], dtype=bool), "planted language regions (simulated ground truth)"
    return compute.headline_metrics(r, mask, label)


def checkpoint_headline(path: str | Path, dataset_path: str | Path | None = None) -> dict[str, Any]:
    """:func:`brainviz.app_support.compute.headline_metrics` of a checkpoint's held-out
    predictions (cached per card and dataset version; with the planted regions as ROI when
    the dataset is simulated)."""
    stamp = (Path(path) / "card.json").stat().st_mtime
    ds = str(dataset_path) if dataset_path and (Path(dataset_path) / "dataset.json").is_file() else None
    return _checkpoint_headline(str(path), stamp, ds, _mtime(Path(ds)) if ds else 0.0)
