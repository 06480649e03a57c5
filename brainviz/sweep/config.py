"""``SweepConfig``: a grid of brain-tuning jobs (variants x participants x folds x seeds)."""

from __future__ import annotations

import dataclasses
from typing import Any

from brainviz.config import ConfigError, JobConfig

AXES = ("participants", "folds", "seeds")
BACKENDS = ("ray", "local")
#: Variants whose fits are shared by several participants (a MEG fit, a source participant's
#: fit, one joint model): their participants stay in one job so that shared fit runs once.
SHARED_FIT_VARIANTS = ("participant-transfer", "meg-transfer", "joint")
#: TrainConfig fields the sweep sets itself (not allowed in ``train``).
GRID_FIELDS = ("dataset", "variant", "out", "participants", "folds", "seeds", "overwrite", "epochs")


@dataclasses.dataclass(frozen=True)
class SweepConfig(JobConfig):
    """A sweep: one :class:`~brainviz.tuning.TrainConfig` job per grid cell, run on Ray.

    Attributes
    ----------
    dataset : str
        Dataset folder (must be reachable at the same path from every Ray node).
    variants : tuple of str
        Variants to train (see :data:`brainviz.tuning.VARIANTS`).
    out : str
        Sweep folder. Every job writes one checkpoint ``<out>/<job name>/`` (a checkpoint
        store: point ``BRAINVIZ_MODELS`` at it); ``<out>/sweep.json`` records the grid.
    participants, folds, seeds : tuples
        The grid (empty participants / folds: all of the dataset's).
    same_job : tuple of str
        Axes (``participants``, ``folds``, ``seeds``) kept inside one job instead of one job
        per value. The participants of ``participant-transfer``, ``meg-transfer`` and
        ``joint`` are always together (their shared fit would otherwise be retrained per
        participant; ``joint`` is one model of all participants by definition).
    train : dict
        Other :class:`TrainConfig` fields, the same for every job (``base``, ``preset``,
        ``loss``, ``lora``, ``lr``, ``batch_size``, ``preprocess``, ``device``, ...).
    epochs : dict
        ``{variant: [epochs of each stage]}`` overrides (stage counts differ per variant).
    backend : str
        ``ray`` (default) or ``local`` (in this process, one job after the other).
    address : str or None
        Ray cluster: ``auto`` (a cluster started with ``ray start`` on this machine),
        ``ray://host:10001`` (Ray Client) or ``host:6379``; None starts a local Ray.
    ray_cpus : int or None
        CPUs of the local Ray started when ``address`` is None (None: all of this machine's).
    num_cpus, num_gpus, memory_gb :
        Resources one job asks Ray for (``num_gpus`` may be fractional, e.g. 0.5 to put two
        jobs on one GPU); torch uses ``num_cpus`` threads inside a job.
    max_retries : int
        Ray retries of a job whose worker died (a retry resumes from the job's ``.partial``).
    """

    dataset: str = ""
    variants: tuple[str, ...] = ()
    out: str = ""
    participants: tuple[str, ...] = ()
    folds: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    same_job: tuple[str, ...] = ()
    train: dict = dataclasses.field(default_factory=dict)
    epochs: dict = dataclasses.field(default_factory=dict)
    backend: str = "ray"
    address: str | None = None
    ray_cpus: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float | None = None
    max_retries: int = 1

    def validate(self) -> None:
        from brainviz.tuning.variants import VARIANTS

        name = type(self).__name__
        if not self.dataset:
            raise ConfigError(f"{name}.dataset: a dataset folder is required")
        if not self.out:
            raise ConfigError(f"{name}.out: a sweep folder is required")
        if not self.variants:
            raise ConfigError(f"{name}.variants: at least one variant is required")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(f"{name}.variants: unknown variant(s) {bad}; expected some of {VARIANTS}")
        for field in ("variants", "participants", "folds", "seeds"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise ConfigError(f"{name}.{field}: duplicates in {list(values)}")
        if not self.seeds:
            raise ConfigError(f"{name}.seeds: at least one seed is required")
        bad = [a for a in self.same_job if a not in AXES]
        if bad:
            raise ConfigError(f"{name}.same_job: unknown axis {bad}; expected some of {AXES}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"{name}.backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.address is not None and self.backend != "ray":
            raise ConfigError(f"{name}.address: only the ray backend connects to a cluster")
        if not isinstance(self.train, dict):
            raise ConfigError(f"{name}.train: must be a dict of TrainConfig fields")
        clash = sorted(set(self.train) & set(GRID_FIELDS))
        if clash:
            raise ConfigError(f"{name}.train: {clash} are set by the sweep itself (use the sweep's fields)")
        if not isinstance(self.epochs, dict):
            raise ConfigError(f"{name}.epochs: must be a dict {{variant: [epochs per stage]}}")
        extra = sorted(set(self.epochs) - set(self.variants))
        if extra:
            raise ConfigError(f"{name}.epochs: variant(s) {extra} are not in the sweep's variants")
        if not self.num_cpus > 0:
            raise ConfigError(f"{name}.num_cpus: must be > 0, got {self.num_cpus}")
        if self.num_gpus < 0:
            raise ConfigError(f"{name}.num_gpus: must be >= 0, got {self.num_gpus}")
        if self.memory_gb is not None and not self.memory_gb > 0:
            raise ConfigError(f"{name}.memory_gb: must be > 0, got {self.memory_gb}")
        if self.ray_cpus is not None and self.ray_cpus < 1:
            raise ConfigError(f"{name}.ray_cpus: must be >= 1, got {self.ray_cpus}")
        if self.max_retries < 0:
            raise ConfigError(f"{name}.max_retries: must be >= 0, got {self.max_retries}")
        # every job's TrainConfig must be valid: check one per variant now (names the field)
        for variant in self.variants:
            self.train_config(variant, out="<check>")

    def train_config(self, variant: str, out: str, participants: tuple[str, ...] = (),
                     folds: tuple[str, ...] = (), seeds: tuple[int, ...] | None = None):
        """The :class:`TrainConfig` of one job of this sweep."""
        from brainviz.tuning.config import TrainConfig

        values: dict[str, Any] = dict(self.train)
        values.update(dataset=self.dataset, variant=variant, out=out, participants=tuple(participants),
                      folds=tuple(folds), seeds=tuple(self.seeds if seeds is None else seeds),
                      epochs=tuple(int(e) for e in self.epochs.get(variant, ())))
        try:
            return TrainConfig.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"SweepConfig (variant {variant}): {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"SweepConfig.train: {exc}") from None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SweepConfig":
        values = dict(values)
        train = values.pop("train", None)
        epochs = values.pop("epochs", None)
        cfg_values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg_values) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
        if train is not None:
            cfg_values["train"] = dict(train)
        if epochs is not None:
            cfg_values["epochs"] = {k: tuple(v) for k, v in dict(epochs).items()}
        return cls(**cfg_values)
