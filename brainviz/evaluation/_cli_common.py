"""Arguments and output writing shared by ``evaluate`` and ``compare`` (light imports only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by the evaluation commands."""
    p.add_argument("--out", required=True, help="tidy table to write: .csv, .tsv or .parquet; the JSON summary "
                   "is written beside it as <name>.summary.json")
    p.add_argument("--participants", nargs="+", metavar="P", help="participants to include (default: all available)")
    p.add_argument("--k", type=int, default=20, help="rows per 20-vs-20 draw (default 20)")
    p.add_argument("--n-samples", type=int, default=1000, help="20-vs-20 draws per participant and run (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--alpha", type=float, default=0.01, help="FDR level (default 0.01)")
    p.add_argument("--fdr", choices=("bh", "by", "none"), default="bh",
                   help="Benjamini-Hochberg (default) or Benjamini-Yekutieli")
    p.add_argument("--test", choices=("ttest", "wilcoxon"), default="ttest", help="test across seeds x runs (default ttest)")
    p.add_argument("--all-rows", action="store_true",
                   help="draw over all held-out rows instead of within each held-out run (the paper's default)")
    p.add_argument("--targets", metavar="FILE.npz", help="targets per participant (arrays named by participant id, "
                   "rows = TRs of the full recording, or with <participant>__tr_index) instead of the dataset")
    p.add_argument("--dataset", metavar="PATH", help="dataset folder (default: the one named in the model card)")
    p.add_argument("--backend", choices=("numba", "numpy", "torch"), default="numba", help="20-vs-20 backend")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"k": args.k, "n_samples": args.n_samples, "seed": args.seed, "alpha": args.alpha, "fdr": args.fdr,
            "test": args.test, "by_run": not args.all_rows}


def table_format(out: str | Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"--out {out}: unknown table format {suffix!r}; use one of {sorted(TABLE_FORMATS)}")
    return TABLE_FORMATS[suffix]


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".summary.json")


def write_outputs(frame, summary: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write the tidy table (format from the extension) and the JSON summary, atomically."""
    from brainviz._io import atomic_path, write_json

    out = Path(out)
    fmt = table_format(out)
    if (summary.get("meta") or {}).get("simulated"):
        # simulated results stay labelled in every export
        summary = {**summary, "simulated": True}
        frame = frame.assign(simulated=True)
    with atomic_path(out) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",", lineterminator="\n")
    js = summary_path(out)
    write_json(js, summary)
    return out, js
