"""``python -m brainviz info DATASET``: validate a dataset folder and print its summary."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("info", help="validate a dataset folder and print its summary as JSON")
    p.add_argument("dataset", help="dataset folder (with dataset.json)")
    p.add_argument("--quick", action="store_true", help="skip the scan for NaN/inf values")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from brainviz.data import load_dataset

    ds = load_dataset(args.dataset, check_values=not args.quick)
    print(json.dumps(ds.summary(), indent=2))
    return 0
