"""Wall time of a sweep on a local Ray vs the same jobs one after the other, side by side.

    python bench/sweep.py                 # 2 variants x 3 participants x 2 folds x 2 seeds, tiny BERT
    python bench/sweep.py --ray-cpus 8    # a bigger machine
    python bench/sweep.py --base pretrained --dataset PATH --epochs vanilla=10 fine-tuned=10,2

The grid is the one of the sweep test (24 jobs); by default each job trains a tiny random
BERT (2 layers, hidden 32) on a tiny planted-signal dataset, so the numbers measure the
sweep machinery (process start, Ray scheduling, model loading) as much as training; with
``--base pretrained --dataset <simulated small>`` they measure real work.

Rows (one run, same machine, printed together):

- sequential, 1 thread per job: ``--backend local`` (one job after the other in this process);
- sequential, all threads: the same with torch using every core (a plain ``train`` loop);
- Ray, N workers x 1 thread: ``--backend ray`` on a local Ray of N CPUs, including its
  start-up (reported separately) and the workers' first imports.

Every run writes fresh checkpoints into a temporary folder; predictions of the Ray run are
checked identical to the sequential run's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def same_predictions(a: Path, b: Path) -> bool:
    fa, fb = sorted(a.rglob("predictions/**/*.npz")), sorted(b.rglob("predictions/**/*.npz"))
    if [f.relative_to(a) for f in fa] != [f.relative_to(b) for f in fb] or not fa:
        return False
    for x, y in zip(fa, fb):
        with np.load(x) as p, np.load(y) as q:
            if not np.array_equal(p["predictions"], q["predictions"]):
                return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--dataset", default=None, help="dataset folder (default: a tiny one, 3 participants x 3 runs)")
    ap.add_argument("--base", default=None, help="encoder (default: a tiny random BERT)")
    ap.add_argument("--participants", nargs="+", default=["P1", "P2", "P3"])
    ap.add_argument("--folds", nargs="+", default=["run-1", "run-2"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", nargs="+", default=["vanilla=3", "fine-tuned=2,2"])
    ap.add_argument("--skip-threads", action="store_true", help="skip the all-threads sequential row")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    os.environ.setdefault("BRAINVIZ_CACHE", str(tmp / "cache"))
    os.environ.setdefault("BRAINVIZ_MODELS", str(tmp / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    from brainviz.sweep import SweepConfig, run_sweep
    from brainviz.sweep._cli import _epochs
    from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset

    hf_logging.disable_progress_bar()
    train = {"preset": "quick"}
    if args.base is None:
        train["base"] = str(make_tiny_bert(tmp / "bert"))
    else:
        train["base"] = args.base
    dataset = args.dataset or str(make_tiny_dataset(tmp / "data", n_fmri=3, n_meg=0))
    if args.dataset is None:
        train["preprocess"] = TINY_PREPROCESS
    epochs = _epochs(args.epochs)
    cfg = SweepConfig(dataset=dataset, variants=tuple(epochs), out=str(tmp / "x"), participants=tuple(args.participants),
                      folds=tuple(args.folds), seeds=tuple(args.seeds), train=train, epochs=epochs, num_cpus=1)
    n_cores = os.cpu_count() or 1
    print(f"{n_cores} CPU cores, torch {torch.__version__}, load average at start: {load()}")
    rows = []
    try:
        t0 = time.perf_counter()
        seq = run_sweep(cfg.replace(out=str(tmp / "seq1"), backend="local", num_cpus=1), bar=False)
        t_seq1 = time.perf_counter() - t0
        assert seq.ok, seq.failed
        n_jobs = len(seq.jobs)
        rows.append(("sequential, 1 thread per job", t_seq1, "", load()))
        if not args.skip_threads:
            t0 = time.perf_counter()
            seqn = run_sweep(cfg.replace(out=str(tmp / "seqN"), backend="local", num_cpus=float(n_cores)), bar=False)
            assert seqn.ok, seqn.failed
            rows.append((f"sequential, {n_cores} threads", time.perf_counter() - t0, "", load()))
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                                           **{k: os.environ[k] for k in ("BRAINVIZ_CACHE", "BRAINVIZ_MODELS", "HF_HUB_OFFLINE")}}})
        t_init = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = run_sweep(cfg.replace(out=str(tmp / "ray"), backend="ray"), bar=False)
        t_ray = time.perf_counter() - t1
        ray.shutdown()
        assert res.ok, res.failed
        same = same_predictions(tmp / "seq1", tmp / "ray")
        rows.append((f"Ray, {args.ray_cpus} workers x 1 thread (+ start {t_init:.1f} s)", t_ray + t_init,
                     "predictions identical" if same else "PREDICTIONS DIFFER", load()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"grid: {'+'.join(epochs)} x {len(args.participants)} participants x {len(args.folds)} folds x "
          f"{len(args.seeds)} seeds = {n_jobs} jobs; base {'tiny random BERT' if args.base is None else args.base}")
    print(f"{'run':<52} {'wall s':>8} {'jobs/min':>9} {'vs seq 1 thread':>16}  load after  check")
    for name, t, note, la in rows:
        print(f"{name:<52} {t:>8.1f} {60 * n_jobs / t:>9.1f} {t_seq1 / t:>15.2f}x  {la:<11} {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
