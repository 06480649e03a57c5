"""Brain-tuning throughput: examples/s for heads-only and full fine-tuning steps.

Usage::

    python bench/train_throughput.py [--model pretrained] [--units 20484] [--batch-size 32]
                                     [--words 20] [--steps 5] [--devices cpu cuda]

Measures, per device (CUDA only when available; bf16 autocast there, as in training):

- ``features``: frozen-encoder forward pass in eval mode (what heads-only stages cache once);
- ``heads-only``: one AdamW step of the fMRI head on cached [CLS] features;
- ``full``: one AdamW step of encoder + head (forward, backward, update);
- ``full, frozen emb.``: the same with the word embeddings frozen (the ``quick`` preset);
- ``lora``: LoRA adapters (r 8) + head.

``--pair DATASET`` instead trains the default pair (``vanilla`` and ``fine-tuned``, ``quick``
preset, all participants: what the app's first run trains) into ``--models-dir`` (default: a
temporary folder) and prints the wall-clock and CPU time of each model and of the pair, the load
average before and after, each checkpoint's size on disk (hard links counted once) and the
encoder's relative change ``||dtheta|| / ||theta||`` from the card.

Windows are random 20-word windows of the packaged reading story; the head predicts
``--units`` outputs (20,484 = fsaverage5). Prints a table; the first ``--warmup`` steps of
each row are not timed. ``CPU s/batch`` is the process CPU time (all threads) per batch: on a
shared, loaded machine it stays meaningful when wall-clock rates do not.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def windows(n: int, words: int, seed: int = 0) -> list[list[str]]:
    text = (Path(__file__).resolve().parents[1] / "brainviz/data/stories/reading.txt").read_text().split()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(text) - words, n)
    return [text[s : s + words] for s in starts]


def bench_device(device: str, args) -> list[tuple[str, str, float, float, float]]:
    import torch

    from brainviz.models.brain_model import BrainModel, tokenize_windows
    from brainviz.models.encoder import load_encoder
    from brainviz.models.heads import BrainHeads, FMRIHead
    from brainviz.tuning.losses import mse

    base, tokenizer = load_encoder(args.model, device="cpu")
    hidden = base.config.hidden_size
    n = args.batch_size * (args.steps + args.warmup)
    tok = tokenize_windows(tokenizer, windows(n, args.words), max_length=args.max_length)
    target = torch.randn(args.batch_size, args.units, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    rows = []

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(name, step):
        for i in range(args.warmup):
            step(i)
        sync()
        t, c = time.perf_counter(), time.process_time()
        for i in range(args.warmup, args.warmup + args.steps):
            step(i)
        sync()
        dt = (time.perf_counter() - t) / args.steps
        rows.append((device, name, args.batch_size / dt, dt, (time.process_time() - c) / args.steps))

    def batch(i):
        return tok.batch(range(i * args.batch_size, (i + 1) * args.batch_size), device)

    # features (eval forward)
    enc = copy.deepcopy(base).to(device).eval()

    def feat_step(i):
        with torch.no_grad(), autocast:
            enc(**batch(i))

    timed("features (frozen fwd)", feat_step)

    # heads-only on cached features
    feats = torch.randn(args.batch_size, hidden, device=device)
    head = FMRIHead(hidden, ["p"], [args.units]).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=5e-5, fused=True)

    def head_step(i):
        loss = mse(head(feats), target).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    timed("heads-only (cached)", head_step)

    def full_rows(name, prepare):
        model = BrainModel(copy.deepcopy(base), BrainHeads(FMRIHead(hidden, ["p"], [args.units]))).to(device).train()
        prepare(model)
        model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=5e-5, fused=True)

        def step(i):
            with autocast:
                out = model(batch(i))
            loss = mse(out["fmri"].float(), target).mean()
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)

        timed(name, step)

    full_rows("full fine-tuning", lambda m: None)
    full_rows("full, frozen embeddings", lambda m: m.encoder.get_input_embeddings().weight.requires_grad_(False))

    def lora(m):
        from peft import LoraConfig, get_peft_model

        from brainviz.tuning.train import LORA_TARGETS

        m.encoder = get_peft_model(m.encoder, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=LORA_TARGETS))

    full_rows("LoRA (r 8)", lora)
    return rows


def disk_size(folder: Path) -> int:
    """Bytes on disk of a folder's files, each inode counted once (hard links share)."""
    seen, total = set(), 0
    for f in Path(folder).rglob("*"):
        if f.is_file():
            st = f.stat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def bench_pair(args) -> int:
    """Train the default pair and print its wall time, CPU time and disk size."""
    import json
    import os
    import tempfile

    from brainviz.tuning import TrainConfig, train
    from brainviz.tuning.pair import PAIR, PAIR_NAMES

    root = Path(args.models_dir) if args.models_dir else Path(tempfile.mkdtemp(prefix="pair-"))
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    rows = []
    for variant in PAIR:
        out = root / (PAIR_NAMES[variant] + args.suffix)
        cfg = TrainConfig(dataset=args.pair, variant=variant, out=str(out), preset="quick", overwrite=True,
                          shuffle_targets=args.shuffle_targets)
        t, c = time.perf_counter(), time.process_time()
        ch0 = os.times()
        train(cfg, bar=False)
        ch1 = os.times()
        wall = time.perf_counter() - t
        cpu = time.process_time() - c + (ch1.children_user - ch0.children_user) + (ch1.children_system - ch0.children_system)
        card = json.loads((out / "card.json").read_text())
        change = (card["metrics"].get("encoder_change") or {}).get("relative_l2_mean")
        rows.append((variant, wall, cpu, disk_size(out), change, out))
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    print(f"default pair on {args.pair} (quick preset, all participants, all folds); torch threads={torch_threads()}")
    print(f"load average before: {load0}   after: {load1}   (a shared machine inflates wall time)")
    print(f"{'model':<12} {'wall s':>8} {'CPU s':>8} {'disk MB':>8} {'||dθ||/||θ||':>13}  folder")
    for v, wall, cpu, size, change, out in rows:
        ch = "-" if change is None else f"{change:.4f}"
        print(f"{v:<12} {wall:>8.1f} {cpu:>8.1f} {size / 1e6:>8.1f} {ch:>13}  {out}")
    print(f"{'pair':<12} {sum(r[1] for r in rows):>8.1f} {sum(r[2] for r in rows):>8.1f} {sum(r[3] for r in rows) / 1e6:>8.1f}")
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pretrained")
    p.add_argument("--units", type=int, default=20484)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--words", type=int, default=20)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--pair", default=None, metavar="DATASET", help="train and time the default pair on DATASET")
    p.add_argument("--models-dir", default=None, help="--pair: where to write the pair (default: a temp folder)")
    p.add_argument("--suffix", default="", help="--pair: appended to the checkpoint names")
    p.add_argument("--shuffle-targets", action="store_true", help="--pair: the null control (shuffled targets)")
    args = p.parse_args(argv)
    if args.pair:
        return bench_pair(args)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for d in devices:
        rows += bench_device(d, args)
    print(f"model={args.model} batch={args.batch_size} words/window={args.words} units={args.units} "
          f"torch threads={torch.get_num_threads()}")
    print(f"load average at start: {load}")
    print(f"{'device':<7} {'step':<26} {'examples/s':>11} {'s/batch':>9} {'CPU s/batch':>12}")
    for dev, name, eps, dt, cpu in rows:
        print(f"{dev:<7} {name:<26} {eps:>11.1f} {dt:>9.3f} {cpu:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
