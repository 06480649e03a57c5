"""The five model variants of Schwartz, Toneva & Wehbe (2019) as named training plans.

Every variant is a list of *stages* (heads-only or full fine-tuning, a number of epochs each)
applied to one or more *fits*. Epoch counts come from a preset:

=====================  =========================================  ============================
variant                stages (paper preset)                      fits per fold and seed
=====================  =========================================  ============================
vanilla                heads 30 (use --epochs 10/20 to match)     one per participant
fine-tuned             heads 10, full 20                          one per participant
participant-transfer   source: heads 2, full 18; others: heads 10  source, then each other one
meg-transfer           MEG: heads 10, full 20; fMRI: heads 10,     MEG (all MEG participants
                       full 20                                    jointly), then each fMRI one
joint                  heads 10, full 50                          one for all fMRI + all MEG
stimulus-tuned         stimulus: heads 10, full 20; brain heads   stimulus (encoder tuned on
(``--modality audio``)  30 (vanilla's)                            stimulus features), then the
                                                                  brain fit(s) as vanilla's
=====================  =========================================  ============================

``stimulus-tuned`` is the speech papers' control (issue 15): the encoder is tuned exactly as
``fine-tuned`` tunes it (same stages, epochs, loss, LoRA / full), but on stimulus features
of the same TR grid instead of fMRI (:mod:`brainviz.tuning.speech`), and the brain heads are
then fitted on the tuned encoder with vanilla's schedule and data order, so that ``compare
fine-tuned stimulus-tuned`` isolates what brain data adds.

The ``quick`` preset keeps the fMRI heads-only epochs (cheap: the frozen encoder's features are
cached), halves the MEG heads-only epochs (the MEG head has sensors x bins x participants =
48,960 outputs per token on the default dataset), and cuts the full fine-tuning epochs, the maximum sequence length and the MEG words, so
that one participant x one fold of any variant runs in a few minutes on a 2-core CPU with the
packaged MiniLM (see docs/tuning.md for measured times).
"""

from __future__ import annotations

import dataclasses
from typing import Any

VARIANTS = ("vanilla", "fine-tuned", "participant-transfer", "meg-transfer", "joint", "stimulus-tuned")
PRESETS = ("paper", "quick")
QUICK_LR = 2e-4          # encoder learning rate of the quick recipe (see docs/tuning.md)
QUICK_POOLING = "mean"
MEG_VARIANTS = ("meg-transfer", "joint")
ALL_GROUP = "_all"  # group of a vanilla / fine-tuned fit of all participants together
STIMULUS_GROUP = "_stimulus"  # stimulus-tuned: the fit that tunes the encoder on stimulus features

# Stage names of each variant, in the order of the --epochs override.
STAGES: dict[str, tuple[str, ...]] = {
    "vanilla": ("heads",),
    "fine-tuned": ("heads", "full", "refit"),
    "participant-transfer": ("source-heads", "source-full", "target-heads"),
    "meg-transfer": ("meg-heads", "meg-full", "fmri-heads", "fmri-full"),
    "joint": ("heads", "full"),
    "stimulus-tuned": ("stimulus-heads", "stimulus-full", "heads"),
}

EPOCHS: dict[str, dict[str, tuple[int, ...]]] = {
    "paper": {
        "vanilla": (30,),
        "fine-tuned": (10, 20, 0),
        "participant-transfer": (2, 18, 10),
        "meg-transfer": (10, 20, 10, 20),
        "joint": (10, 50),
        "stimulus-tuned": (10, 20, 30),   # fine-tuned's heads + full, then vanilla's heads
    },
    "quick": {
        "vanilla": (13,),
        "fine-tuned": (10, 3, 13),
        "participant-transfer": (2, 2, 10),
        "meg-transfer": (5, 1, 10, 1),
        "joint": (5, 2),
        "stimulus-tuned": (10, 3, 13),
    },
}

