"""What the simulated default offers: SNR, lexicon coverage and the ridge ceilings of both components.

The simulator plants two components in every language region (``docs/simulation.md``):

* **readable** - linear in word-level semantic / lexical features that pretrained token
  representations encode: it should be recoverable from a pretrained LM's layer-wise
  features (what ``encode`` fits);
* **brain-specific** - nonlinear functions of the window's words, orthogonal to the readable
  drivers: it should *not* be a linear read-out of pretrained features (what brain-tuning
  has to learn).

For each experiment this script prints

1. the measured SNR (per-TR signal r^2 of each component in the language regions,
   inter-participant correlation) from ``ground_truth.json -> measured``;
2. per-category coverage of each held-out run by the other runs (share of its category
   tokens whose form occurs with that category in the training runs);
3. the held-out (leave-one-run-out) R^2 of himalaya ridge regressions (alpha per target
   chosen by inner 5-fold CV on contiguous blocks of the training runs) from the
   packaged all-MiniLM-L6-v2's features, layer by layer (0 = embeddings), to every BOLD-level
   driver and to each region's readable / specific signal, with two poolings
   (``brainviz.features``):

   - ``words``: each word's state (mean of its pieces, 20 preceding words of context),
     Lanczos-resampled to the TRs, FIR delays 1-4 TRs (Huth et al. 2016 / LeBel et al. 2023);
   - ``window``: the words in [t - 10.1 s, t) read together, mean of the word pieces
     (Schwartz et al. 2019's window).

   The best layer is reported next to the profile (picked on the held-out score, so mildly
   optimistic with 7 layers to choose from).

Usage::

    python bench/simulation_check.py                       # default dataset (built if missing)
    python bench/simulation_check.py --data /tmp/sim --out /tmp/sim_check.json

A few minutes on 2 CPU cores for the default preset; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALPHAS = np.logspace(-2, 7, 19)


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def _zscore_within_runs(x: np.ndarray, runs: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float64, copy=True)
    for r in np.unique(runs):
        m = runs == r
        out[m] -= out[m].mean(0)
        sd = out[m].std(0)
        out[m] /= np.where(sd > 0, sd, 1.0)
    return out


def loro_r2(x: np.ndarray, y: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Leave-one-run-out R^2 (pooled over held-out runs, each against its own mean) per column of y.

    himalaya ridge (``KernelRidgeCV`` with a linear kernel when there are fewer training rows
    than features, else ``RidgeCV``), one alpha per target chosen by inner 5-fold CV on
    contiguous blocks (neighbouring TRs share words, so shuffled folds would leak).
    """
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import KFold

    pred = np.zeros_like(y)
    for r in np.unique(runs):
        test = runs == r
        mx, sx = x[~test].mean(0), x[~test].std(0)
        sx[sx == 0] = 1.0
        cv = KFold(5, shuffle=False)
        if int((~test).sum()) < x.shape[1]:
            model = KernelRidgeCV(alphas=ALPHAS, kernel="linear", cv=cv)
        else:
            model = RidgeCV(alphas=ALPHAS, cv=cv)
        ym = y[~test].mean(0)
        model.fit((x[~test] - mx) / sx, y[~test] - ym)
        pred[test] = np.asarray(model.predict((x[test] - mx) / sx)) + ym
    sse = ((y - pred) ** 2).sum(0)
    sst = sum(((y[runs == r] - y[runs == r].mean(0)) ** 2).sum(0) for r in np.unique(runs))
    return 1.0 - sse / sst


