"""``python -m brainviz encode --dataset D --out FILE.csv``: layer-wise encoding models with baselines."""

from __future__ import annotations

import argparse

FEATURE_CHOICES = ("words", "window:cls", "window:mean", "window:last")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "encode",
        help="encoding models: every LM layer + low-level baselines, blocked/run-wise CV, group tests",
        description="Fit ridge encoding models from every layer of a language model (word states with a causal "
                    "context, Lanczos-resampled, FIR delays) and from low-level baselines (word rate, letters, "
                    "unigram surprisal, content words; time-in-run trend), with cross-validation that never "
                    "shuffles TRs (leave-one-run-out, or contiguous blocks with buffers for single-run data). "
                    "Reports held-out r and R2 per participant x unit, the layer chosen per unit by inner CV, the "
                    "LM's unique variance beyond the low-level bands (banded ridge), group tests across "
                    "participants with FDR, and the inter-participant noise ceiling.",
    )
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--model", default="pretrained",
                   help="encoder: 'pretrained' (packaged all-MiniLM-L6-v2, default), a checkpoint, a local Hugging "
                        "Face folder or a hub id")
    p.add_argument("--out", required=True, help="table to write (.csv, .tsv, .parquet); the JSON summary goes "
                                                "beside it as <name>.summary.json")
    p.add_argument("--layers", nargs="+", default=["best"], metavar="best|all|N",
                   help="best (default): each unit's layer chosen by inner CV, one row per participant x unit; "
                        "all: plus one row per layer; N ...: candidate hidden states only (0 = embeddings)")
    p.add_argument("--features", choices=FEATURE_CHOICES, default="words",
                   help="words (default; Huth/LeBel: word states at onsets, Lanczos to TRs, FIR delays) or "
                        "window:POOL (the 2019 paper's [t - window, t) text, pooled by cls/mean/last token)")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="preceding words the model sees with each word (words features; default 20)")
    p.add_argument("--word-piece", choices=("first", "mean"), default=None,
                   help="a word's state: first word piece or mean of its pieces (default mean)")
    p.add_argument("--delays", nargs="+", type=int, default=None, metavar="D",
                   help="FIR delays in TRs (default 1 2 3 4 for words, 0 for window features)")
    p.add_argument("--participants", nargs="+", metavar="P", help="participants (default: all)")
    p.add_argument("--alpha", type=float, default=0.05, help="FDR level (default 0.05)")
    p.add_argument("--fdr", choices=("bh", "by", "none"), default="bh", help="FDR across units (default bh)")
    p.add_argument("--group-test", choices=("ttest", "sign-flip"), default="ttest",
                   help="random-effects test across participants (default: one-sample t-test)")
    p.add_argument("--fit-to", choices=("participant", "others"), default="participant",
                   help="fit each participant's models to their own training runs (default) or to the mean of the "
                        "other participants' (a leave-one-participant-out group model; same stimulus and space)")
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy", help="himalaya backend")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads while fitting (default 1: fastest for these small kernel problems; 0 = "
                        "library default)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached language-model states")
    from brainviz.data._cli_preprocess import add_preprocess_arguments

    add_preprocess_arguments(p)
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace):
    """The :class:`brainviz.evaluation.encode.EncodeConfig` an ``encode`` command line asks for."""
    from brainviz.data._cli_preprocess import preprocess_overrides
    from brainviz.evaluation.encode import EncodeConfig

    layers = [str(x).lower() for x in args.layers]
    mode, candidates = "best", ()
    if layers in (["best"], ["all"]):
        mode = layers[0]
    else:
        try:
            candidates = tuple(int(x) for x in layers)
        except ValueError:
            from brainviz.config import ConfigError

            raise ConfigError(f"--layers: expected 'best', 'all' or layer numbers, got {' '.join(args.layers)}") from None
    features: dict = {"model": args.model, "layers": candidates}
    if args.features != "words":
        features["pooling"] = "window"
        features["window_pool"] = args.features.split(":", 1)[1]
    for name, value in (("context", args.context), ("word_piece", args.word_piece)):
        if value is not None:
            features[name] = value
    if args.delays is not None:
        features["delays"] = tuple(args.delays)
    return EncodeConfig(
        dataset=args.dataset, participants=tuple(args.participants or ()), layers=mode, features=features,
        preprocess=preprocess_overrides(args), alpha=args.alpha, fdr=args.fdr, group_test=args.group_test,
        fit_to=args.fit_to,
        backend=args.backend, blas_threads=args.threads or None,
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from brainviz.evaluation._cli_common import table_format, write_outputs
    from brainviz.evaluation.encode import encode

    table_format(args.out)  # fail before computing
    config = config_from_args(args)
    result = encode(config, cache=False if args.no_cache else None,
                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = result.summary()
    table, js = write_outputs(result.to_frame(), summary, args.out)
    tag = " [simulated]" if summary.get("simulated") else ""
    print(f"{summary['dataset_name']}{tag}: {summary['n_participants']} participants, {summary['cv']}")
    units = summary["units"]
    show = list(units)[:12] if len(units) > 12 else list(units)
    for name in show:
        e = units[name]
        line = f"  {name}: mean r {_fmt(e['mean_r'])}"
        if "r" in e:
            line += f" (p {_fmt(e['r']['p'], 3)}, q {_fmt(e['r']['q'], 3)})"
        line += (f", low-level r {_fmt(e['mean_r_baseline'])}, word rate r {_fmt(e['mean_r_word_rate'])}, "
                 f"trend r {_fmt(e['mean_r_trend'])}, unique LM R2 {_fmt(e['mean_unique_lm'])}")
        if "unique_lm" in e:
            line += f" (q {_fmt(e['unique_lm']['q'], 3)}: LM {'adds' if e['lm_adds_beyond_lowlevel'] else 'does not add'} " \
                    "variance beyond the low-level bands)"
        line += f", ceiling {_fmt(e['ceiling'])}"
        print(line)
    if len(units) > len(show):
        print(f"  ... {len(units) - len(show)} more units in {table}")
    if summary.get("n_significant"):
        n = summary["n_significant"]
        print(f"significant units (q <= {config.alpha}): r > 0 {n['r']}/{len(units)}, unique LM > 0 {n['unique_lm']}/{len(units)}")
    for note in summary["notes"][2:]:
        print(f"note: {note}")
    print(f"wrote {table} and {js}")
    return 0


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
