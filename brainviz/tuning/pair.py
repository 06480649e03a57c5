"""The default pair: ``vanilla`` and ``fine-tuned`` with the ``quick`` recipe, one after the other.

This is what the app's first run trains (Compare without checkpoints), and the same as::

    python -m brainviz train --dataset D --variant vanilla    --preset quick --out models/vanilla-quick
    python -m brainviz train --dataset D --variant fine-tuned --preset quick --out models/fine-tuned-quick

Both models use all fMRI participants, the same heads, pooling and schedule; the vanilla model
only lacks the encoder updates, so their difference is the effect of brain-tuning the encoder.
Progress of the pair goes to one JSON-lines file (``--progress-file``) with the overall
fraction, the stage, the elapsed time and an ETA. Each model is resumable on its own.

Usage::

    python -m brainviz.tuning.pair --dataset D [--models-dir models] [--progress-file P]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

PAIR = ("vanilla", "fine-tuned")
PAIR_NAMES = {"vanilla": "vanilla-quick", "fine-tuned": "fine-tuned-quick"}
# share of the pair's wall time spent on the vanilla model (heads only; measured on the default,
# docs/tuning.md): used to combine the two jobs' fractions into one
VANILLA_SHARE = 0.2


def pair_paths(models_dir: str | Path) -> dict[str, Path]:
    """Checkpoint folders of the default pair in ``models_dir``."""
    return {v: Path(models_dir) / name for v, name in PAIR_NAMES.items()}


def train_pair(dataset: str, models_dir: str | Path, progress_file: str | Path | None = None,
               participants: Sequence[str] = (), bar: bool | None = False, **overrides) -> dict[str, Path]:
    """Train the default pair (skipping a model that already exists); return both folders.

    ``overrides`` are further :class:`TrainConfig` fields given to both models (e.g. a base
    model or preprocessing for tests); the recipe itself is the ``quick`` preset's.
    """
    from brainviz.tuning import TrainConfig, train

    t0 = time.monotonic()
    out = pair_paths(models_dir)
    shares = {"vanilla": (0.0, VANILLA_SHARE), "fine-tuned": (VANILLA_SHARE, 1.0)}

    def writer(variant: str):
        lo, hi = shares[variant]
        step = PAIR.index(variant) + 1

        def emit(fraction: float, message: str) -> None:
            if progress_file is None:
                return
            total = lo + (hi - lo) * max(0.0, min(1.0, fraction))
            elapsed = time.monotonic() - t0
            eta = elapsed * (1 - total) / total if total > 0.02 else None
            rec = {"fraction": round(total, 6), "message": f"{step}/2 {variant}: {message}",
                   "stage": f"{step}/2 {variant}", "elapsed_s": round(elapsed, 1),
                   "eta_s": None if eta is None else round(eta, 1)}
            Path(progress_file).parent.mkdir(parents=True, exist_ok=True)
            with open(progress_file, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

        return emit

    for variant in PAIR:
        if (out[variant] / "card.json").is_file():
            writer(variant)(1.0, "already trained")
            continue
        cfg = TrainConfig(dataset=str(dataset), variant=variant, out=str(out[variant]), preset="quick",
                          participants=tuple(participants), **overrides)
        train(cfg, progress=writer(variant), bar=bar)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m brainviz.tuning.pair", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--models-dir", default=None, help="default: the checkpoint store")
    p.add_argument("--participants", nargs="+", default=(), metavar="ID", help="default: all")
    p.add_argument("--progress-file", default=None)
    args = p.parse_args(argv)
    from brainviz import paths
    from brainviz.errors import BrainvizError

    try:
        out = train_pair(args.dataset, args.models_dir or paths.models_dir(), args.progress_file, args.participants)
    except BrainvizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for v in PAIR:
        print(out[v])
    return 0


if __name__ == "__main__":
    sys.exit(main())