def features(dataset, kept_rows: np.ndarray, runs: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    """``{"words": (L, n_kept, 4 * H), "window": (L, n_kept, H)}`` from the packaged MiniLM."""
    from brainviz.data.preprocess import word_windows
    from brainviz.features import delay_by_run, lanczos_matrix, window_states, word_states
    from brainviz.models.encoder import load_encoder

    model, tok = load_encoder()
    model.eval()
    stim = dataset.stimulus
    words = stim["word"].astype(str).tolist()
    stim_runs = stim["run"].astype(str).to_numpy()
    onsets = stim["onset"].to_numpy(dtype=float)
    states = word_states(model, tok, words, stim_runs, context=20)  # (L, n_words, H)
    rec = dataset.fmri[dataset.participants[0]]
    all_runs = rec.run_labels.astype(str)
    all_times = rec.times
    lanczos = np.zeros((states.shape[0], len(all_times), states.shape[2]), dtype=np.float32)
    for r in dict.fromkeys(all_runs.tolist()):
        trs, ws = np.flatnonzero(all_runs == r), np.flatnonzero(stim_runs == r)
        m = lanczos_matrix(onsets[ws], all_times[trs])
        lanczos[:, trs] = np.einsum("tw,lwh->lth", m, states[:, ws])
    delayed = np.stack([delay_by_run(layer, all_runs)[kept_rows] for layer in lanczos])
    windows = word_windows(dataset, runs, times, 10.1)
    win = window_states(model, tok, [[words[i] for i in w] for w in windows], pool="mean")
    return {"words": delayed, "window": win}


def region_signals(gt, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Each left region's readable and specific signal (drivers @ mean region weights)."""
    comps = {d["name"]: d["component"] for d in gt["driver_specs"]}
    w = gt["spatial_weights"].astype(float)
    labels = gt["region_labels"]
    cols, sigs = [], []
    for reg in gt["regions"]:
        if reg["hemisphere"] != "left":
            continue
        mean_w = w[:, labels == reg["label"]].mean(1)
        for comp in ("readable", "specific"):
            sel = np.array([comps[n] == comp for n in names])
            cols.append(f"{reg['name']}:{comp}")
            sigs.append(gt["drivers"][:, sel].astype(float) @ mean_w[sel])
    return cols, np.stack(sigs, axis=1)


def check(dataset_dir: Path, feature_cache: Path | None = None) -> dict:
    from brainviz.data import load_dataset
    from brainviz.data.preprocess import PreprocessConfig, kept_tr_mask
    from brainviz.data.simulate import load_ground_truth

    ds = load_dataset(dataset_dir, check_values=False)
    gt = load_ground_truth(ds)
    rec = ds.fmri[ds.participants[0]]
    keep = kept_tr_mask(rec, PreprocessConfig())
    rows = np.flatnonzero(keep)
    runs = rec.run_labels[keep].astype(str)
    t0 = time.time()
    cache_file = None
    if feature_cache is not None:
        import hashlib

        key = hashlib.sha1(("\n".join(ds.stimulus["word"].astype(str)) + repr(rows.tolist())).encode()).hexdigest()[:16]
        cache_file = Path(feature_cache) / f"minilm-{key}.npz"
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file) as z:
            feats = {k: z[k] for k in z.files}
    else:
        feats = features(ds, rows, runs, rec.times[keep])
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache_file, **feats)
    t_feat = time.time() - t0
    print(f"  features: {t_feat:.0f} s", file=sys.stderr, flush=True)
    names = list(gt["driver_names"])
    comps = {d["name"]: d["component"] for d in gt["driver_specs"]}
    region_cols, region_sig = region_signals(gt, names)
    targets = np.concatenate([gt["drivers"][rows].astype(float), region_sig[rows]], axis=1)
    targets = _zscore_within_runs(targets, runs)
    cols = names + region_cols
    out = {"dataset": str(dataset_dir), "n_trs": int(len(rows)), "feature_seconds": round(t_feat, 1),
           "load_average_start": load_average(), "measured": gt["measured"],
           "category_coverage": gt.get("category_coverage", {}), "components": comps, "ridge": {}}
    t0 = time.time()
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(limits=1)  # many small solves: BLAS threads only thrash on a shared machine
    for pooling, x in feats.items():
        per_layer = []
        for layer in range(x.shape[0]):
            per_layer.append(loro_r2(x[layer].astype(np.float64), targets, runs))
            print(f"  {pooling} layer {layer}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        r2 = np.asarray(per_layer)  # layers x targets
        readable = [i for i, n in enumerate(cols) if comps.get(n) == "readable" or n.endswith(":readable")]
        specific = [i for i, n in enumerate(cols) if comps.get(n) == "specific" or n.endswith(":specific")]
        drivers_r = [i for i in readable if cols[i] in comps]
        drivers_s = [i for i in specific if cols[i] in comps]
        best = int(np.argmax(r2[:, drivers_r].mean(1)))
        out["ridge"][pooling] = {
            "layers": list(range(x.shape[0])),
            "mean_r2_readable_drivers_by_layer": [round(float(v), 3) for v in r2[:, drivers_r].mean(1)],
            "mean_r2_specific_drivers_by_layer": [round(float(v), 3) for v in r2[:, drivers_s].mean(1)],
            "best_layer": best,
            "r2_at_best_layer": {c: round(float(v), 3) for c, v in zip(cols, r2[best])},
            "max_over_layers": {c: round(float(v), 3) for c, v in zip(cols, r2.max(0))},
        }
    limit.restore_original_limits()
    out["ridge_seconds"] = round(time.time() - t0, 1)
    out["load_average_end"] = load_average()
    return out


def _print(e: str, res: dict) -> None:
    m = res["measured"]
    print(f"\n=== {e} (simulated): {res['n_trs']} kept TRs; features {res['feature_seconds']} s, "
          f"ridge {res['ridge_seconds']} s; load average {res['load_average_start']} -> {res['load_average_end']}")
    comp = m.get("signal_r2_by_component", {})
    isc = m.get("inter_participant_correlation", {})
    print("per-TR signal r^2 (language-region vertices x participants): "
          f"all planted median {m['signal_r2_planted']['median']:.3f} p90 {m['signal_r2_planted']['p90']:.3f}; "
          + "; ".join(f"{k} median {comp[k]['median']:.3f} p90 {comp[k]['p90']:.3f}" for k in ("readable", "specific") if k in comp))
    if isc:
        print(f"inter-participant correlation ({isc['n_participants']} participants): language regions median "
              f"{isc['language_regions']['median']:.3f} p90 {isc['language_regions']['p90']:.3f} max "
              f"{isc['language_regions']['max']:.3f}; null median {isc['null']['median']:.3f} p90 {isc['null']['p90']:.3f}")
    cov = res["category_coverage"]
    if cov:
        cats = list(next(iter(cov.values())))
        print("category coverage of each held-out run by the other runs (token share; tokens in the run):")
        print(f"{'run':12s} " + " ".join(f"{c[:10]:>10s}" for c in cats))
        for run, per in cov.items():
            print(f"{run:12s} " + " ".join(
                f"{(per[c]['token_coverage'] or 0):5.2f} ({per[c]['tokens']:3d})" if per[c]["tokens"] else f"{'-':>10s}"
                for c in cats))
    for pooling, r in res["ridge"].items():
        print(f"\nridge from MiniLM '{pooling}' features, held-out R^2 by layer (0 = embeddings): "
              f"readable drivers {r['mean_r2_readable_drivers_by_layer']}, "
              f"specific drivers {r['mean_r2_specific_drivers_by_layer']}; best layer {r['best_layer']}")
        print(f"{'target':28s} {'component':9s} {'best layer':>10s} {'max':>6s}")
        for c, v in r["r2_at_best_layer"].items():
            kind = res["components"].get(c, c.split(":")[-1] if ":" in c else "")
            print(f"{c:28s} {kind:9s} {v:10.3f} {r['max_over_layers'][c]:6.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with reading/ and listening/ (default: the default simulated dataset, built if missing)")
    parser.add_argument("--experiments", nargs="+", default=["reading", "listening"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--feature-cache", type=Path, default=None, help="folder to cache the MiniLM features in")
    args = parser.parse_args(argv)
    if args.data is None:
        from brainviz.data.simulate import ensure_default_dataset

        data = ensure_default_dataset()
        dirs = {e: data[e] for e in args.experiments}
    else:
        dirs = {e: args.data / e for e in args.experiments}
    results = {}
    for e, d in dirs.items():
        results[e] = check(d, args.feature_cache)
        _print(e, results[e])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
