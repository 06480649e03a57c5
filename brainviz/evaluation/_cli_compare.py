"""``python -m brainviz compare models/A models/B --out FILE``: compare two models per unit."""

from __future__ import annotations

import argparse

from brainviz.evaluation._cli_common import add_common_arguments, config_values, table_format


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two models unit by unit (20-vs-20 on the same draws, paired test, FDR)",
        description="Score models A and B with the 20-vs-20 test on the same draws (per participant and held-out "
                    "run), test A vs B per unit across seeds x runs, control the FDR across units, and write a tidy "
                    "table (participant, unit, acc_a, acc_b, diff, t, p, q, significant) and a JSON summary "
                    "(counts, the paper's Fig. 2 curves).",
    )
    p.add_argument("model_a", help="checkpoint folder, prediction folder or model name (A)")
    p.add_argument("model_b", help="checkpoint folder, prediction folder or model name (B)")
    add_common_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from brainviz.evaluation._cli_common import write_outputs
    from brainviz.evaluation.compare import CompareConfig, compare_models

    table_format(args.out)  # fail before computing
    config = CompareConfig(**config_values(args))
    result = compare_models(
        args.model_a, args.model_b, config, participants=args.participants, targets=args.targets,
        dataset=args.dataset, backend=args.backend, cache=not args.no_cache,
    )
    summary = result.summary()
    table, js = write_outputs(result.to_frame(), summary, args.out)
    names = summary["meta"].get("models", {})
    for pid in result.participants:
        c = summary["counts"][pid]
        m = summary["mean_accuracy"][pid]
        print(f"{pid}: acc {names.get('a', 'A')} {m['acc_a']}, {names.get('b', 'B')} {m['acc_b']}; "
              f"{c['n_a_better']} units A > B, {c['n_b_better']} B > A of {c['n_tested']} tested "
              f"(q <= {args.alpha}, {args.fdr}, {summary['test']})")
    print(f"wrote {table} and {js}")
    return 0
