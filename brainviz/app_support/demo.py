"""Demo prediction folders for tests, the browser test and the performance benchmark.

Training real checkpoints takes minutes even with the ``quick`` preset, so the app's tests
compare two *prediction-only* checkpoints built from a simulated dataset's ground truth:

- ``demo-tuned``: held-out predictions = the planted signal (``drivers @ spatial_weights``,
  standardised within run) plus noise;
- ``demo-vanilla``: the same but with only every seventh driver of the planted signal, so the
  tuned demo is better inside the planted regions and both are at chance elsewhere.

Their ``card.json`` follows the store format (``variant`` ``demo-*``, ``train_config.demo =
true``, ``simulated = true``), with the base encoder as encoder, so every page can use them.
They are clearly not trained models: never use them for results.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from brainviz._io import write_json


def _signal(gt: dict, drivers_used: np.ndarray) -> np.ndarray:
    d = np.asarray(gt["drivers"], dtype=np.float64)[:, drivers_used]
    w = np.asarray(gt["spatial_weights"], dtype=np.float64)[drivers_used]
    return d @ w


def make_demo_checkpoints(
    dataset: str | Path,
    out_dir: str | Path,
    *,
    participants: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    noise: float = 0.3,
    names: tuple[str, str] = ("demo-tuned", "demo-vanilla"),
) -> dict[str, Path]:
    """Write two prediction-only checkpoints into ``out_dir``; return ``{name: folder}``."""
    from brainviz.data.dataset import load_dataset
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples, standardize_within_runs
    from brainviz.data.simulate import load_ground_truth

    ds = load_dataset(dataset, check_values=False)
    gt = load_ground_truth(ds)
    pids = list(participants or ds.participants)
    n_drivers = np.asarray(gt["drivers"]).shape[1]
    plans = {names[0]: np.arange(n_drivers), names[1]: np.arange(0, n_drivers, 7)}
    pre = PreprocessConfig()
    examples = {pid: fmri_examples(ds, pid, pre) for pid in pids}
    out: dict[str, Path] = {}
    for m, (name, used) in enumerate(plans.items()):
        folder = Path(out_dir) / name
        signal = _signal(gt, used)
        table: dict[str, dict[str, str]] = {}
        for pid in pids:
            ex = examples[pid]
            s = standardize_within_runs(signal[ex.tr_index], ex.runs, True, True)
            for seed in seeds:
                rng = np.random.default_rng([int(seed), m, zlib.crc32(pid.encode())])
                pred = (s + noise * rng.standard_normal(s.shape)).astype(np.float32)
                rel = f"predictions/seed-{seed}/{pid}.npz"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                np.savez(folder / rel, predictions=pred, tr_index=ex.tr_index.astype(np.int64),
                         run=np.asarray(ex.runs).astype(str))
                table.setdefault(f"seed-{seed}", {})[pid] = rel
        runs = ds.runs
        card = {
            "format": 1, "name": name, "variant": "demo-" + ("tuned" if m == 0 else "vanilla"),
            "base": "pretrained", "encoder": "pretrained", "heads": "heads.safetensors",
            "dataset": {"name": ds.name, "path": str(Path(dataset).resolve()), "hash": "demo"},
            "simulated": True, "participants": pids, "meg_participants": [], "folds": runs,
            "seeds": [int(s) for s in seeds],
            "train_config": {"demo": True, "description": __doc__.splitlines()[0]},
            "preprocess": pre.to_dict(), "versions": {}, "metrics": {},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fits": [{"group": "demo", "fold": r, "seed": int(s), "encoder": "base", "heads": "heads.safetensors",
                      "predicts": pids} for s in seeds for r in runs],
            "predictions": table,
        }
        write_json(folder / "card.json", card)
        out[name] = folder
    return out
