"""Validation of ``encode`` on the simulated default (issue 11): planted vs null vertices.

Runs what ``python -m brainviz encode`` runs (``encode_participant`` per participant, the
per-fold inter-participant ceiling, the group summary) on a subset of vertices of the
**simulated** default reading experiment: ``--n-readable`` vertices of the ground truth's
``readable_mask`` (they carry the component pretrained features can read out) and ``--n-null``
vertices outside ``planted_mask``. Prints, for every model (LM at the layer chosen per vertex,
LM + low-level banded, low-level, word rate, trend): AUC of planted vs null on the group-mean
held-out r, mean r in each group, and the group test's discoveries (q <= 0.05) in each group;
then the LM's median r in readable vertices next to the median ``sqrt(readable_r2)`` (the
noise-free r of the whole readable component). Numbers depend on the simulation seed and on
``--layers`` (default {1, 3}, to fit a 2-core CPU).

    python bench/encode_validation.py [--participants 18] [--layers 1 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a planted vertex scores above a null one (ties count half)."""
    from scipy.stats import rankdata

    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    ranks = rankdata(np.r_[pos, neg])
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="simulated reading dataset (default: the embedded default)")
    ap.add_argument("--participants", type=int, default=None, help="first N participants (default: all)")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--n-readable", type=int, default=300)
    ap.add_argument("--n-null", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from brainviz.data import load_dataset
    from brainviz.data.preprocess import fmri_examples, folds as make_folds
    from brainviz.data.simulate import ensure_default_dataset
    from brainviz.evaluation.encode import EncodeConfig, EncodeResult, encode_participant, fold_ceilings
    from brainviz.features.tr import baseline_features, lm_features

    t0 = time.perf_counter()
    root = Path(args.dataset) if args.dataset else Path(ensure_default_dataset()["reading"])
    ds = load_dataset(root)
    if not ds.simulated:
        raise SystemExit(f"{root}: not a simulated dataset (the validation needs its ground truth)")
    gt = root / "ground_truth"
    readable = np.load(gt / "readable_mask.npy")
    planted = np.load(gt / "planted_mask.npy")
    readable_r2 = np.load(gt / "readable_r2.npy")
    rng = np.random.default_rng(0)
    pos = np.sort(rng.choice(np.flatnonzero(readable), args.n_readable, replace=False))
    neg = np.sort(rng.choice(np.flatnonzero(~planted), args.n_null, replace=False))
    units = np.r_[pos, neg]
    is_pos = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]

    config = EncodeConfig(dataset=str(root), features={"layers": tuple(args.layers)})
    pre = config.preprocess_config()
    feat = config.feature_config().replace(window=pre.window)
    pids = ds.participants[: args.participants] if args.participants else ds.participants
    examples, folds, results = {}, {}, {}
    for i, p in enumerate(pids):
        ex = fmri_examples(ds, p, pre)
        examples[p] = dataclasses.replace(ex, data=np.ascontiguousarray(ex.data[:, units]))
        folds[p] = make_folds(examples[p], pre)
        lm = lm_features(ds, examples[p], feat)
        base = baseline_features(ds, examples[p], feat)
        results[p] = encode_participant(ds, examples[p], lm, base, config, folds[p])
        print(f"{p} ({i + 1}/{len(pids)}): {time.perf_counter() - t0:.0f} s  [load {os.getloadavg()[0]:.2f}]", flush=True)
    ceilings = fold_ceilings(examples, folds[pids[0]])
    for p in pids:
        results[p].ceiling = ceilings[p]
    res = EncodeResult(config, results, [str(u) for u in units], list(args.layers),
                       {"dataset": str(root), "simulated": True, "fit_to": "participant"})
    out = {"simulated": True, "dataset": str(root), "participants": len(pids), "layers": args.layers,
           "n_readable": len(pos), "n_null": len(neg), "models": {}}
    tests = res.group()["tests"]
    for model, test in (("lm", "r"), ("joint", "r_joint"), ("lowlevel", "r_baseline"), ("word_rate", "r_word_rate"),
                        ("trend", "r_trend")):
        mean_r = np.nanmean(res.stacked(model), axis=0)
        sig = tests[test].significant
        out["models"][model] = {"auc": round(auc(mean_r[is_pos], mean_r[~is_pos]), 4),
                                "mean_r_planted": round(float(np.nanmean(mean_r[is_pos])), 4),
                                "mean_r_null": round(float(np.nanmean(mean_r[~is_pos])), 4),
                                "significant_planted": int(sig[is_pos].sum()), "significant_null": int(sig[~is_pos].sum())}
    out["unique_lm_significant_planted"] = int(tests["unique_lm"].significant[is_pos].sum())
    out["unique_lm_significant_null"] = int(tests["unique_lm"].significant[~is_pos].sum())
    lm_r = np.nanmean(res.stacked("lm"), axis=0)
    out["median_lm_r_readable"] = round(float(np.median(lm_r[is_pos])), 4)
    out["median_sqrt_readable_r2"] = round(float(np.median(np.sqrt(readable_r2[pos]))), 4)
    out["median_ceiling_readable"] = round(float(np.nanmedian(res.ceiling()[is_pos])), 4)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
