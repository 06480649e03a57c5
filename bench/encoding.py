"""Benchmark: encode's features + banded ridge vs plain scikit-learn RidgeCV, side by side.

Case (issue 11): 9 participants x 20,484 vertices, two runs (the two packaged listening stories,
~2,000 words, TR 2 s), leave-one-run-out. Responses are synthetic (a random projection of
layer-4 MiniLM features plus word rate, plus noise) so that both pipelines have something to
find; every number below is measured in this one run.

* features: word states of MiniLM layer 4 (causal context 20 words, one forward pass per
  word's context through layers 1-4; the deeper layers are not run), Lanczos + delays 1-4,
  low-level bands - computed cold (no cache), then once more from the cache;
* brainviz: per participant and fold, banded ridge [layer 4, low-level] via
  ``banded_ridge_fold`` (kernel form, 9 band ratios x 17 alphas, inner CV on contiguous
  blocks of the training run; himalaya's ``MultipleKernelRidgeCV`` search, run by
  ``brainviz.evaluation._kernel_search`` on CPU) - what ``encode`` fits for the joint model;
* sklearn A: ``RidgeCV(alphas, cv=<the same inner blocks>)`` on the concatenated bands (the
  same validation scheme; scikit-learn then picks one alpha for all vertices). It refits a
  multi-output Ridge per alpha and fold, so by default it runs on the first participant only
  (``--sklearn-a-participants``) and its ratio is reported for that participant;
* sklearn B: ``RidgeCV(alphas, alpha_per_target=True)`` (efficient leave-one-out / GCV: one
  alpha per vertex, but LOO on autocorrelated TRs - shown because it is what people use).

Scores: mean held-out r over vertices (each fold scored on its own). Run:
``python bench/encoding.py [--participants 9] [--vertices 20484] [--threads 1]``; prints the
load average with every figure (other jobs on a shared machine slow everything down).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def build_dataset(root: Path):
    import pandas as pd

    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    stories = Path(__file__).resolve().parents[1] / "brainviz" / "data" / "stories"
    rows, runs = [], []
    for k, name in enumerate(("listening_1.txt", "listening_2.txt")):
        words = (stories / name).read_text().split()
        onsets = 2.0 + np.arange(len(words)) / 2.5  # 2.5 words / s
        run = f"run-{k + 1}"
        rows += [{"onset": o, "duration": 0.3, "word": w, "run": run, "story": name[:-4]} for o, w in zip(onsets, words)]
        runs.append(Run(run, int(np.ceil((onsets[-1] + 10) / 2.0))))
    stim = pd.DataFrame(rows)
    n = sum(r.n_trs for r in runs)
    space = Space("fsaverage5")
    rec = FMRIRecording("bench", np.zeros((n, 20484), np.float32), 2.0, runs, space)
    return Dataset(DatasetMeta("bench-encoding", simulated=True, modality="listening"), stim, {"bench": rec})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=9)
    ap.add_argument("--vertices", type=int, default=20484)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for every ridge (default 1)")
    ap.add_argument("--sklearn-a-participants", type=int, default=1,
                    help="participants on which the (slow) grid-search variant A also runs (default 1; its ratio is "
                         "per participant)")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from brainviz.cache import Cache
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples
    from brainviz.data.splits import inner_folds, make_folds
    from brainviz.evaluation.encoding import ENCODE_ALPHAS, banded_ridge_fold, himalaya_backend, pearson_r
    from brainviz.features.config import FeatureConfig
    from brainviz.features.tr import baseline_features, lm_features

    import tempfile

    print(f"start: {load()} ({os.cpu_count()} CPUs; other jobs may share them)")
    ds = build_dataset(Path("."))
    pre = PreprocessConfig(trim_start=0, trim_end=0, drop_empty=False, detrend=False, zscore=False)
    ex = fmri_examples(ds, "bench", pre)
    feat = FeatureConfig(layers=(4,))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(tmp)
        t0 = time.perf_counter()
        lm = lm_features(ds, ex, feat, cache=cache)[4]
        base = baseline_features(ds, ex, feat, cache=cache)
        t_feat = time.perf_counter() - t0
        t0 = time.perf_counter()
        lm_features(ds, ex, feat, cache=cache)
        baseline_features(ds, ex, feat, cache=cache)
        t_feat_cached = time.perf_counter() - t0
    low = base["lowlevel"]
    print(f"features: {len(ds.stimulus)} words, {len(ex)} TRs, LM {lm.shape[1]} + low-level {low.shape[1]} columns; "
          f"cold {t_feat:.1f} s (layers 0-4 computed, layer 4 used), cached {t_feat_cached:.2f} s  [{load()}]")

    rng = np.random.default_rng(0)
    z = (lm - lm.mean(0)) / (lm.std(0) + 1e-6)
    w = rng.standard_normal((z.shape[1], 16)) / np.sqrt(z.shape[1])
    latent = np.c_[z @ w, (low[:, :4] - low[:, :4].mean(0)) / (low[:, :4].std(0) + 1e-6)]
    mix = rng.standard_normal((latent.shape[1], args.vertices)).astype(np.float32) * 0.3
    signal = (latent @ mix).astype(np.float32)
    folds = make_folds(ex.runs, "runs")
    x_all = np.c_[lm, low]

    def responses(p):
        r = np.random.default_rng(100 + p)
        return signal + r.standard_normal(signal.shape).astype(np.float32) * 1.5

    timings = {"brainviz": 0.0, "sklearn_a": 0.0, "sklearn_b": 0.0}
    brainviz_first = 0.0  # brainviz ridge time on the participants where sklearn A runs too
    scores = {k: [] for k in timings}
    from sklearn.linear_model import RidgeCV as SkRidgeCV
    from sklearn.preprocessing import StandardScaler

    for p in range(args.participants):
        y = responses(p)
        for f in folds:
            tr, te = f.train, f.test
            inner = inner_folds(ex.runs[tr], pre.buffer, tr_index=ex.tr_index[tr])
            with threadpool_limits(args.threads), himalaya_backend("numpy"):
                t0 = time.perf_counter()
                fit = banded_ridge_fold([lm[tr], low[tr]], y[tr], [lm[te], low[te]], inner)
                timings["brainviz"] += time.perf_counter() - t0
                if p < args.sklearn_a_participants:
                    brainviz_first += time.perf_counter() - t0
            scores["brainviz"].append(np.nanmean(pearson_r(fit.prediction, y[te])))
            with threadpool_limits(args.threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sc = StandardScaler().fit(x_all[tr])
                xa, xb = sc.transform(x_all[tr]), sc.transform(x_all[te])
                if p < args.sklearn_a_participants:
                    t0 = time.perf_counter()
                    m = SkRidgeCV(alphas=np.array(ENCODE_ALPHAS), cv=inner).fit(xa, y[tr])
                    pred = m.predict(xb)
                    timings["sklearn_a"] += time.perf_counter() - t0
                    scores["sklearn_a"].append(np.nanmean(pearson_r(pred, y[te])))
                t0 = time.perf_counter()
                m = SkRidgeCV(alphas=np.array(ENCODE_ALPHAS), alpha_per_target=True).fit(xa, y[tr])
                pred = m.predict(xb)
                timings["sklearn_b"] += time.perf_counter() - t0
                scores["sklearn_b"].append(np.nanmean(pearson_r(pred, y[te])))
        print(f"participant {p + 1}/{args.participants}: brainviz {timings['brainviz']:.1f} s, sklearn A "
              f"{timings['sklearn_a']:.1f} s, sklearn B {timings['sklearn_b']:.1f} s (cumulative)  [{load()}]", flush=True)

    print(f"\n{args.participants} participants x {args.vertices} vertices x {len(folds)} folds, {args.threads} BLAS thread(s)")
    total_b = t_feat + timings["brainviz"]
    print(f"  brainviz features (cold) + banded ridge : {total_b:8.1f} s  (ridge {timings['brainviz']:.1f} s)  "
          f"mean r {np.mean(scores['brainviz']):.4f}")
    if scores["sklearn_a"]:
        n_a = min(args.sklearn_a_participants, args.participants)
        print(f"  sklearn RidgeCV, same inner blocks (one alpha for all vertices), on {n_a} participant(s): ridge "
              f"{timings['sklearn_a']:.1f} s vs brainviz {brainviz_first:.1f} s on the same participant(s) -> brainviz "
              f"{timings['sklearn_a'] / max(brainviz_first, 1e-9):.2f}x faster; mean r {np.mean(scores['sklearn_a']):.4f} "
              f"vs brainviz {np.mean(scores['brainviz'][:len(scores['sklearn_a'])]):.4f}")
    tot = t_feat + timings["sklearn_b"]
    print(f"  features (cold) + sklearn RidgeCV per-vertex GCV/LOO: {tot:8.1f} s  (ridge {timings['sklearn_b']:.1f} s)  "
          f"mean r {np.mean(scores['sklearn_b']):.4f}  -> brainviz {tot / total_b:.2f}x faster overall, ridge alone "
          f"{timings['sklearn_b'] / max(timings['brainviz'], 1e-9):.2f}x")
    print(f"end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
