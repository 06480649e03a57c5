"""``python -m brainviz models list``: the checkpoint store."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the checkpoint store", description="The checkpoint store (models/).")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True
    lst = sub.add_parser("list", help="list checkpoints (name, variant, base, dataset, participants, simulated, created)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=run_list)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) if len(value) <= 4 else f"{','.join(map(str, value[:3]))},... ({len(value)})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def run_list(args: argparse.Namespace) -> int:
    from brainviz.models.store import list_checkpoints

    rows = list_checkpoints()
    if args.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
        return 0
    cols = ("name", "variant", "base", "dataset", "participants", "simulated", "created")
    table = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)))
    for r, t in zip(rows, table):
        line = "  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip()
        print(line + (f"  [error: {r['error']}]" if r.get("error") else ""))
    return 0
