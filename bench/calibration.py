"""Calibration table of the comparison tests (simulated, constructed predictions).

    python bench/calibration.py [--repetitions 50] [--out docs/calibration_table.md]

For every offered test: the false-discovery proportion on null units (averaged over
repetitions, with its standard error) and the power on planted units, at q = 0.01 and 0.05,
on constructed predictions with nine participants, five pseudo-replicated seeds, AR(1) noise
and noise shared across units (see brainviz.evaluation.calibration). A test whose FDP exceeds
q + 2 SE fails calibration and must not be offered (the 2019 paper's across-initialisations
test and the removed seeds x runs pooling are shown for reference: they test training
stability, not generalisation to new data or participants). Timing is not the point here; the
load average is printed for completeness.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from brainviz.evaluation.calibration import ConstructedConfig, calibrate, calibration_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repetitions", type=int, default=50)
    ap.add_argument("--n-samples", type=int, default=200, help="20-vs-20 draws per run")
    ap.add_argument("--n-permutations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    cfg = ConstructedConfig()
    t0 = time.time()
    rows = calibrate(n_repetitions=args.repetitions, alphas=(0.01, 0.05), config=cfg, n_samples=args.n_samples,
                     n_permutations=args.n_permutations, seed=args.seed,
                     progress=lambda i, n: print(f"\rrepetition {i}/{n} ({time.time() - t0:.0f} s)", end="",
                                                 file=sys.stderr, flush=True))
    print(file=sys.stderr)
    table = calibration_table(rows)
    head = (f"Simulated constructed predictions: {cfg.n_participants} participants, {cfg.n_seeds} seeds sharing "
            f"their model error, {cfg.n_runs} held-out runs x {cfg.n_rows} TRs, {cfg.n_units} units "
            f"({cfg.n_planted} planted, {cfg.n_null_signal} null with signal, "
            f"{cfg.n_units - cfg.n_planted - cfg.n_null_signal} null without), AR(1) noise {cfg.noise_ar}, "
            f"shared noise {cfg.shared_noise}; {args.repetitions} repetitions, {args.n_samples} draws per run, "
            f"{args.n_permutations} sign flips.")
    print(head)
    print(table)
    bad = [r for r in rows if r["held_to_bound"] and r["fdp"] > r["alpha"] + 2 * r["fdp_se"]]
    print(f"\noffered tests failing calibration: {len(bad)}")
    print(f"{time.time() - t0:.0f} s, load average {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(head + "\n\n" + table + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
