"""GPU check: the CUDA paths against the CPU, decisions/losses compared, speed ratios side by side.

    python bench/gpu_check.py                    # on a machine with a CUDA GPU (a few minutes)
    python bench/gpu_check.py --json out.json    # also write the numbers
    python bench/gpu_check.py --cpu-only         # no GPU: run and time only the CPU half (tests the script)

1. 20-vs-20: the numba CPU kernel (the default backend) and the torch backend on the GPU on
   identical draws; the decisions (accuracies per unit, ties included) must be identical.
   Goal: torch on the GPU >= 30x the numba CPU kernel (wall clock).
2. One fine-tuning epoch (encoder + fMRI head, AdamW, the training engine's model and loss) on
   the same windows, targets, order and initial weights, on the CPU (float32) and on the GPU
   (float32, and bf16 autocast as training uses). Dropout is off so the runs are comparable:
   the per-step losses must match (float32: max relative difference <= 1e-3; bf16 <= 5e-2).
   Goal: GPU bf16 examples/s >= 20x the CPU's.

Without a CUDA GPU the script says so and exits with code 0 without measuring anything (use
``--cpu-only`` to run the CPU half: numba vs the torch backend on the CPU, and a CPU epoch).
Exit code 1 when a check (identical decisions, matching losses) fails. Speed goals are
reported, never asserted. The load average is printed with the numbers (the CPU side of a
shared machine is slower than an idle one).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_TVT = 30.0
GOAL_TRAIN = 20.0
TOL_FP32 = 1e-3
TOL_BF16 = 5e-2


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def best_time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# --------------------------------------------------------------------------------------
# 1. 20-vs-20
# --------------------------------------------------------------------------------------


def check_twenty(args, cuda: bool) -> dict:
    import torch

    from brainviz.evaluation import draw_indices, twenty_vs_twenty

    rng = np.random.default_rng(0)
    t = rng.standard_normal((args.rows, args.units), dtype=np.float32)
    p = (0.3 * t + rng.standard_normal((args.rows, args.units), dtype=np.float32)).astype(np.float32)
    # exact ties too: small integers are exactly representable
    ti = rng.integers(-3, 4, (args.rows, 256)).astype(np.float32)
    pi = rng.integers(-3, 4, (args.rows, 256)).astype(np.float32)
    idx = draw_indices(args.rows, k=args.k, n_samples=args.draws, rng=1)
    twenty_vs_twenty(p[:, :8], t[:, :8], indices=idx)  # numba compile / load
    t_numba, acc_numba = best_time(lambda: twenty_vs_twenty(p, t, indices=idx), args.repeat)
    res = {"rows": args.rows, "units": args.units, "draws": args.draws, "k": args.k, "numba_cpu_s": t_numba,
           "numba_threads": _numba_threads()}
    ties_ref = twenty_vs_twenty(pi, ti, indices=idx)
    if cuda:
        dev = torch.cuda.get_device_name(0)
        t0 = time.perf_counter()
        twenty_vs_twenty(p[:, :8], t[:, :8], indices=idx, backend="torch")
        torch.cuda.synchronize()
        res["torch_gpu_first_call_s"] = time.perf_counter() - t0

        def run():
            out = twenty_vs_twenty(p, t, indices=idx, backend="torch")
            torch.cuda.synchronize()
            return out

        t_gpu, acc_gpu = best_time(run, args.repeat)
        ties_gpu = twenty_vs_twenty(pi, ti, indices=idx, backend="torch")
        res.update(device=dev, torch_gpu_s=t_gpu, ratio=t_numba / t_gpu,
                   identical=bool(np.array_equal(acc_gpu, acc_numba, equal_nan=True)),
                   identical_ties=bool(np.array_equal(ties_gpu, ties_ref, equal_nan=True)),
                   n_units_differ=int(np.sum(acc_gpu != acc_numba)))
    else:  # CPU half: the torch backend on the CPU (slow: a subset of units), same decisions
        n = min(args.units, args.cpu_torch_units)
        t_tc, acc_tc = best_time(lambda: twenty_vs_twenty(p[:, :n], t[:, :n], indices=idx, backend="torch"), 1)
        ties_tc = twenty_vs_twenty(pi, ti, indices=idx, backend="torch")
        res.update(device="cpu", torch_cpu_s=t_tc * args.units / n, torch_cpu_units_timed=n,
                   identical=bool(np.array_equal(acc_tc, acc_numba[:n], equal_nan=True)),
                   identical_ties=bool(np.array_equal(ties_tc, ties_ref, equal_nan=True)))
    return res


def _numba_threads() -> int | None:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:  # pragma: no cover
        return None


# --------------------------------------------------------------------------------------
# 2. one fine-tuning epoch
# --------------------------------------------------------------------------------------


def windows(n: int, words: int, seed: int = 0) -> list[list[str]]:
    text = (Path(__file__).resolve().parents[1] / "brainviz/data/stories/reading.txt").read_text().split()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(text) - words, n)
    return [text[s : s + words] for s in starts]


def epoch(base, tok, targets, device: str, bf16: bool, args) -> dict:
    """One epoch over the windows in a fixed order; per-step losses and examples/s."""
    import contextlib

    import torch

    from brainviz.models.brain_model import BrainModel
    from brainviz.models.heads import BrainHeads, FMRIHead
    from brainviz.tuning.losses import mse

    hidden = base.config.hidden_size
    torch.manual_seed(0)
    model = BrainModel(copy.deepcopy(base), BrainHeads(FMRIHead(hidden, ["p"], [targets.shape[1]], dropout=0.0)))
    with torch.no_grad():  # a non-zero head start (zeros would give identical first losses on any device)
        g = torch.Generator().manual_seed(1)
        for prm in model.heads.parameters():
            prm.copy_(0.01 * torch.randn(prm.shape, generator=g))
    model.to(device).train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr, weight_decay=0.01)
    y = torch.as_tensor(targets, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    order = np.random.default_rng(2).permutation(len(tok))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses, stamps = [], []
    sync()
    t0 = time.perf_counter()
    for start in range(0, len(order), args.batch_size):
        rows = order[start : start + args.batch_size]
        with autocast:
            out = model(tok.batch(rows, device))
        loss = mse(out["fmri"].float(), y[torch.as_tensor(rows, device=device)]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # syncs
        stamps.append(time.perf_counter())
    total = stamps[-1] - t0
    timed = stamps[-1] - stamps[0]  # after the first (warm-up) step
    n_timed = len(order) - min(args.batch_size, len(order))
    return {"losses": losses, "seconds": total,
            "examples_per_s": (n_timed / timed) if timed > 0 and n_timed > 0 else len(order) / total}


def check_finetune(args, cuda: bool) -> dict:
    import torch

    from brainviz.models.brain_model import tokenize_windows
    from brainviz.models.encoder import load_encoder

    base, tokenizer = load_encoder(args.model, device="cpu")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(base.config, name):
            setattr(base.config, name, 0.0)
    for m in base.modules():  # dropout off everywhere (already-built modules keep their p)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    tok = tokenize_windows(tokenizer, windows(args.examples, args.words), max_length=args.max_length)
    targets = np.random.default_rng(3).standard_normal((args.examples, args.train_units)).astype(np.float32)
    res = {"model": args.model, "examples": args.examples, "batch_size": args.batch_size, "units": args.train_units,
           "torch_threads": torch.get_num_threads()}
    cpu = epoch(base, tok, targets, "cpu", False, args)
    res["cpu"] = cpu
    if cuda:
        g32 = epoch(base, tok, targets, "cuda", False, args)
        g16 = epoch(base, tok, targets, "cuda", True, args)
        ref = np.asarray(cpu["losses"])
        for key, run in (("gpu_fp32", g32), ("gpu_bf16", g16)):
            run["max_rel_loss_diff"] = float(np.max(np.abs(np.asarray(run["losses"]) - ref) / np.abs(ref)))
            res[key] = run
        res["ratio_fp32"] = g32["examples_per_s"] / cpu["examples_per_s"]
        res["ratio_bf16"] = g16["examples_per_s"] / cpu["examples_per_s"]
        res["losses_match"] = bool(g32["max_rel_loss_diff"] <= TOL_FP32 and g16["max_rel_loss_diff"] <= TOL_BF16)
    else:  # CPU half: the epoch is deterministic (run twice, identical losses)
        again = epoch(base, tok, targets, "cpu", False, args)
        res["losses_match"] = bool(np.array_equal(again["losses"], cpu["losses"]))
    return res


# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true", help="no GPU needed: run the CPU half only")
    ap.add_argument("--rows", type=int, default=170, help="20-vs-20: held-out rows (default 170)")
    ap.add_argument("--units", type=int, default=20484, help="20-vs-20: units (default 20484 = fsaverage5)")
    ap.add_argument("--draws", type=int, default=1000, help="20-vs-20: draws (default 1000)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--cpu-torch-units", type=int, default=2048, help="--cpu-only: units timed with torch on the CPU")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings")
    ap.add_argument("--model", default="pretrained", help="encoder for the epoch (default: the packaged MiniLM)")
    ap.add_argument("--examples", type=int, default=512, help="windows in the epoch (default 512)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--words", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--train-units", type=int, default=20484, help="fMRI head outputs (default 20484)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_only:
        print(f"gpu_check: no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
              "nothing was measured. Run it on a machine with a CUDA GPU, or pass --cpu-only to run the CPU half.")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    header = {"host": platform.node(), "cpu_cores": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "gpu": torch.cuda.get_device_name(0) if cuda else None, "load_average_start": load_average(),
              "mode": "gpu" if cuda else "cpu-only"}
    print(f"gpu_check ({header['mode']}): {header['cpu_cores']} CPU cores, torch {header['torch']}, "
          f"GPU {header['gpu'] or 'none'}; load average at start {header['load_average_start']}")
    tvt = check_twenty(args, cuda)
    ft = check_finetune(args, cuda)
    header["load_average_end"] = load_average()

    rows = [("check", "CPU", "GPU", "GPU/CPU", "goal", "result")]
    if cuda:
        rows.append((f"20-vs-20 {tvt['rows']}x{tvt['units']}x{tvt['draws']} (s)", f"{tvt['numba_cpu_s']:.3f} numba",
                     f"{tvt['torch_gpu_s']:.4f} torch", f"{tvt['ratio']:.1f}x", f">= {GOAL_TVT:.0f}x",
                     ("identical" if tvt["identical"] and tvt["identical_ties"] else f"DIFFER ({tvt['n_units_differ']} units)")))
        c, g32, g16 = ft["cpu"], ft["gpu_fp32"], ft["gpu_bf16"]
        rows.append(("fine-tuning epoch fp32 (examples/s)", f"{c['examples_per_s']:.1f}", f"{g32['examples_per_s']:.1f}",
                     f"{ft['ratio_fp32']:.1f}x", "", f"max rel. loss diff {g32['max_rel_loss_diff']:.1e} (<= {TOL_FP32:g})"))
        rows.append(("fine-tuning epoch bf16 (examples/s)", f"{c['examples_per_s']:.1f} fp32", f"{g16['examples_per_s']:.1f}",
                     f"{ft['ratio_bf16']:.1f}x", f">= {GOAL_TRAIN:.0f}x",
                     f"max rel. loss diff {g16['max_rel_loss_diff']:.1e} (<= {TOL_BF16:g})"))
    else:
        rows.append((f"20-vs-20 {tvt['rows']}x{tvt['units']}x{tvt['draws']} (s)", f"{tvt['numba_cpu_s']:.3f} numba",
                     "not run", "", f">= {GOAL_TVT:.0f}x",
                     f"torch-cpu {tvt['torch_cpu_s']:.2f} s (from {tvt['torch_cpu_units_timed']} units): "
                     + ("identical" if tvt["identical"] and tvt["identical_ties"] else "DIFFER")))
        rows.append(("fine-tuning epoch fp32 (examples/s)", f"{ft['cpu']['examples_per_s']:.1f}", "not run", "",
                     f">= {GOAL_TRAIN:.0f}x", "deterministic" if ft["losses_match"] else "NOT DETERMINISTIC"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"load average at end {header['load_average_end']}; epoch: {ft['examples']} windows of {args.words} words, "
          f"batch {ft['batch_size']}, {ft['units']} outputs, model {ft['model']}, CPU torch threads {ft['torch_threads']}")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    ok = bool(tvt["identical"] and tvt["identical_ties"] and ft["losses_match"])
    if cuda:
        for name, ratio, goal in (("20-vs-20", tvt["ratio"], GOAL_TVT), ("fine-tuning (bf16)", ft["ratio_bf16"], GOAL_TRAIN)):
            print(f"{name}: {ratio:.1f}x {'meets' if ratio >= goal else 'is BELOW'} the {goal:.0f}x goal")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "twenty_vs_twenty": tvt, "finetune": ft, "ok": ok},
                                              indent=1, default=float))
    print("checks passed" if ok else "CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
