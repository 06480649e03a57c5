"""Expanding a :class:`SweepConfig` into jobs: one :class:`TrainConfig` per grid cell.

A job is exactly what ``python -m brainviz train`` would run (see :func:`train_argv`); its
checkpoint goes to ``<sweep out>/<job name>/`` and its interrupted state to
``<sweep out>/<job name>.partial/``, as for any ``train``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from brainviz.sweep.config import SHARED_FIT_VARIANTS, SweepConfig

PARTIAL_SUFFIX = ".partial"  # the training engine's work folder: <out>.partial
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")

STATES = ("done", "partial", "pending")


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """One job of a sweep.

    Attributes
    ----------
    name : str
        Folder name of its checkpoint inside the sweep folder.
    variant : str
    participants, folds, seeds : tuples
        The grid cell (an empty ``participants``/``folds`` means all of the dataset's).
    config : TrainConfig
    """

    name: str
    variant: str
    participants: tuple[str, ...]
    folds: tuple[str, ...]
    seeds: tuple[int, ...]
    config: Any

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def partial(self) -> Path:
        return self.out.with_name(self.out.name + PARTIAL_SUFFIX)

    def state(self) -> str:
        """``done`` (checkpoint written), ``partial`` (interrupted; resumes) or ``pending``."""
        if (self.out / "card.json").is_file():
            return "done"
        return "partial" if self.partial.is_dir() else "pending"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "variant": self.variant, "participants": list(self.participants),
                "folds": list(self.folds), "seeds": list(self.seeds), "out": str(self.out),
                "job_key": self.config.job_key(), "train_config": self.config.to_dict()}


def _label(axis: str, values: tuple, prefix: str) -> str:
    if len(values) == 1:
        return f"{prefix}{values[0]}"
    return f"{axis}-all" if not values else f"{axis}-" + "+".join(map(str, values))


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)


def dataset_axes(dataset: str) -> tuple[list[str], list[str]]:
    """fMRI participants and runs of a dataset folder (reads only its manifest and stimulus)."""
    from brainviz.data.dataset import load_dataset

    ds = load_dataset(dataset, check_values=False)
    return list(ds.participants), list(ds.runs)


def plan_sweep(config: SweepConfig, participants: list[str] | None = None, runs: list[str] | None = None) -> list[SweepJob]:
    """All jobs of a sweep, in a fixed order (variant, participant, fold, seed).

    ``participants``/``runs`` are the dataset's (read from the dataset folder when None and
    the grid leaves that axis empty); an empty grid axis means all of them.
    """
    if (not config.participants and participants is None) or (not config.folds and runs is None):
        ds_participants, ds_runs = dataset_axes(config.dataset)
        participants = ds_participants if participants is None else participants
        runs = ds_runs if runs is None else runs
    all_p = tuple(config.participants) or tuple(participants or ())
    all_f = tuple(config.folds) or tuple(runs or ())
    all_s = tuple(config.seeds)
    out = Path(config.out)
    jobs: list[SweepJob] = []
    names: set[str] = set()
    for variant in config.variants:
        together_p = "participants" in config.same_job or variant in SHARED_FIT_VARIANTS
        p_groups = [all_p] if together_p else [(p,) for p in all_p]
        f_groups = [all_f] if "folds" in config.same_job else [(f,) for f in all_f]
        s_groups = [all_s] if "seeds" in config.same_job else [(s,) for s in all_s]
        for pg in p_groups:
            for fg in f_groups:
                for sg in s_groups:
                    label_p = "participants-all" if (together_p and not config.participants) else _label("participants", pg, "")
                    label_f = "folds-all" if ("folds" in config.same_job and not config.folds) else _label("folds", fg, "fold-")
                    name = _safe("__".join((variant, label_p, label_f, _label("seeds", sg, "seed-"))))
                    if name in names:  # pragma: no cover - labels are unique per grid cell
                        raise ValueError(f"two sweep jobs would share the folder name {name!r}")
                    names.add(name)
                    # an axis left empty in the sweep stays empty in the job (= all of the dataset's)
                    job_p = pg if (config.participants or not together_p) else ()
                    job_f = fg if (config.folds or "folds" not in config.same_job) else ()
                    cfg = config.train_config(variant, str(out / name), job_p, job_f, sg)
                    jobs.append(SweepJob(name, variant, tuple(pg), tuple(fg), tuple(sg), cfg))
    return jobs


def train_argv(config: Any, python: str | None = None) -> list[str]:
    """The ``python -m brainviz train ...`` command line that runs ``config`` (a TrainConfig).

    Built from the ``train`` command's own parser (every option whose destination is a
    TrainConfig field, or a ``preprocess`` field), then parsed back: raises ``ValueError``
    naming the fields when the command line would not give exactly ``config`` (a field the
    command has no option for).
    """
    import argparse

    from brainviz.tuning import _cli as train_cli

    parser = argparse.ArgumentParser(prog="python -m brainviz")
    sub = parser.add_subparsers(dest="command")
    train_cli.add_parser(sub)
    tp = sub.choices["train"]
    try:
        from brainviz.data._cli_preprocess import DEST_PREFIX
    except ImportError:  # pragma: no cover - older train command without preprocessing options
        DEST_PREFIX = "\0"
    values = config.to_dict()
    pre = dict(values.pop("preprocess", None) or {})
    args: list[str] = []
    for action in tp._actions:
        if not action.option_strings or action.dest in ("help", "progress_file", "quiet"):
            continue
        if action.dest.startswith(DEST_PREFIX) and action.dest[len(DEST_PREFIX):] in pre:
            value = pre[action.dest[len(DEST_PREFIX):]]
        elif action.dest in values:
            value = values[action.dest]
        else:
            continue
        long = [o for o in action.option_strings if o.startswith("--")] or list(action.option_strings)
        if isinstance(action, argparse.BooleanOptionalAction):
            if value is not None and value != action.default:
                args.append(long[0] if value else next(o for o in long if o.startswith("--no-")))
        elif action.nargs == 0:  # store_true / store_false / store_const
            if value == action.const and value != action.default:
                args.append(long[0])
        elif isinstance(value, (list, tuple)):
            if list(value) != list(action.default or ()):
                args += [long[0], *map(str, value)]
        elif value is not None and value != action.default:
            args += [long[0], str(value)]
    back = train_cli.config_from_args(parser.parse_args(["train", *args]))
    if back != config:
        differ = sorted(k for k, v in config.to_dict().items() if back.to_dict().get(k) != v)
        raise ValueError(f"the train command has no options for {differ}; run this job through the Python API")
    return [python or sys.executable, "-m", "brainviz", "train", *args]
