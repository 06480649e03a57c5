"""``python -m brainviz compare models/A models/B --out FILE``: compare two models per unit."""

from __future__ import annotations

import argparse

from brainviz.evaluation._cli_common import add_common_arguments, config_values, table_format


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two models unit by unit (20-vs-20 on the same draws, paired test, FDR)",
        description="Score models A and B with the 20-vs-20 test on the same draws (per participant and held-out "
                    "run), average seeds, test A vs B per unit at the group level (random effects across "
                    "participants; default with >= 2 participants) or the participant level (blocks of held-out "
                    "TRs or runs), control the FDR across units, and write a tidy table (group: unit, acc_a, acc_b, "
                    "diff, se, effect, t, p, q, significant, ...; participant: the same with a participant column) "
                    "and a JSON summary (test, level, sample sizes, counts, reachability, Fig. 2 curves).",
    )
    p.add_argument("model_a", help="checkpoint folder, prediction folder or model name (A)")
    p.add_argument("model_b", help="checkpoint folder, prediction folder or model name (B)")
    add_common_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from brainviz.data._cli_preprocess import preprocess_overrides
    from brainviz.evaluation._cli_common import print_result_lines, write_outputs
    from brainviz.evaluation.compare import CompareConfig, compare_models

    table_format(args.out)  # fail before computing
    config = CompareConfig(**config_values(args))
    result = compare_models(
        args.model_a, args.model_b, config, participants=args.participants, targets=args.targets,
        dataset=args.dataset, backend=args.backend, cache=not args.no_cache, preprocess=preprocess_overrides(args),
    )
    summary = result.summary()
    table, js = write_outputs(result.to_frame(), summary, args.out)
    names = summary["meta"].get("models", {})
    for pid in result.participants:
        m = summary["mean_accuracy"][pid]
        print(f"{pid}: mean 20-vs-20 accuracy {names.get('a', 'A')} {m['acc_a']}, {names.get('b', 'B')} {m['acc_b']}")
    print_result_lines(summary, "differ (A vs B)")
    print(f"wrote {table} and {js}")
    return 0
