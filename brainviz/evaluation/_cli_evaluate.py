"""``python -m brainviz evaluate --model models/NAME --out FILE``: score one model per unit."""

from __future__ import annotations

import argparse

from brainviz.evaluation._cli_common import add_common_arguments, config_values, table_format


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model's held-out predictions per unit (20-vs-20, Pearson r or variance explained)",
        description="Score held-out predictions per unit and test them against chance (20-vs-20 vs 0.5, r and "
                    "variance explained vs 0), seeds averaged, at the group level (across participants; default with "
                    ">= 2 participants) or the participant level (blocks of held-out TRs or runs), with FDR control "
                    "across units. Writes a tidy table (unit, metric, score, effect, t, p, q, significant, test, "
                    "level; plus participant at the participant level) and a JSON summary.",
    )
    p.add_argument("--model", required=True, help="checkpoint folder, prediction folder or model name")
    p.add_argument("--metric", choices=("twenty-vs-twenty", "pearson", "pove"), default="twenty-vs-twenty",
                   help="score (default twenty-vs-twenty; pove = 1 - MSE/Var(target))")
    add_common_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from brainviz.data._cli_preprocess import preprocess_overrides
    from brainviz.evaluation._cli_common import print_result_lines, write_outputs
    from brainviz.evaluation.compare import EvaluateConfig, evaluate_model

    table_format(args.out)  # fail before computing
    config = EvaluateConfig(metric=args.metric, **config_values(args))
    result = evaluate_model(
        args.model, config, participants=args.participants, targets=args.targets, dataset=args.dataset,
        backend=args.backend, cache=not args.no_cache, preprocess=preprocess_overrides(args),
    )
    summary = result.summary()
    table, js = write_outputs(result.to_frame(), summary, args.out)
    for pid in result.participants:
        print(f"{pid}: mean {args.metric} {summary['mean_score'][pid]}")
    print_result_lines(summary, "above chance")
    print(f"wrote {table} and {js}")
    return 0
