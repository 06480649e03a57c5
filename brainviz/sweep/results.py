"""Evaluating and comparing a sweep's checkpoints in one call.

A sweep splits a variant's grid into many checkpoints (one per participant / fold / seed).
The 20-vs-20 statistics need every held-out run and seed of a participant together, so the
predictions of each variant are first merged into one prediction folder::

    <sweep>/merged/<variant>/card.json                       dataset, preprocess, simulated flag
    <sweep>/merged/<variant>/predictions/seed-<S>/<pid>.npz  all held-out folds, sorted by TR

which :func:`brainviz.evaluation.evaluate_model` and :func:`brainviz.evaluation.compare_models`
read like any checkpoint. :func:`evaluate_sweep` writes ``<sweep>/evaluation.csv`` (one row per
variant and participant); :func:`compare_sweep` writes ``<sweep>/compare-<A>-vs-<B>.csv``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from brainviz._io import atomic_path, content_hash, write_json
from brainviz.sweep.runner import MANIFEST, SweepError

MERGED = "merged"


def _manifest(sweep: str | os.PathLike) -> dict[str, Any]:
    path = Path(sweep) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: not a sweep folder (no {MANIFEST})") from None
    except json.JSONDecodeError as exc:
        raise SweepError(f"{path}: not valid JSON ({exc})") from None
    if data.get("kind") != "brainviz-sweep" or not isinstance(data.get("jobs"), list):
        raise SweepError(f"{path}: field 'kind'/'jobs': not a brainviz sweep manifest")
    return data


def sweep_checkpoints(sweep: str | os.PathLike, variant: str | None = None) -> dict[str, list[Path]]:
    """``{variant: [checkpoint folders]}`` of a sweep (raises when a job has not finished)."""
    data = _manifest(sweep)
    out: dict[str, list[Path]] = {}
    missing = []
    for job in data["jobs"]:
        if variant is not None and job["variant"] != variant:
            continue
        folder = Path(sweep) / job["name"]
        if not (folder / "card.json").is_file():
            missing.append(job["name"])
        out.setdefault(job["variant"], []).append(folder)
    if variant is not None and variant not in out:
        raise SweepError(f"{sweep}: the sweep has no variant {variant!r} (it has {sorted({j['variant'] for j in data['jobs']})})")
    if missing:
        raise SweepError(f"{sweep}: {len(missing)} job(s) have not finished ({', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}); run the sweep again to finish them")
    return out


def merge_variant(sweep: str | os.PathLike, variant: str) -> Path:
    """Merge one variant's checkpoints into ``<sweep>/merged/<variant>/`` (rebuilt when stale)."""
    from brainviz.cache import cached_file_hash

    sweep = Path(sweep)
    folders = sweep_checkpoints(sweep, variant)[variant]
    cards = [json.loads((f / "card.json").read_text()) for f in folders]
    first = cards[0]
    for f, card in zip(folders, cards):
        for field in ("preprocess", "dataset"):
            if card.get(field) != first.get(field):
                raise SweepError(f"{f / 'card.json'}: field {field!r} differs from {folders[0] / 'card.json'}; "
                                 "a sweep's checkpoints must share dataset and preprocessing")
    files: dict[tuple[str, str], list[Path]] = {}  # (seed key, pid) -> prediction files, one per checkpoint
    for f, card in zip(folders, cards):
        for seed_key, by_pid in card["predictions"].items():
            for pid, rel in by_pid.items():
                files.setdefault((seed_key, pid), []).append(f / rel)
    source_key = content_hash("sweep-merge", sorted((k, [cached_file_hash(p) for p in v]) for k, v in files.items()))
    target = sweep / MERGED / variant
    card_path = target / "card.json"
    if card_path.is_file():
        try:
            if json.loads(card_path.read_text()).get("merged_key") == source_key:
                return target
        except json.JSONDecodeError:
            pass
    from brainviz._io import atomic_dir

    with atomic_dir(target, overwrite=True) as tmp:
        seeds: set[str] = set()
        participants: set[str] = set()
        for (seed_key, pid), paths in sorted(files.items()):
            parts = []
            for p in paths:
                with np.load(p, allow_pickle=False) as npz:
                    parts.append({k: npz[k] for k in npz.files})
            tr = np.concatenate([x["tr_index"] for x in parts])
            if len(np.unique(tr)) != len(tr):
                raise SweepError(f"variant {variant!r}, participant {pid!r}, {seed_key}: two checkpoints predict the "
                                 "same TRs (overlapping folds in one sweep?)")
            units = [x.get("units") for x in parts]
            if any(u is None for u in units) != all(u is None for u in units) or (
                    units[0] is not None and not all(np.array_equal(units[0], u) for u in units)):
                raise SweepError(f"variant {variant!r}, participant {pid!r}: checkpoints predict different units")
            order = np.argsort(tr, kind="stable")
            arrays = {"predictions": np.concatenate([x["predictions"] for x in parts])[order],
                      "tr_index": tr[order], "run": np.concatenate([x["run"] for x in parts])[order].astype(str)}
            if units[0] is not None:
                arrays["units"] = units[0]
            dest = tmp / "predictions" / seed_key / f"{pid}.npz"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest, suffix=".npz.tmp") as t:
                with open(t, "wb") as fh:
                    np.savez(fh, **arrays)
            seeds.add(seed_key)
            participants.add(pid)
        write_json(tmp / "card.json", {
            "kind": "sweep-merge", "name": f"{sweep.name}/{variant}", "variant": variant,
            "dataset": first.get("dataset"), "preprocess": first.get("preprocess"),
            "simulated": any(bool(c.get("simulated")) for c in cards),
            "participants": sorted(participants), "seeds": sorted(int(s.split("-", 1)[1]) for s in seeds),
            "merged_from": [f.name for f in folders], "merged_key": source_key,
        })
    return target


