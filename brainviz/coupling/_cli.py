"""``python -m brainviz couple``: couple BERT artificial neurons with fMRI brain networks."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "couple",
        help="couple ANs (query/key dimensions) of a model with brain networks (Liu et al. 2023)",
        description=(
            "Couple every artificial neuron (layer x head x query/key dimension) of a BERT-family "
            "model with functional brain networks (VS-DBN or ICA) of a listening dataset. Writes "
            "one row per AN (its best network, r, permutation p, FDR q) to OUT (.csv or .parquet), "
            "plus OUT-stem.summary.json (per-layer summaries) and OUT-stem.maps.npy (network maps)."
        ),
    )
    p.add_argument("--dataset", required=True, help="dataset folder (with dataset.json)")
    p.add_argument("--story", required=True, help="story name (its run label for listening data)")
    p.add_argument("--select-story", nargs="+", metavar="STORY",
                   help="cross-story pairing: pick each BN's best AN (|r|) on these stories and test that pair "
                        "alone on --story (one test per BN, BH over BNs); writes OUT-stem.cross.csv")
    p.add_argument("--model", default="pretrained", help="'pretrained', a checkpoint or a Hugging Face folder")
    p.add_argument("--bn", choices=("vsdbn", "ica"), default="ica",
                   help="network extraction: ica (default) or the paper's vsdbn")
    p.add_argument("--n-networks", type=int, default=None, help="number of networks (default: preset's, 128 paper / 32 quick)")
    p.add_argument("--permutations", type=int, default=5000, help="null draws for p-values (default 5000)")
    p.add_argument("--null", choices=("circular", "phase"), default="circular", help="null model (default circular shifts)")
    p.add_argument("--selection", choices=("max", "pair"), default="max",
                   help="null of the max over partners (default) or of the chosen pair only (per-pair test)")
    p.add_argument("--preset", choices=("quick", "paper"), default="quick", help="network training settings (default quick)")
    p.add_argument("--group", choices=("concat", "average"), default="average",
                   help="train networks on the participant average of each story (default) or on all "
                        "participants' TRs (concat, the paper)")
    p.add_argument("--cross-null", choices=("phase", "circular"), default="phase",
                   help="null of the cross-story test (--select-story): phase randomisation (default) or circular shifts")
    p.add_argument("--cross-permutations", type=int, default=0,
                   help="null draws of the cross-story test (default 0: enough for the FDR level to be reachable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pos", action="store_true", help="skip part-of-speech tagging of ANs")
    p.add_argument("--shuffle-words", action="store_true", help="null control: shuffle the story's words")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write data_cache/")
    p.add_argument("--out", required=True, help="pairs table: FILE.csv or FILE.parquet")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from brainviz.coupling.api import CouplingConfig, run_coupling

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        from brainviz.errors import UsageError

        raise UsageError(f"--out {out}: must end in .csv or .parquet")
    config = CouplingConfig(
        bn=args.bn, n_networks=args.n_networks, preset=args.preset, group=args.group, permutations=args.permutations,
        null=args.null, selection=args.selection, seed=args.seed, pos=not args.no_pos, shuffle_words=args.shuffle_words,
        cross_null=args.cross_null, cross_permutations=args.cross_permutations,
    )
    last = [-1]

    def progress(frac: float, msg: str) -> None:
        pct = int(100 * frac)
        if pct != last[0]:
            last[0] = pct
            print(f"[{pct:3d}%] {msg}", file=sys.stderr, flush=True)

    result = run_coupling(args.dataset, args.story, args.model, config, None if args.quiet else progress,
                          cache=not args.no_cache)
    paths = result.save(out)
    s = result.summary()
    cross = None
    if args.select_story:
        from brainviz._io import atomic_path
        from brainviz.coupling.api import cross_story_coupling

        df = cross_story_coupling(args.dataset, args.select_story, args.story, args.model, config,
                                  None if args.quiet else progress, cache=not args.no_cache)
        cross = out.with_name(out.stem + ".cross.csv")
        with atomic_path(cross) as tmp:
            df.to_csv(tmp, index=False)
        s["cross_story"] = {"file": str(cross), "test": df.attrs["test"], "n_significant_bns": int(df.significant.sum()),
                            "reachability": df.attrs["reachability"]}
    print(json.dumps({
        "pairs": str(paths["pairs"]), "summary": str(paths["summary"]), "maps": str(paths["maps"]),
        "simulated": s["simulated"], "n_ans": s["n_ans"], "n_bns": s["n_bns"],
        "n_significant_ans": s["n_significant_ans"], "mean_best_r": round(s["mean_best_r"], 4),
        "tests": s["tests"], "reachability": {k: v["message"] for k, v in s["reachability"].items()},
        **({"cross_story": s["cross_story"]} if cross else {}),
        "most_anchored_bn": {k: v for k, v in s["most_anchored_bn"].items() if k != "counts"},
    }, indent=2))
    return 0
