"""Benchmark of the 20-vs-20 kernel and of the interactive two-model comparison.

    python bench/twenty_vs_twenty.py            # full benchmark (about a minute on 2 cores)
    python bench/twenty_vs_twenty.py --quick    # smaller sizes, for a smoke run

1. Kernel vs reference: random predictions/targets, draws made once, the project's kernel
   (``numba``, and ``torch``) and the straightforward numpy reference run on identical draws;
   accuracies are compared (float32 random data, small integers cast to float32 - exactly
   representable, many exact ties - and float64) and the speed ratio is printed.
2. The interactive case: 9 participants x 2 models x 4 held-out runs x 170 rows x 20,484
   units x 1000 draws through :func:`brainviz.evaluation.compare_predictions`, cold (empty
   cache, inputs hashed) and from the cache (inputs hashed again / key known), and through
   :func:`brainviz.evaluation.compare_models` from prediction folders on disk (the CLI/app
   path, keys from memoised file hashes).

Targets: kernel >= 10x the reference on a 2-core CPU; full case <= 10 s cold, <= 0.5 s cached.
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


class Timing(float):
    """A wall-clock time in seconds that also carries the process CPU time (all threads)."""

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> "Timing":
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj


def timed(fn, repeat: int = 1) -> tuple[Timing, object]:
    """Best wall time of ``repeat`` runs (with its CPU time) and the last result."""
    best, out = Timing(float("inf"), 0.0), None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best = Timing(wall, cpu)
    return best, out


def fmt(t: Timing, digits: int = 3) -> str:
    """``wall s (cpu s)``."""
    return f"{t:.{digits}f} s (cpu {t.cpu:.{digits}f})"


def kernel_section(rows: list, n_rows: int, n_units: int, n_samples: int, k: int, ref_units: int) -> None:
    from brainviz.evaluation import draw_indices, twenty_vs_twenty

    rng = np.random.default_rng(0)
    idx = draw_indices(n_rows, k=k, n_samples=n_samples, rng=1)
    t32 = rng.standard_normal((n_rows, n_units), dtype=np.float32)
    p32 = (0.3 * t32 + rng.standard_normal((n_rows, n_units), dtype=np.float32)).astype(np.float32)
    ti = rng.integers(-3, 4, (n_rows, n_units)).astype(np.float32)
    pi = rng.integers(-3, 4, (n_rows, n_units)).astype(np.float32)
    cases = {"float32 random": (p32, t32), "float32 small ints": (pi, ti), "float64 random": (p32.astype(np.float64), t32.astype(np.float64))}

    t_first, _ = timed(lambda: twenty_vs_twenty(p32[:, :8], t32[:, :8], indices=idx))
    rows.append(("numba first call (load/compile)", fmt(t_first, 2), "", ""))
    for name, (p, t) in cases.items():
        sub = slice(0, ref_units)
        t_ref, ref = timed(lambda: twenty_vs_twenty(p[:, sub], t[:, sub], indices=idx, backend="numpy"))
        scale = n_units / ref_units  # extrapolated to all units (the reference is linear in units)
        t_ref = Timing(t_ref * scale, t_ref.cpu * scale)
        t_nb, acc = timed(lambda: twenty_vs_twenty(p, t, indices=idx), repeat=3)
        same = np.array_equal(acc[: ref_units], ref, equal_nan=True)
        n_diff = int(np.sum(acc[:ref_units] != ref))
        rows.append((f"kernel numba, {name}", fmt(t_nb),
                     f"ref {fmt(t_ref, 2)} -> {t_ref / t_nb:.1f}x wall, {t_ref.cpu / t_nb.cpu:.1f}x cpu",
                     "identical" if same else f"{n_diff} units differ"))
    try:
        import torch  # noqa: F401

        from brainviz.backend import default_device

        device = default_device()
        n_t = n_units if device == "cuda" else ref_units  # torch on a CPU is slow: time a subset
        twenty_vs_twenty(p32[:, :8], t32[:, :8], indices=idx, backend="torch")
        t_t, acc_t = timed(lambda: twenty_vs_twenty(p32[:, :n_t], t32[:, :n_t], indices=idx, backend="torch"))
        acc_n = twenty_vs_twenty(p32[:, :n_t], t32[:, :n_t], indices=idx)
        note = "" if n_t == n_units else f"extrapolated from {n_t} units"
        t_t = Timing(t_t * n_units / n_t, t_t.cpu * n_units / n_t)
        rows.append((f"kernel torch ({device}), float32 random", fmt(t_t), note,
                     "identical to numba" if np.array_equal(acc_t, acc_n, equal_nan=True) else "DIFFERS"))
    except ImportError:
        rows.append(("kernel torch", "n/a", "torch not installed", ""))


def full_section(rows: list, n_participants: int, n_runs: int, rows_per_run: int, n_units: int, n_samples: int,
                 files: bool) -> None:
    from brainviz.cache import Cache
    from brainviz.evaluation import CompareConfig, compare_models, compare_predictions

    rng = np.random.default_rng(0)
    n_rows = n_runs * rows_per_run
    pids = [f"sub-{i + 1:02d}" for i in range(n_participants)]
    runs = np.repeat([f"run-{r + 1}" for r in range(n_runs)], rows_per_run)
    preds_a, preds_b, targets, run_map = {}, {}, {}, {}
    for pid in pids:
        t = rng.standard_normal((n_rows, n_units), dtype=np.float32)
        targets[pid] = t
        preds_a[pid] = (0.2 * t + rng.standard_normal((1, n_rows, n_units), dtype=np.float32)).astype(np.float32)
        preds_b[pid] = (0.15 * t + rng.standard_normal((1, n_rows, n_units), dtype=np.float32)).astype(np.float32)
        run_map[pid] = runs
    size_gb = sum(a.nbytes for d in (preds_a, preds_b, targets) for a in d.values()) / 1e9
    label = f"{n_participants} part. x 2 models x {n_runs} runs x {rows_per_run} rows x {n_units} units x {n_samples} draws"
    rows.append(("full case", label, f"{size_gb:.2f} GB of inputs", ""))
    tmp = Path(tempfile.mkdtemp(prefix="bench-tvt-"))
    try:
        cfg = CompareConfig(n_samples=n_samples)
        cache = Cache(tmp / "cache")
        t_cold, res = timed(lambda: compare_predictions(preds_a, preds_b, targets, run_map, cfg, cache=cache))
        assert not res.meta["from_cache"]
        s = res.summary()["counts"]["total"]
        rows.append(("compare_predictions, cold (hash + compute + stats + write)", fmt(t_cold, 2), "target <= 10 s",
                     f"{s['n_a_better']} A>B, {s['n_b_better']} B>A of {s['n_tested']}"))
        t_hot, res2 = timed(lambda: compare_predictions(preds_a, preds_b, targets, run_map, cfg, cache=cache), repeat=3)
        assert res2.meta["from_cache"]
        rows.append(("compare_predictions, cached (arrays re-hashed)", fmt(t_hot), "target <= 0.5 s", ""))
        key = res.meta["input_key"]
        t_key, res3 = timed(lambda: compare_predictions(preds_a, preds_b, targets, run_map, cfg, cache=cache, input_key=key), repeat=3)
        assert res3.meta["from_cache"]
        rows.append(("compare_predictions, cached (key known)", fmt(t_key), "target <= 0.5 s", ""))
        t_alpha, _ = timed(lambda: compare_predictions(preds_a, preds_b, targets, run_map, cfg.replace(alpha=0.05), cache=cache, input_key=key))
        rows.append(("  new alpha, accuracies from cache (stats only)", fmt(t_alpha), "", ""))
        if files:
            for name, preds in (("A", preds_a), ("B", preds_b)):
                for pid in pids:
                    f = tmp / name / "predictions" / "seed-0" / f"{pid}.npz"
                    f.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(f, predictions=preds[pid][0], tr_index=np.arange(n_rows, dtype=np.int64), run=runs)
            np.savez(tmp / "targets.npz", **targets)
            fcache = Cache(tmp / "cache-files")
            run_files = lambda: compare_models(tmp / "A", tmp / "B", cfg, targets=tmp / "targets.npz", cache=fcache)  # noqa: E731
            t_fc, rf = timed(run_files)
            assert not rf.meta["from_cache"]
            rows.append(("compare_models from files, cold (+ first file hashing)", fmt(t_fc, 2), "", ""))
            t_fh, rf2 = timed(run_files, repeat=3)
            assert rf2.meta["from_cache"]
            same = rf2.to_frame().equals(res.to_frame())
            rows.append(("compare_models from files, cached (CLI/app path)", fmt(t_fh), "target <= 0.5 s",
                         "same table as in-memory" if same else "TABLE DIFFERS"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--no-files", action="store_true", help="skip the prediction-folder (disk) part")
    args = ap.parse_args(argv)
    import numba

    print(f"numpy {np.__version__}, numba {numba.__version__}, {os.cpu_count()} CPU cores, "
          f"numba threads {numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    rows: list[tuple[str, str, str, str]] = []
    if args.quick:
        kernel_section(rows, n_rows=170, n_units=2048, n_samples=200, k=20, ref_units=512)
        full_section(rows, 2, 4, 170, 2048, 200, files=not args.no_files)
    else:
        kernel_section(rows, n_rows=170, n_units=20484, n_samples=1000, k=20, ref_units=2048)
        full_section(rows, 9, 4, 170, 20484, 1000, files=not args.no_files)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"load average after: {os.getloadavg()[0]:.1f} (times are wall clock; cpu = process CPU time, all threads)")
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
