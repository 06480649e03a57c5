"""``python -m brainviz simulate``: write the simulated reading and listening datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

PRESET_CHOICES = ("default", "small")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="write the simulated reading + listening experiment (with ground truth)",
        description=(
            "Simulate the default experiment from the packaged stories: OUT/reading (RSVP reading, "
            "fMRI + MEG) and OUT/listening (two spoken stories, fMRI), each with a ground_truth/ "
            "folder holding the planted regions, drivers and networks. See docs/simulation.md."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder; the datasets become DIR/reading and DIR/listening")
    parser.add_argument("--preset", choices=PRESET_CHOICES, default="default",
                        help="'default' (18 + 8 readers, 20 listeners, full stories) or 'small' (a few "
                             "participants, first paragraphs; for tests and demos)")
    parser.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed, an integer >= 0 (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing dataset folders in DIR")
    parser.set_defaults(func=run)
    return parser


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from brainviz.cli import CLIError
    from brainviz.data.simulate import SimulationConfig, simulate

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    config = SimulationConfig(preset=args.preset, seed=args.seed)
    start = time.perf_counter()
    try:
        paths = simulate(out, config, overwrite=args.overwrite)
    except PermissionError as exc:
        raise CLIError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    except OSError as exc:
        from brainviz.errors import BrainvizError, OutputExistsError, disk_full_error, is_disk_full

        if isinstance(exc, BrainvizError):
            raise
        if is_disk_full(exc):
            raise disk_full_error(exc, out) from None
        if isinstance(exc, FileExistsError):
            raise OutputExistsError(f"{exc}", file=None) from None
        if isinstance(exc, FileNotFoundError):
            raise CLIError(f"--out {out}: {exc.strerror or exc}: {exc.filename}") from None
        raise CLIError(f"--out {out}: {exc}") from None
    took = time.perf_counter() - start
    from brainviz.data.dataset import load_dataset

    for name, path in paths.items():
        s = load_dataset(path, check_values=False).summary()
        meg = f", {s['n_meg_participants']} MEG" if s["n_meg_participants"] else ""
        print(f"{name}: {path}  ({s['n_fmri_participants']} fMRI{meg} participants, {s['n_runs']} runs, "
              f"TR {s['tr']} s, {s['n_words']} words)")
    print(f"simulated preset '{config.preset}' with seed {config.seed} in {took:.0f} s", file=sys.stderr)
    return 0