# Settings a preset fills in when the config leaves them at None.
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {
        "lr": 5e-5,               # encoder (and, with head_lr None, head) learning rate
        "max_length": 128,
        "head_lr": None,          # same as lr
        "meg_fraction": 1.0,      # share of MEG content words used as targets
        "meg_stride": 1,          # use every n-th window for MEG-only stages
        "freeze_embeddings": False,
        "head_mode": "split",     # several participants in one fit: one column block each
        "pooling": "cls",         # head input: the [CLS] hidden state (the paper)
        "together": False,        # vanilla / fine-tuned: one fit per participant
        "keep_weights": "all",    # weights of every fit are kept
        "predictions_dtype": "float32",  # held-out predictions stored bit-exact
        "encoder_targets": "units",  # full stages: every unit's target, as in the paper
    },
    "quick": {
        "lr": QUICK_LR,
        "max_length": 48,
        "head_lr": 1e-3,
        "meg_fraction": 0.5,
        "meg_stride": 4,
        "freeze_embeddings": True,
        "head_mode": "shared",    # one map shared by all participants (needs one space)
        "pooling": QUICK_POOLING,
        "together": True,         # vanilla / fine-tuned: all participants in one fit
        "keep_weights": "first",  # weights of each seed's first fold only (predictions of all)
        "predictions_dtype": "float16",  # half the disk; scores change by < 1e-3 (docs/checkpoints.md)
        # full stages of a shared-head fit learn the top 8 principal components of the mean
        # target over the most reliable units; the heads are then refitted (docs/tuning.md)
        "encoder_targets": "pcs:8",
    },
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: ``kind`` is ``"heads"`` (encoder frozen) or ``"full"``.

    ``reset``: the fMRI heads start again from zero (the ``refit`` stage of ``fine-tuned``:
    heads fitted on the tuned encoder's features with vanilla's schedule and data order).
    """

    kind: str
    epochs: int
    reset: bool = False


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """One fitted model: a group of targets, a held-out run and a seed.

    ``init`` is the id of the fit whose final encoder this one starts from (None: the base
    model); ``predicts`` the fMRI participants whose held-out predictions it writes.
    """

    group: str
    fold: str
    seed: int
    fmri: tuple[str, ...]
    meg: tuple[str, ...]
    stages: tuple[Stage, ...]
    predicts: tuple[str, ...]
    init: str | None = None

    @property
    def id(self) -> str:
        return fit_id(self.group, self.fold, self.seed)

    @property
    def tunes_encoder(self) -> bool:
        return any(s.kind == "full" and s.epochs > 0 for s in self.stages)


def fit_id(group: str, fold: str, seed: int) -> str:
    """Relative folder of a fit: ``<group>/fold-<run>/seed-<S>``."""
    return f"{group}/fold-{fold}/seed-{seed}"


def stimulus_target(fold: str) -> str:
    """Name of the stimulus-feature target of ``fold`` (its z-scoring and components use the
    fold's training runs only, so every fold has its own)."""
    return f"{STIMULUS_GROUP}-{fold}"


def stage_epochs(variant: str, preset: str, override: tuple[int, ...] = ()) -> dict[str, int]:
    """Epochs of each stage of a variant: the preset's, or ``override`` (same order)."""
    names = STAGES[variant]
    epochs = tuple(override) if override else EPOCHS[preset][variant]
    if override and names[-1] == "refit" and len(epochs) == len(names) - 1:
        epochs = epochs + (0,)  # the refit stage is optional in an override
    if len(epochs) != len(names):
        raise ValueError(f"variant {variant!r} has stages {names}: --epochs needs {len(names)} numbers, got {list(epochs)}")
    return dict(zip(names, (int(e) for e in epochs)))


def build_plan(
    variant: str,
    epochs: dict[str, int],
    participants: list[str],
    meg_participants: list[str],
    folds: list[str],
    seeds: list[int],
    source_of_fold: dict[str, str] | None = None,
    joint_meg: bool = True,
    together: bool = False,
) -> list[FitSpec]:
    """All fits of a training job in the order they run (seed, fold, then group).

    ``stimulus-tuned``: per fold and seed, the ``_stimulus`` fit (target
    :func:`stimulus_target`) tunes the encoder; the brain fits start from its encoder.

    ``together`` (vanilla / fine-tuned): one fit ``_all`` for all participants (each window
    passes the encoder once per batch whatever the number of participants) instead of one
    fit per participant.
    """
    plan: list[FitSpec] = []
    for seed in seeds:
        for fold in folds:
            if variant in ("vanilla", "fine-tuned"):
                stages = (Stage("heads", epochs["heads"]),)
                if variant == "fine-tuned":
                    stages += (Stage("full", epochs["full"]),)
                    if epochs.get("refit"):
                        stages += (Stage("heads", epochs["refit"], reset=True),)
                if together and len(participants) > 1:
                    plan.append(FitSpec(ALL_GROUP, fold, seed, tuple(participants), (), stages, tuple(participants)))
                    continue
                for pid in participants:
                    plan.append(FitSpec(pid, fold, seed, (pid,), (), stages, (pid,)))
            elif variant == "participant-transfer":
                src = (source_of_fold or {})[fold]
                source = FitSpec("_source", fold, seed, (src,), (),
                                 (Stage("heads", epochs["source-heads"]), Stage("full", epochs["source-full"])),
                                 (src,) if src in participants else ())
                plan.append(source)
                for pid in participants:
                    if pid != src:
                        plan.append(FitSpec(pid, fold, seed, (pid,), (), (Stage("heads", epochs["target-heads"]),), (pid,), init=source.id))
            elif variant == "meg-transfer":
                meg = FitSpec("_meg", fold, seed, (), tuple(meg_participants),
                              (Stage("heads", epochs["meg-heads"]), Stage("full", epochs["meg-full"])), ())
                plan.append(meg)
                for pid in participants:
                    plan.append(FitSpec(pid, fold, seed, (pid,), (),
                                        (Stage("heads", epochs["fmri-heads"]), Stage("full", epochs["fmri-full"])), (pid,), init=meg.id))
            elif variant == "joint":
                plan.append(FitSpec("_joint", fold, seed, tuple(participants), tuple(meg_participants) if joint_meg else (),
                                    (Stage("heads", epochs["heads"]), Stage("full", epochs["full"])), tuple(participants)))
            elif variant == "stimulus-tuned":
                source = FitSpec(STIMULUS_GROUP, fold, seed, (stimulus_target(fold),), (),
                                 (Stage("heads", epochs["stimulus-heads"]), Stage("full", epochs["stimulus-full"])), ())
                plan.append(source)
                stages = (Stage("heads", epochs["heads"]),)  # vanilla's stage: same fit id, data order, zero heads
                if together and len(participants) > 1:
                    plan.append(FitSpec(ALL_GROUP, fold, seed, tuple(participants), (), stages, tuple(participants),
                                        init=source.id))
                    continue
                for pid in participants:
                    plan.append(FitSpec(pid, fold, seed, (pid,), (), stages, (pid,), init=source.id))
            else:
                raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return plan
