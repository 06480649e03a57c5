"""``python -m brainviz sweep``: a grid of brain-tuning jobs on Ray (or in this process)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from brainviz.tuning.losses import LOSSES
from brainviz.tuning.variants import PRESETS, VARIANTS

EPILOG = """\
examples:
  python -m brainviz sweep --dataset data/reading --variants vanilla fine-tuned \\
      --participants P01 P02 --folds run-1 run-2 --seeds 0 1 --preset quick --out sweeps/s1
  ray start --head   # on a cluster: then, on the head node
  python -m brainviz sweep ... --address auto --num-gpus 1 --out /shared/sweeps/s1
Run the same command again to finish an interrupted sweep (finished jobs are skipped,
interrupted ones resume from their .partial folder)."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="train variants x participants x folds x seeds as parallel jobs on Ray; resumable",
        description="Expand a grid into train jobs (one checkpoint each, in --out) and run them as Ray tasks "
                    "with their resource needs: a local Ray by default, a cluster with --address.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset folder (same path on every node)")
    p.add_argument("--variants", required=True, nargs="+", choices=VARIANTS, metavar="V")
    p.add_argument("--out", required=True, help="sweep folder: one checkpoint per job + sweep.json")
    p.add_argument("--participants", nargs="+", default=(), metavar="ID", help="fMRI participants (default: all)")
    p.add_argument("--folds", nargs="+", default=(), metavar="RUN", help="held-out runs (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=(0,), metavar="S")
    p.add_argument("--same-job", nargs="+", default=(), choices=("participants", "folds", "seeds"),
                   help="axes kept inside one job (default: one job per participant, fold and seed)")
    p.add_argument("--backend", choices=("ray", "local"), default="ray", help="ray (default) or local: one job "
                   "after the other in this process")
    p.add_argument("--address", default=None, help="Ray cluster: auto, ray://HOST:10001 or HOST:6379 "
                   "(default: start a local Ray)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per job (torch threads; default 1)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per job (fractions share a GPU; default 0)")
    p.add_argument("--memory-gb", type=float, default=None, help="memory per job, for Ray's scheduler")
    p.add_argument("--max-retries", type=int, default=1, help="retries of a job whose worker died (default 1)")
    # the train options a sweep shares
    p.add_argument("--base", default=None, help="encoder to start from (default: pretrained)")
    p.add_argument("--preset", choices=PRESETS, default=None, help="paper (default) or quick")
    p.add_argument("--loss", choices=LOSSES, default=None)
    p.add_argument("--lora", action="store_true", help="LoRA adapters instead of full fine-tuning")
    p.add_argument("--epochs", nargs="+", default=(), metavar="VARIANT=N,N",
                   help="epochs of every stage of a variant, e.g. fine-tuned=10,2")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--train-config", default=None, metavar="FILE.json",
                   help="other TrainConfig fields shared by every job (e.g. {\"preprocess\": {...}}); flags win")
    # after training
    p.add_argument("--evaluate", action="store_true", help="then evaluate every variant (writes OUT/evaluation.csv)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="then compare two variants (writes OUT/compare-A-vs-B.csv)")
    p.add_argument("--n-samples", type=int, default=1000, help="20-vs-20 draws for --evaluate/--compare")
    p.add_argument("--dry-run", action="store_true", help="print the jobs (as train commands when possible) and exit")
    p.add_argument("--progress-file", default=None, metavar="PATH", help="append JSON lines {fraction, message}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _epochs(items) -> dict[str, tuple[int, ...]]:
    from brainviz.config import ConfigError

    out = {}
    for item in items:
        variant, sep, values = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[variant] = tuple(int(v) for v in values.split(","))
        except ValueError:
            raise ConfigError(f"--epochs {item!r}: expected VARIANT=N,N,... (e.g. fine-tuned=10,2)") from None
    return out


def config_from_args(args: argparse.Namespace):
    from brainviz.config import ConfigError
    from brainviz.sweep.config import SweepConfig

    train = {}
    if args.train_config:
        path = Path(args.train_config)
        try:
            train = json.loads(path.read_text())
        except FileNotFoundError:
            from brainviz.errors import InputNotFoundError

            raise InputNotFoundError("no such file", file=path, field="--train-config") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(train, dict):
            raise ConfigError(f"{path}: expected a JSON object of TrainConfig fields")
    for field in ("base", "preset", "loss", "lr", "batch_size", "device"):
        value = getattr(args, field)
        if value is not None:
            train[field] = value
    if args.lora:
        train["lora"] = True
    return SweepConfig(
        dataset=args.dataset, variants=tuple(args.variants), out=args.out, participants=tuple(args.participants),
        folds=tuple(args.folds), seeds=tuple(args.seeds), same_job=tuple(args.same_job), train=train,
        epochs=_epochs(args.epochs), backend=args.backend, address=args.address, ray_cpus=args.ray_cpus,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, memory_gb=args.memory_gb, max_retries=args.max_retries,
    )


def run(args: argparse.Namespace) -> int:
    from brainviz.sweep.plan import plan_sweep, train_argv
    from brainviz.sweep.runner import run_sweep

    config = config_from_args(args)
    if args.dry_run:
        for job in plan_sweep(config):
            try:
                line = " ".join(train_argv(job.config, python="python"))
            except ValueError:
                line = job.config.to_json()
            print(f"{job.name} [{job.state()}]: {line}")
        return 0
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    result = run_sweep(config, progress_file=args.progress_file, bar=False if args.quiet else None)
    counts = result.counts()
    print(f"sweep {result.out}: {counts.get('done', 0)} trained ({counts['resumed']} resumed), "
          f"{counts.get('skipped', 0)} already finished, {counts.get('failed', 0)} failed "
          f"in {result.wall_seconds:.1f} s ({config.backend})")
    for job in result.failed:
        print(f"  FAILED {job['name']}: {job['error'].splitlines()[-1] if job['error'] else ''}")
    if not result.ok:
        print("run the same command again to retry the failed jobs (they resume from their .partial folders)")
        return 1
    if args.evaluate or args.compare:
        from brainviz.evaluation import CompareConfig, EvaluateConfig
        from brainviz.sweep.results import compare_sweep, evaluate_sweep

        if args.evaluate:
            table = evaluate_sweep(result.out, EvaluateConfig(n_samples=args.n_samples))
            for variant, sub in table.groupby("variant", sort=False):
                _print_counts(f"evaluate {variant}", sub, "score")
            _print_notes(result.out / "evaluation.summary.json")
            print(f"wrote {result.out / 'evaluation.csv'}")
        if args.compare:
            a, b = args.compare
            table = compare_sweep(result.out, a, b, CompareConfig(n_samples=args.n_samples))
            _print_counts(f"compare {a} vs {b}", table, "diff")
            _print_notes(result.out / f"compare-{a}-vs-{b}.summary.json")
            print(f"wrote {result.out / f'compare-{a}-vs-{b}.csv'}")
    return 0


def _print_counts(title: str, table, value: str) -> None:
    """One line: rows (units) tested, significant ones, mean of ``value`` (simulated flagged)."""
    n = len(table)
    sig = int(table["significant"].astype(bool).sum()) if "significant" in table else None
    mean = float(table[value].astype(float).mean()) if value in table and n else float("nan")
    level = f" ({table['level'].iloc[0]} level)" if "level" in table and n else ""
    sim = " [simulated data]" if "simulated" in table and bool(table["simulated"].any()) else ""
    print(f"{title}{level}: {sig if sig is not None else '?'}/{n} significant, mean {value} {mean:.4f}{sim}")


def _print_notes(summary_file) -> None:
    """Print the explanation of an empty result that each summary carries, if any."""
    try:
        data = json.loads(Path(summary_file).read_text())
    except (OSError, json.JSONDecodeError):
        return
    summaries = data.get("variants") or {"": data.get("summary") or {}}
    for name, summary in summaries.items():
        note = summary.get("explanation") if isinstance(summary, dict) else None
        if isinstance(note, str) and note:
            print(f"  {name + ': ' if name else ''}{note}")
