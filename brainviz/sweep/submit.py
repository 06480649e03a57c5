"""Run one ``train`` command as a Ray task: ``python -m brainviz.sweep.submit [options] -- TRAIN ARGS``.

The app's job runner (:mod:`brainviz.jobs`, ``backend="ray"``) starts this instead of
``python -m brainviz train``: the arguments after ``--`` are exactly those of ``train``
(parsed by the ``train`` command's own parser into the same :class:`TrainConfig`); the job
runs on a local Ray or on the cluster at ``--address`` with the resources asked for, writes
the same checkpoint and the same progress file, and resumes from ``<out>.partial`` like
``train``. SIGTERM (the job runner's cancel) cancels the Ray task; its ``.partial`` stays.

Examples
--------
::

    python -m brainviz.sweep.submit --address auto --num-gpus 1 -- \\
        --dataset data/reading --variant fine-tuned --out models/ft --preset quick
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence


def train_config_from_argv(train_args: Sequence[str]):
    """The :class:`TrainConfig` and parsed namespace of ``train`` arguments (``train`` omitted)."""
    from brainviz.tuning import _cli as train_cli

    parser = argparse.ArgumentParser(prog="python -m brainviz")
    sub = parser.add_subparsers(dest="command")
    train_cli.add_parser(sub)
    args = parser.parse_args(["train", *train_args])
    return train_cli.config_from_args(args), args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m brainviz.sweep.submit", description=__doc__.splitlines()[0])
    p.add_argument("--address", default=None, help="Ray cluster (default: start a local Ray)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of the job (torch threads)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs of the job")
    p.add_argument("--memory-gb", type=float, default=None, help="memory of the job, for Ray's scheduler")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the arguments of python -m brainviz train")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    from brainviz.errors import BrainvizError

    try:
        config, targs = train_config_from_argv(train_args)
        from brainviz.sweep import _ray
        from brainviz.sweep._worker import run_job

        ray = _ray.import_ray()
        started = _ray.connect(args.address, args.ray_cpus)
    except BrainvizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def on_term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    ref = None
    try:
        opts = _ray.remote_options(args.num_cpus, args.num_gpus, args.memory_gb, max_retries=1, name=str(config.out))
        ref = ray.remote(run_job).options(**opts).remote(config.to_dict(), targs.progress_file, int(max(1, args.num_cpus)))
        print(f"submitted to Ray ({args.address or 'local'}): train {config.variant} -> {config.out}", flush=True)
        result = ray.get(ref)
    except KeyboardInterrupt:
        if ref is not None:
            ray.cancel(ref, force=True)
        print("cancelled (the job's .partial folder stays; submit again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the task's error, printed for the job log
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            ray.shutdown()
    print(f"{result['out']} ({result['seconds']:.1f} s on {result['host']}, {result['device']}"
          f"{', resumed' if result['resumed'] else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
