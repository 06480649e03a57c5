"""Speech evaluation on a simulated listening dataset: data efficiency and residual alignment.

For new participants (not used for tuning), ridge from the last layer of each speech model
(pooled per TR chunk, 5 chunks = FIR delays) to their fMRI, trained on the first m minutes of
``--train-run`` and scored on ``--test-run``; then the alignment left after regressing the
low-level acoustic bands (log RMS, 8 mel bands, word onsets per chunk) out of the features.
Units are grouped with the simulation's ground truth: the auditory network (driver
``word_rate``, low-level), the language regions (semantic readable + brain-specific drivers)
and null vertices. Prints JSON (and writes it with ``--out``).

    python bench/speech_check.py --dataset D --model pretrained=/models/tiny-w2v2 \
        --model tuned=models/ft-w2v2 --participants sub-11 ... --test-run listening_2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="speech model folder / hub id / speech checkpoint (repeatable)")
    p.add_argument("--participants", nargs="+", required=True)
    p.add_argument("--test-run", required=True)
    p.add_argument("--minutes", nargs="+", type=float, default=[1, 2, 3, 4, 6])
    p.add_argument("--n-null", type=int, default=1000, help="null vertices scored (a fixed random sample)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from brainviz.data import load_dataset
    from brainviz.evaluation.speech import data_efficiency, data_ratio, group_statistics, residual_alignment
    from brainviz.features.speech import audio_corpus, lowlevel_audio_features, speech_layer_features

    t0 = time.time()
    ds = load_dataset(args.dataset)
    gt = os.path.join(args.dataset, "ground_truth")
    gtj = json.load(open(os.path.join(gt, "ground_truth.json")))
    planted = np.load(os.path.join(gt, "planted_mask.npy"))
    regions = np.load(os.path.join(gt, "region_labels.npy"))
    maps = np.load(os.path.join(gt, "network_maps.npy"))
    names = [n["name"] for n in gtj["networks"]]
    auditory = np.flatnonzero(maps[names.index("auditory")] > 0) if "auditory" in names else np.zeros(0, int)
    language = np.flatnonzero((regions > 0) & ~np.isin(np.arange(regions.size), auditory))
    null = np.sort(np.random.default_rng(0).choice(np.flatnonzero(~planted), args.n_null, replace=False))
    units = np.r_[auditory, language, null]
    group = np.array(["auditory"] * len(auditory) + ["language"] * len(language) + ["null"] * len(null))
    corpus = audio_corpus(ds, args.participants, units=units)
    low = lowlevel_audio_features(corpus, ds)
    tr = float(ds.tr)
    out: dict = {"dataset": args.dataset, "participants": args.participants, "test_run": args.test_run,
                 "n_units": {g: int((group == g).sum()) for g in ("auditory", "language", "null")},
                 "models": {}, "load_before": os.getloadavg()}
    feats = {}
    for item in args.model:
        name, path = item.split("=", 1)
        feats[name] = speech_layer_features(path, ds, args.participants, corpus=corpus).layers[-1]
    feats["lowlevel"] = low
    local = np.arange(len(units))
    curves = data_efficiency(feats, corpus, args.participants, args.test_run, args.minutes, tr)
    by_group = []
    for g in ("auditory", "language"):
        c = data_efficiency(feats, corpus, args.participants, args.test_run, args.minutes, tr, units=local[group == g])
        c["group"] = g
        by_group.append(c)
    import pandas as pd

    by_group = pd.concat(by_group)
    out["data_efficiency"] = (by_group.groupby(["group", "model", "minutes"])["mean_r"].mean().round(4)
                              .reset_index().to_dict(orient="records"))
    model_names = [m.split("=", 1)[0] for m in args.model]
    if len(model_names) >= 2:
        for g in ("auditory", "language"):
            r = data_ratio(by_group[by_group["group"] == g], model_names[1], model_names[0])
            out.setdefault("data_ratio", {})[g] = r.round(4).to_dict(orient="records")
    del curves
    for name in model_names:
        res = residual_alignment(feats[name], low, corpus, args.participants, args.test_run)
        stats = group_statistics(res, group[res["unit"].to_numpy()])
        out["models"][name] = stats.set_index("group").round(5).to_dict(orient="index")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["wall_s"] = round(time.time() - t0, 1)
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 1)
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