def _write_csv(frame, path: Path) -> Path:
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def evaluate_sweep(
    sweep: str | os.PathLike,
    config: Any = None,
    *,
    variants: Sequence[str] | None = None,
    dataset: str | os.PathLike | None = None,
    backend: str | None = None,
    cache: Any = True,
):
    """Evaluate every variant of a sweep in one call.

    Runs :func:`brainviz.evaluation.evaluate_model` on each variant's merged predictions
    (all folds and seeds of every participant, see :func:`merge_variant`) and writes one table,
    ``<sweep>/evaluation.csv``: the evaluation's own tidy table with a ``variant`` column in
    front and a ``simulated`` column, plus ``<sweep>/evaluation.summary.json`` (each
    variant's ``summary()``). Returns the table (a pandas DataFrame).
    """
    import pandas as pd

    from brainviz.evaluation import EvaluateConfig, evaluate_model

    config = config or EvaluateConfig()
    sweep = Path(sweep)
    available = sweep_checkpoints(sweep)
    names = list(variants) if variants else list(available)
    frames, summaries = [], {}
    for variant in names:
        if variant not in available:
            raise SweepError(f"{sweep}: the sweep has no variant {variant!r} (it has {sorted(available)})")
        folder = merge_variant(sweep, variant)
        kwargs: dict[str, Any] = {"dataset": dataset, "cache": cache}
        if backend is not None:
            kwargs["backend"] = backend
        res = evaluate_model(folder, config, **kwargs)
        frame = res.to_frame()
        frame.insert(0, "variant", variant)
        frame["simulated"] = bool(res.meta.get("simulated"))
        frames.append(frame)
        summaries[variant] = _jsonable(res.summary())
    table = pd.concat(frames, ignore_index=True)
    _write_csv(table, sweep / "evaluation.csv")
    write_json(sweep / "evaluation.summary.json", {"sweep": str(sweep), "variants": summaries,
                                                   "simulated": any(bool(t["simulated"].any()) for t in frames)})
    return table


def compare_sweep(
    sweep: str | os.PathLike,
    variant_a: str,
    variant_b: str,
    config: Any = None,
    *,
    dataset: str | os.PathLike | None = None,
    backend: str | None = None,
    cache: Any = True,
):
    """Compare two variants of a sweep in one call.

    Runs :func:`brainviz.evaluation.compare_models` on the two variants' merged predictions
    and writes ``<sweep>/compare-<A>-vs-<B>.csv`` (the comparison's tidy table with
    ``variant_a``, ``variant_b`` in front and a ``simulated`` column) and the ``summary()``
    beside it (``.summary.json``). Returns the table.
    """
    from brainviz.evaluation import CompareConfig, compare_models

    config = config or CompareConfig()
    sweep = Path(sweep)
    if variant_a == variant_b:
        raise SweepError(f"compare {variant_a!r} with itself: choose two different variants")
    a, b = merge_variant(sweep, variant_a), merge_variant(sweep, variant_b)
    kwargs: dict[str, Any] = {"dataset": dataset, "cache": cache}
    if backend is not None:
        kwargs["backend"] = backend
    res = compare_models(a, b, config, **kwargs)
    table = res.to_frame()
    table.insert(0, "variant_b", variant_b)
    table.insert(0, "variant_a", variant_a)
    table["simulated"] = bool(res.meta.get("simulated"))
    stem = f"compare-{variant_a}-vs-{variant_b}"
    _write_csv(table, sweep / f"{stem}.csv")
    write_json(sweep / f"{stem}.summary.json", {"sweep": str(sweep), "variant_a": variant_a, "variant_b": variant_b,
                                                "simulated": bool(res.meta.get("simulated")),
                                                "summary": _jsonable(res.summary())})
    return table
