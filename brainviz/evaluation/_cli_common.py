"""Arguments and output writing shared by ``evaluate`` and ``compare`` (light imports only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# mirrors brainviz.evaluation.compare.TESTS without importing numpy for --help
TESTS = ("auto", "ttest", "sign-flip", "ttest-by-run", "block-sign-flip", "runs-ttest", "paper-initializations")
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by the evaluation commands."""
    p.add_argument("--out", required=True, help="tidy table to write: .csv, .tsv or .parquet; the JSON summary "
                   "is written beside it as <name>.summary.json")
    p.add_argument("--participants", nargs="+", metavar="P", help="participants to include (default: all available)")
    p.add_argument("--k", type=int, default=20, help="rows per 20-vs-20 draw (default 20)")
    p.add_argument("--n-samples", type=int, default=1000, help="20-vs-20 draws per participant and run (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="FDR level: a unit is significant when q <= alpha for the named test (default 0.05)")
    p.add_argument("--fdr", choices=("bh", "by", "none"), default="bh",
                   help="Benjamini-Hochberg (default) or Benjamini-Yekutieli")
    p.add_argument("--level", choices=("auto", "group", "participant"), default="auto",
                   help="group: random effects across participants (default whenever >= 2 participants); "
                        "participant: within each participant across held-out data")
    p.add_argument("--test", choices=TESTS, default="auto",
                   help="group: ttest (default) | sign-flip | ttest-by-run (one t-test per held-out run, p-values "
                        "combined; the default for models fitted on several participants' data, e.g. shared heads); "
                        "participant: block-sign-flip (default) | runs-ttest | "
                        "paper-initializations (the 2019 paper's test across seeds: training stability only). "
                        "Seeds are averaged, never used as samples")
    p.add_argument("--n-permutations", type=int, default=10000,
                   help="sign flips of the permutation tests (exact when all flips fit; default 10000)")
    p.add_argument("--block-seconds", type=float, default=20.0,
                   help="block length of block-sign-flip in seconds of held-out TRs (default 20)")
    p.add_argument("--block-buffer-seconds", type=float, default=4.0,
                   help="seconds left out at the end of each block so blocks are apart in time (default 4)")
    p.add_argument("--all-rows", action="store_true",
                   help="draw over all held-out rows instead of within each held-out run (the paper's default)")
    p.add_argument("--targets", metavar="FILE.npz", help="targets per participant (arrays named by participant id, "
                   "rows = TRs of the full recording, or with <participant>__tr_index) instead of the dataset")
    p.add_argument("--dataset", metavar="PATH", help="dataset folder (default: the one named in the model card)")
    p.add_argument("--backend", choices=("numba", "numpy", "torch"), default="numba", help="20-vs-20 backend")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    from brainviz.data._cli_preprocess import add_preprocess_arguments

    add_preprocess_arguments(p, title="preprocessing of the targets (default: the model card's)")


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"k": args.k, "n_samples": args.n_samples, "seed": args.seed, "alpha": args.alpha, "fdr": args.fdr,
            "level": args.level, "test": args.test, "n_permutations": args.n_permutations,
            "block_seconds": args.block_seconds, "block_buffer_seconds": args.block_buffer_seconds,
            "by_run": not args.all_rows}


def print_result_lines(summary: dict[str, Any], what: str) -> None:
    """One line per tested level/participant, and the explanation of an empty result."""
    level = summary["level"]
    counts = summary["counts"]
    sizes = summary["sample_sizes"]
    head = (f"{summary['test']} ({level} level, {summary['fdr']} FDR, q <= {summary['alpha']}; "
            f"{sizes['n_participants']} participant(s), seeds averaged)")
    if level == "group":
        c = counts["group"]
        print(f"group: {c['n_significant']}/{c['n_tested']} units {what} — {head}")
    else:
        for pid in summary["participants"]:
            c = counts[pid]
            print(f"{pid}: {c['n_significant']}/{c['n_tested']} units {what} — {head}")
    if summary.get("explanation"):
        print(summary["explanation"])


def table_format(out: str | Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in TABLE_FORMATS:
        from brainviz.errors import UsageError

        raise UsageError(f"--out {out}: unknown table format {suffix!r}; use one of {sorted(TABLE_FORMATS)}")
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
