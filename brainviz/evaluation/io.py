"""Reading held-out predictions and the matching targets.

Held-out predictions live in a checkpoint folder (or in a plain folder of the same layout)::

    <ckpt>/card.json                                  (optional for a plain folder)
    <ckpt>/predictions/seed-<S>/<participant>.npz     arrays: predictions float32 (n_rows, n_units)
                                                              tr_index int64 (n_rows,)
                                                              run str (n_rows,)
                                                              units int64 (n_units,), optional:
                                                              the recording's columns predicted
                                                              (a model trained on an ROI mask)

A plain folder may also hold the ``seed-<S>/`` folders directly. ``tr_index`` gives the row of
each prediction in the participant's *full* fMRI recording; the targets are that recording after
:func:`brainviz.data.preprocess.fmri_examples` (with the card's ``preprocess`` config), or come
from a ``--targets`` ``.npz`` file (see :func:`load_targets_file`).

Cache keys are built from content hashes of the files, memoised by (path, size, mtime) with
:func:`brainviz.cache.cached_file_hash`, so a repeated request never re-reads the arrays.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from brainviz import paths
from brainviz._io import content_hash
from brainviz.errors import HeldOutError, InputNotFoundError

SEED_DIR = re.compile(r"^seed-(-?\d+)$")
TR_INDEX_SUFFIX = "__tr_index"


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint/prediction folder from a path, or a model name in the checkpoint store."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    candidate = paths.models_dir() / str(name_or_path)
    if candidate.is_dir():
        return candidate
    raise InputNotFoundError(f"{name_or_path}: no such model folder (nor {candidate})")


def scan_heldout(path: str | os.PathLike) -> dict[str, Any]:
    """List the prediction files of a checkpoint or prediction folder without reading them.

    Returns
    -------
    dict with ``path`` (Path), ``card`` (dict or None), ``seeds`` (sorted ints),
    ``participants`` (those with a file for every seed, in sorted order) and ``files``
    ({participant: {seed: Path}}).
    """
    root = resolve_model(path)
    card_path = root / "card.json"
    card = None
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise HeldOutError(f"{card_path}: not valid UTF-8 JSON ({exc})") from None
        if not isinstance(card, dict):
            raise HeldOutError(f"{card_path}: must be a JSON object")
        for key, types, what in (("dataset", (dict,), "an object"), ("preprocess", (dict,), "an object"),
                                 ("simulated", (bool,), "true or false")):
            if card.get(key) is not None and not isinstance(card[key], types):
                raise HeldOutError(f"{card_path}: field '{key}': must be {what}, got {card[key]!r:.60}")
        path_entry = (card.get("dataset") or {}).get("path")
        if path_entry is not None and not isinstance(path_entry, str):
            raise HeldOutError(f"{card_path}: field 'dataset.path': must be a string, got {path_entry!r:.60}")
    pred_root = root / "predictions" if (root / "predictions").is_dir() else root
    seeds: dict[int, Path] = {}
    for child in sorted(pred_root.iterdir()):
        m = SEED_DIR.match(child.name)
        if m and child.is_dir():
            seeds[int(m.group(1))] = child
    if not seeds:
        raise HeldOutError(f"{pred_root}: no seed-<S>/ folders with held-out predictions")
    files: dict[str, dict[int, Path]] = {}
    for seed, folder in sorted(seeds.items()):
        for f in sorted(folder.glob("*.npz")):
            files.setdefault(f.stem, {})[seed] = f
    complete = sorted(pid for pid, by_seed in files.items() if len(by_seed) == len(seeds))
    if not complete:
        raise HeldOutError(f"{pred_root}: no participant has predictions for every seed {sorted(seeds)}")
    return {"path": root, "card": card, "seeds": sorted(seeds), "participants": complete,
            "files": {pid: files[pid] for pid in complete}}


def heldout_key(scan: dict[str, Any], participants: Sequence[str]) -> str:
    """Content key of the prediction files of ``participants`` (memoised file hashes)."""
    from brainviz.cache import cached_file_hash

    parts = []
    for pid in participants:
        parts.append([pid, [[seed, cached_file_hash(f)] for seed, f in sorted(scan["files"][pid].items())]])
    return content_hash("heldout", parts)


def load_heldout(path: str | os.PathLike, participants: Sequence[str] | None = None) -> dict[str, Any]:
    """Read the held-out predictions of a checkpoint folder or a plain prediction folder.

    Parameters
    ----------
    path : path or model name
        Checkpoint folder (``card.json`` + ``predictions/``) or a folder of ``seed-<S>/``
        folders (or one that holds ``predictions/``), or a name in the checkpoint store.
    participants : list of str, optional
        Only these (all must be present).

    Returns
    -------
    dict with keys

    ``path`` (Path), ``card`` (dict or None), ``seeds`` (list of int), ``participants``,
    ``predictions`` {participant: float32 (n_seeds, n_rows, n_units)},
    ``tr_index`` {participant: int64 (n_rows,)}, ``runs`` {participant: str (n_rows,)},
    ``files`` {participant: {seed: Path}}.

    Raises
    ------
    HeldOutError
        Missing arrays, mismatched shapes, or seeds that disagree on ``tr_index``/``run``.
    """
    scan = scan_heldout(path)
    pids = select_participants(scan, participants)
    out: dict[str, Any] = {**scan, "participants": pids, "files": {p: scan["files"][p] for p in pids},
                           "predictions": {}, "tr_index": {}, "runs": {}, "units": {}}
    for pid in pids:
        preds = []
        tr_index = runs = None
        for seed, f in sorted(scan["files"][pid].items()):
            arrays = read_prediction_file(f)
            if tr_index is None:
                tr_index, runs = arrays["tr_index"], arrays["run"]
                out["units"][pid] = arrays.get("units")
            elif not same_units(out["units"][pid], arrays.get("units")):
                raise HeldOutError(f"{f}: 'units' differ from those of seed {scan['seeds'][0]}")
            elif not (np.array_equal(tr_index, arrays["tr_index"]) and np.array_equal(runs, arrays["run"])):
                raise HeldOutError(f"{f}: tr_index/run differ from those of seed {scan['seeds'][0]}; all seeds must predict the same rows")
            preds.append(arrays["predictions"])
        shapes = {p.shape for p in preds}
        if len(shapes) != 1:
            raise HeldOutError(f"{scan['path']}: participant {pid!r} has prediction shapes {sorted(shapes)} across seeds")
        out["predictions"][pid] = np.stack(preds)
        out["tr_index"][pid] = tr_index
        out["runs"][pid] = runs
    return out


def select_participants(scan: dict[str, Any], participants: Sequence[str] | None) -> list[str]:
    if participants is None:
        return list(scan["participants"])
    missing = [p for p in participants if p not in scan["files"]]
    if missing:
        raise HeldOutError(f"{scan['path']}: no held-out predictions (for every seed) of participant(s) {missing}; "
                           f"available: {scan['participants']}")
    return list(dict.fromkeys(participants))


def read_prediction_file(path: Path) -> dict[str, np.ndarray]:
    """One ``<participant>.npz``: ``predictions`` (n_rows, n_units), ``tr_index``, ``run`` (str)."""
    arrays = _read_npz(path, "predictions file")
    for key in ("predictions", "tr_index", "run"):
        if key not in arrays:
            raise HeldOutError(f"{path}: array {key!r} missing (need predictions, tr_index, run)")
    pred = arrays["predictions"]
    if pred.ndim != 2:
        raise HeldOutError(f"{path}: 'predictions' must be 2-D (n_rows, n_units), got {pred.shape}")
    if not (np.issubdtype(pred.dtype, np.floating) or np.issubdtype(pred.dtype, np.integer)):
        raise HeldOutError(f"{path}: 'predictions' must be numbers, got dtype {pred.dtype}")
    _check_finite(pred, path, "predictions")
    n = pred.shape[0]
    for key in ("tr_index", "run"):
        if arrays[key].shape != (n,):
            raise HeldOutError(f"{path}: {key!r} has shape {arrays[key].shape}, expected ({n},)")
    if not np.issubdtype(arrays["tr_index"].dtype, np.integer):
        raise HeldOutError(f"{path}: 'tr_index' must be integers, got {arrays['tr_index'].dtype}")
    out = {"predictions": pred, "tr_index": arrays["tr_index"].astype(np.int64), "run": arrays["run"].astype(str)}
    if "units" in arrays:
        units = arrays["units"]
        if units.shape != (pred.shape[1],) or not np.issubdtype(units.dtype, np.integer):
            raise HeldOutError(f"{path}: 'units' must be {pred.shape[1]} integer column indices, got {units.dtype} {units.shape}")
        out["units"] = units.astype(np.int64)
    return out


def _read_npz(path: Path, what: str, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (all, or those of ``keys`` that it holds; no pickles); an
    unreadable file raises :class:`HeldOutError`. The ``files`` entry lists every array name."""
    import zipfile
    import zlib

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise HeldOutError(f"{path}: not an .npz archive (a {what} must be written by numpy.savez; "
                           "text tables such as stimulus.tsv cannot be used here)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            return {k: npz[k] for k in names if keys is None or k in keys}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise HeldOutError(f"{path}: holds object arrays, which brainviz never unpickles; save plain numeric "
                               "arrays (and run labels as a str array) with numpy.savez") from None
        raise HeldOutError(f"{path}: unreadable .npz ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError) as exc:
        raise HeldOutError(f"{path}: unreadable .npz (truncated? {type(exc).__name__}: {exc})") from None


def _check_finite(data: np.ndarray, path: Path, key: str) -> None:
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise HeldOutError(f"{path}: array {key!r}: {int(bad.sum())} non-finite value(s) (NaN or inf), the first at "
                               f"index {idx}; every value must be finite")


def same_units(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def target_columns(data: np.ndarray, units: np.ndarray | None, what: str) -> np.ndarray:
    """The target columns that predictions cover (all, or the ROI units a model was trained on)."""
    data = np.asarray(data)
    if units is None:
        return data
    if units.size and units.max() >= data.shape[1]:
        raise HeldOutError(f"{what}: predicted unit index {int(units.max())} outside the {data.shape[1]} target units")
    return data[:, units]


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------


def load_targets_file(path: str | os.PathLike, participants: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Targets from an ``.npz`` file: ``{participant: (data, tr_index)}``.

    The file holds one array per participant named by the participant id, either the full
    recording (row ``i`` = TR ``i``) or a subset of TRs whose indices are given by an array
    named ``<participant>__tr_index``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: targets file not found")
    out = {}
    import zipfile

    wanted = [p for pid in participants for p in (pid, pid + TR_INDEX_SUFFIX)]
    arrays = _read_npz(path, "targets file", keys=wanted)
    for pid in participants:
        if pid not in arrays:
            with zipfile.ZipFile(path) as z:
                names = sorted(n.removesuffix(".npy") for n in z.namelist())
            raise HeldOutError(f"{path}: no targets array for participant {pid!r} (arrays: {names[:20]})")
        data = arrays[pid]
        if data.ndim != 2:
            raise HeldOutError(f"{path}: {pid!r} must be 2-D (n_trs, n_units), got {data.shape}")
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise HeldOutError(f"{path}: {pid!r} must be numbers, got dtype {data.dtype}")
        _check_finite(data, path, pid)
        key = pid + TR_INDEX_SUFFIX
        if key in arrays:
            tr_index = arrays[key]
            if tr_index.shape != (data.shape[0],) or not np.issubdtype(tr_index.dtype, np.integer):
                raise HeldOutError(f"{path}: {key!r} must be {data.shape[0]} integers, got {tr_index.dtype} {tr_index.shape}")
            tr_index = tr_index.astype(np.int64)
        else:
            tr_index = np.arange(data.shape[0], dtype=np.int64)
        out[pid] = (data, tr_index)
    return out


def targets_key(scan: dict[str, Any], participants: Sequence[str], *, targets_file: str | os.PathLike | None = None,
                dataset: str | os.PathLike | None = None) -> str:
    """Content key of the targets :func:`load_targets` would return (no arrays are read)."""
    from brainviz.cache import cached_file_hash

    if targets_file is not None:
        return content_hash("targets-file", cached_file_hash(targets_file), list(participants))
    root = dataset_path(scan, dataset)
    files = [root / "dataset.json", root / "stimulus.tsv"] + [root / "fmri" / f"{pid}.npy" for pid in participants]
    hashes = [cached_file_hash(f) if f.is_file() else str(f) for f in files]
    return content_hash("targets-dataset", hashes, preprocess_dict(scan), list(participants))


def dataset_path(scan: dict[str, Any], dataset: str | os.PathLike | None = None) -> Path:
    """The dataset folder: ``dataset`` if given, else the card's ``dataset.path``."""
    if dataset is not None:
        root = Path(dataset)
    else:
        card = scan.get("card") or {}
        entry = card.get("dataset") or {}
        if not entry.get("path"):
            raise HeldOutError(
                f"{scan['path']}: no card with a dataset path; pass --dataset PATH or --targets FILE.npz"
            )
        root = Path(entry["path"])
        if not root.is_absolute() and not root.is_dir():
            for base in (scan["path"], paths.cache_dir(), Path.cwd()):
                if (Path(base) / root).is_dir():
                    root = Path(base) / root
                    break
    if not (root / "dataset.json").is_file():
        raise InputNotFoundError(f"{root}: dataset not found (pass --dataset PATH or --targets FILE.npz)")
    return root


def card_simulated(scan: dict[str, Any]) -> bool:
    """Whether the model's card says it was trained on simulated data."""
    return bool((scan.get("card") or {}).get("simulated"))


def pooled_fits(scan: dict[str, Any]) -> bool:
    """Whether a checkpoint's fMRI predictions come from models fitted on several participants'
    data (one fit for all participants, or a shared head): their participants' scores across
    held-out runs are then dependent (see :func:`brainviz.evaluation.stats.group_test_by_run`)."""
    card = scan.get("card") or {}
    cfg = card.get("train_config") or {}
    head = card.get("head_mode") or cfg.get("head_mode")
    return bool(cfg.get("together")) or head in ("shared", "shared+split") or cfg.get("variant") == "joint"


def preprocess_dict(scan: dict[str, Any]) -> dict[str, Any]:
    """The card's ``preprocess`` config with any command-line overrides
    (``scan["preprocess_overrides"]``, e.g. ``evaluate --trim-start 0``) applied on top."""
    card = scan.get("card") or {}
    return {**dict(card.get("preprocess") or {}), **dict(scan.get("preprocess_overrides") or {})}


def load_targets(
    scan: dict[str, Any],
    participants: Sequence[str],
    *,
    targets_file: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Targets ``{participant: (data (n, n_units), tr_index (n,))}`` for held-out predictions.

    From ``targets_file`` (see :func:`load_targets_file`) or from the dataset (``dataset`` or
    the card's ``dataset.path``) preprocessed with the card's ``preprocess`` config.
    """
    if targets_file is not None:
        return load_targets_file(targets_file, participants)
    from brainviz.data.dataset import load_dataset
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples

    root = dataset_path(scan, dataset)
    ds = load_dataset(root, check_values=False)
    try:
        cfg = PreprocessConfig.from_dict(preprocess_dict(scan))
    except (TypeError, ValueError) as exc:  # ConfigError (a ValueError) or a value of the wrong type
        raise HeldOutError(f"{scan['path'] / 'card.json'}: field 'preprocess': {exc}") from None
    out = {}
    for pid in participants:
        ex = fmri_examples(ds, pid, cfg)
        _check_finite(np.asarray(ex.data), root / "fmri" / f"{pid}.npy", "data")
        out[pid] = (ex.data, np.asarray(ex.tr_index, dtype=np.int64))
    return out


def align_rows(target_tr_index: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Positions in ``target_tr_index`` of every TR in ``wanted`` (error if one is missing)."""
    target_tr_index = np.asarray(target_tr_index, dtype=np.int64)
    order = np.argsort(target_tr_index, kind="stable")
    sorted_idx = target_tr_index[order]
    pos = np.searchsorted(sorted_idx, wanted)
    pos = np.clip(pos, 0, max(len(sorted_idx) - 1, 0))
    bad = (len(sorted_idx) == 0) | (sorted_idx[pos] != wanted) if len(sorted_idx) else np.ones(len(wanted), bool)
    if np.any(bad):
        missing = np.asarray(wanted)[bad][:5].tolist()
        raise HeldOutError(f"{what}: targets have no row for TR index(es) {missing} (preprocessing differs?)")
    return order[pos]
