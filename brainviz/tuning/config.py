"""``TrainConfig``: everything a brain-tuning job needs, shared by the CLI, the API and the app."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from brainviz.config import ConfigError, JobConfig
from brainviz.tuning.losses import LOSSES
from brainviz.tuning.variants import PRESETS, SETTINGS, STAGES, VARIANTS, stage_epochs


@dataclasses.dataclass(frozen=True)
class TrainConfig(JobConfig):
    """A brain-tuning job.

    Attributes
    ----------
    dataset : str
        Dataset folder.
    variant : str
        One of ``vanilla, fine-tuned, participant-transfer, meg-transfer, joint`` or
        ``stimulus-tuned`` (``modality="audio"`` only: the encoder tuned on stimulus features
        instead of fMRI, then brain heads as vanilla's; see :mod:`brainviz.tuning.speech`).
    out : str
        Checkpoint folder to create (``models/NAME``); a bare name goes into the store.
    base : str
        Encoder to start from (``pretrained``, a local HF folder, a checkpoint, a hub id).
    participants : tuple of str
        fMRI participants (empty: all).
    folds : tuple of str
        Runs to hold out, one fold each (empty: every run).
    seeds : tuple of int
    preset : str
        ``paper`` (the 2019 schedules) or ``quick`` (scaled down for a CPU).
    loss : str
        ``mse``, ``correlation``, ``cosine-huber`` or ``cosine-l2`` (:mod:`brainviz.tuning.losses`).
    lora : bool
        Full fine-tuning stages train LoRA adapters (r, alpha, dropout below) on the query /
        key / value / attention-output projections instead of all weights.
    epochs : tuple of int
        Overrides the preset's epochs of every stage of the variant (see ``variants.STAGES``).
    lr, head_lr, batch_size, weight_decay, warmup, dropout :
        AdamW learning rate of the encoder (None: the preset's, 5e-5 in ``paper``; heads use
        ``head_lr`` when set), batch size, weight decay (not on biases and LayerNorm), warm-up
        share of the steps of each stage, head dropout.
    max_length, meg_fraction, meg_stride, freeze_embeddings :
        None = the preset's value (``variants.SETTINGS``).
    head_mode : str or None
        ``split`` (one block of output columns per participant), ``shared`` (one block for
        all participants; needs equal unit counts, i.e. a common space) or ``shared+split``
        (shared block + a participant-specific one, summed). None: the preset's (``paper``
        split, ``quick`` shared, falling back to split when the spaces differ).
    pooling : str or None
        Head input: ``cls`` (the [CLS] hidden state, the paper) or ``mean`` (mean over the
        window's tokens). None: the preset's.
    together : bool or None
        vanilla / fine-tuned: train all participants in one fit (``quick``) rather than one
        fit per participant (``paper``). None: the preset's.
    encoder_targets : str or None
        What full stages of a shared-head fMRI fit (several participants, MSE) train the
        encoder on: ``units`` (every unit's target, the paper) or ``pcs:K`` (the top K
        principal components of the participants' mean target over the most reliable units,
        through a fixed read-out; the heads are then refitted from zero in the ``refit``
        stage; see :mod:`brainviz.tuning._denoise`). Other fits always use ``units``.
        None: the preset's (``paper`` units, ``quick`` pcs:8).
    reliable_fraction : float
        ``pcs:K``: share of units kept as the most reliable (leave-one-participant-out
        inter-participant correlation on the fold's training windows; default 0.05).
    keep_weights : str or None
        ``all`` (weights of every fit) or ``first`` (each seed's first fold only; all held-out
        predictions are kept). None: the preset's.
    predictions_dtype : str or None
        ``float32`` (bit-exact held-out scores) or ``float16`` (half the disk; Pearson r changes
        by < 1e-3 and a 20-vs-20 accuracy by at most a draw or two in 1,000). None: the preset's.
    meg : bool
        ``joint`` only: include the MEG participants (False: multi-participant fMRI tuning).
    source : str
        ``participant-transfer``: the participant to tune on, or ``auto`` = the most
        predictable one (ridge on the frozen encoder's features, training runs only).
    roi_mask : str or None
        Units to predict: a ``.npy`` file with a boolean mask (or integer indices),
        ``planted`` (simulated data: the ground truth's planted regions), ``language:DIR``
        (the language parcels atlas fetched to DIR) or ``glasser:PATH[:SET]`` (the vertices of
        a Glasser ROI set, ``late-language`` by default or ``early-auditory``, from a Glasser
        fsaverage5 atlas file or folder as :func:`brainviz.data.atlases.load_glasser` reads it;
        the card records the set and the atlas file).
    shuffle_encoder_targets : bool
        Null control of the encoder alone: with ``pcs:K`` encoder targets, the components the
        encoder learns from are permuted in time within run, while the heads are fitted on the
        real targets; a gain over vanilla that survives it is not learned from the stimulus.
    shuffle_targets : bool
        Null control: permute every participant's training targets in time within run.
    preprocess : dict
        Overrides of :class:`brainviz.data.PreprocessConfig` fields.
    device : str
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    mixed_precision, grad_accum :
        Full fine-tuning stages through HF Accelerate (:mod:`brainviz.tuning.distributed`):
        ``no`` / ``bf16`` / ``fp16`` autocast, and micro-batches per batch (same gradient).
    overwrite : bool
        Replace an existing ``out`` when the new checkpoint is complete.
    modality : str
        ``text`` (default: word windows through a text encoder) or ``audio`` (issue 15: the
        dataset's audio through a speech encoder given as ``base``; see
        :mod:`brainviz.tuning.speech`).
    audio_chunks : int
        ``audio`` only: TR-long audio chunks per example, ending at the TR (FIR delays on the
        raw audio; default 5).
    stimulus_pcs : int
        ``stimulus-tuned`` only: principal components of the language-model layer kept as
        stimulus targets (default 16; 0 = the low-level bands alone).
    stimulus_layer : int or None
        ``stimulus-tuned`` only: hidden state of the packaged MiniLM whose features give the
        components (0 = embeddings; None = the middle one).
    """

    dataset: str = ""
    variant: str = "fine-tuned"
    out: str = ""
    base: str = "pretrained"
    participants: tuple[str, ...] = ()
    folds: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    preset: str = "paper"
    loss: str = "mse"
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    epochs: tuple[int, ...] = ()
    lr: float | None = None
    head_lr: float | None = None
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup: float = 0.1
    dropout: float = 0.1
    max_length: int | None = None
    meg_fraction: float | None = None
    meg_stride: int | None = None
    freeze_embeddings: bool | None = None
    head_mode: str | None = None
    pooling: str | None = None
    together: bool | None = None
    keep_weights: str | None = None
    predictions_dtype: str | None = None
    encoder_targets: str | None = None
    reliable_fraction: float = 0.05
    meg: bool = True
    source: str = "auto"
    roi_mask: str | None = None
    shuffle_targets: bool = False
    shuffle_encoder_targets: bool = False
    preprocess: dict = dataclasses.field(default_factory=dict)
    device: str = "auto"
    mixed_precision: str = "no"
    grad_accum: int = 1
    overwrite: bool = False
    modality: str = "text"  # issue 15: "audio" = speech brain-tuning (brainviz/tuning/speech.py)
    audio_chunks: int = 5  # issue 15
    stimulus_pcs: int = 16  # issue 15: stimulus-tuned
    stimulus_layer: int | None = None  # issue 15: stimulus-tuned

    def validate(self) -> None:
        name = type(self).__name__
        if self.modality not in ("text", "audio"):  # issue 15
            raise ConfigError(f"{name}.modality: expected 'text' or 'audio', got {self.modality!r}")
        if isinstance(self.audio_chunks, bool) or not isinstance(self.audio_chunks, numbers.Integral) or self.audio_chunks < 1:
            raise ConfigError(f"{name}.audio_chunks: must be an integer >= 1, got {self.audio_chunks!r}")
        if self.variant == "stimulus-tuned" and self.modality != "audio":  # issue 15
            raise ConfigError(f"{name}.variant: stimulus-tuned is the speech control; it needs modality 'audio' "
                              "(--modality audio)")
        for field, value in (("stimulus_pcs", self.stimulus_pcs), ("stimulus_layer", self.stimulus_layer)):
            if value is None and field == "stimulus_layer":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"{name}.{field}: must be an integer >= 0, got {value!r}")
        from brainviz.tuning.distributed import DistributedSettings

        DistributedSettings.from_config(self)  # mixed_precision / grad_accum, errors name the field
        if not self.dataset:
            raise ConfigError(f"{name}.dataset: a dataset folder is required")
        if not self.out:
            raise ConfigError(f"{name}.out: an output folder (models/NAME) is required")
        if self.variant not in VARIANTS:
            raise ConfigError(f"{name}.variant: unknown variant {self.variant!r}; expected one of {VARIANTS}")
        if self.preset not in PRESETS:
            raise ConfigError(f"{name}.preset: unknown preset {self.preset!r}; expected one of {PRESETS}")
        if self.loss not in LOSSES:
            raise ConfigError(f"{name}.loss: unknown loss {self.loss!r}; expected one of {LOSSES}")
        from brainviz.models.heads import HEAD_MODES, POOLINGS

        if self.head_mode is not None and self.head_mode not in HEAD_MODES:
            raise ConfigError(f"{name}.head_mode: unknown mode {self.head_mode!r}; expected one of {HEAD_MODES}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigError(f"{name}.pooling: unknown pooling {self.pooling!r}; expected one of {POOLINGS}")
        if self.keep_weights is not None and self.keep_weights not in ("all", "first"):
            raise ConfigError(f"{name}.keep_weights: expected 'all' or 'first', got {self.keep_weights!r}")
        if self.predictions_dtype is not None and self.predictions_dtype not in ("float16", "float32"):
            raise ConfigError(f"{name}.predictions_dtype: expected 'float16' or 'float32', got {self.predictions_dtype!r}")
        if self.encoder_targets is not None:
            from brainviz.tuning._denoise import parse_encoder_targets

            try:
                parse_encoder_targets(self.encoder_targets)
            except ValueError as exc:
                raise ConfigError(f"{name}.encoder_targets: {exc}") from None
        if self.shuffle_encoder_targets and (self.variant != "fine-tuned" or self.setting("encoder_targets") == "units"):
            raise ConfigError(f"{name}.shuffle_encoder_targets: the encoder-only null control needs the fine-tuned "
                              "variant with encoder targets pcs:K (the quick preset's default)")
        if isinstance(self.reliable_fraction, bool) or not isinstance(self.reliable_fraction, numbers.Real) \
                or not 0 < self.reliable_fraction <= 1:
            raise ConfigError(f"{name}.reliable_fraction: must be in (0, 1], got {self.reliable_fraction!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"{name}.lr: must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"{name}.device: expected auto, cpu or cuda, got {self.device!r}")
        for field in ("lr", "head_lr", "weight_decay", "warmup", "dropout", "lora_dropout", "lora_alpha", "meg_fraction"):
            value = getattr(self, field, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)):
                raise ConfigError(f"{name}.{field}: must be a finite number, got {value!r}")
        for field in ("batch_size", "lora_r", "max_length", "meg_stride"):
            value = getattr(self, field, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ConfigError(f"{name}.{field}: must be an integer, got {value!r}")
        if any(isinstance(e, bool) or not isinstance(e, numbers.Integral) for e in self.epochs):
            raise ConfigError(f"{name}.epochs: must be integers, got {list(self.epochs)}")
        if not self.seeds:
            raise ConfigError(f"{name}.seeds: at least one seed is required")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{name}.seeds: duplicate seeds {list(self.seeds)}")
        if len(set(self.participants)) != len(self.participants):
            raise ConfigError(f"{name}.participants: duplicates in {list(self.participants)}")
        if len(set(self.folds)) != len(self.folds):
            raise ConfigError(f"{name}.folds: duplicates in {list(self.folds)}")
        for field, value in (("batch_size", self.batch_size), ("lora_r", self.lora_r)):
            if not value > 0:
                raise ConfigError(f"{name}.{field}: must be > 0, got {value}")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ConfigError(f"{name}.head_lr: must be > 0, got {self.head_lr}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"{name}.warmup: must be in [0, 1), got {self.warmup}")
        if not 0 <= self.dropout < 1 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"{name}.dropout: must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"{name}.weight_decay: must be >= 0")
        if self.meg_fraction is not None and not 0 < self.meg_fraction <= 1:
            raise ConfigError(f"{name}.meg_fraction: must be in (0, 1], got {self.meg_fraction}")
        if self.meg_stride is not None and self.meg_stride < 1:
            raise ConfigError(f"{name}.meg_stride: must be >= 1, got {self.meg_stride}")
        if self.max_length is not None and self.max_length < 4:
            raise ConfigError(f"{name}.max_length: must be >= 4 tokens, got {self.max_length}")
        if any(int(e) < 0 for e in self.epochs):
            raise ConfigError(f"{name}.epochs: must be >= 0, got {list(self.epochs)}")
        try:
            epochs = stage_epochs(self.variant, self.preset, self.epochs)
        except ValueError as exc:
            raise ConfigError(f"{name}.epochs: {exc}") from None
        final = {s: e for s, e in epochs.items() if not s.startswith(("source-", "meg-", "stimulus-"))}
        if sum(final.values()) < 1:
            raise ConfigError(f"{name}.epochs: the stages that fit the fMRI heads ({', '.join(final)}) have 0 epochs, "
                              f"which would save an untrained model; give at least 1 (got {epochs})")
        if self.variant != "joint" and not self.meg:
            raise ConfigError(f"{name}.meg: only the joint variant can leave out MEG")
        if not isinstance(self.preprocess, dict):
            raise ConfigError(f"{name}.preprocess: must be a dict of PreprocessConfig fields")
        self.preprocess_config()  # raises ConfigError on unknown fields / bad values

    # -- resolved values ----------------------------------------------------------------
    def setting(self, key: str) -> Any:
        """A preset-dependent setting: the config's value, or the preset's when None."""
        value = getattr(self, key)
        return SETTINGS[self.preset][key] if value is None else value

    def stage_epochs(self) -> dict[str, int]:
        return stage_epochs(self.variant, self.preset, self.epochs)

    def preprocess_config(self):
        from brainviz.data.preprocess import PreprocessConfig

        try:
            return PreprocessConfig.from_dict(dict(self.preprocess))
        except TypeError as exc:
            raise ConfigError(f"TrainConfig.preprocess: {exc}") from None

    def resolved(self) -> dict[str, Any]:
        """The config with preset values filled in (what the card records)."""
        out = self.to_dict()
        for key in SETTINGS[self.preset]:
            out[key] = self.setting(key)
        out["stage_epochs"] = self.stage_epochs()
        out["stages"] = list(STAGES[self.variant])
        out["preprocess"] = self.preprocess_config().to_dict()
        if self.variant != "stimulus-tuned":  # only the control uses them (job keys of the others unchanged)
            out.pop("stimulus_pcs")
            out.pop("stimulus_layer")
        return out

    def job_key(self) -> str:
        """Hash of everything that determines the result (not ``out``/``overwrite``/``device``)."""
        from brainviz._io import content_hash

        values = self.resolved()
        for key in ("out", "overwrite", "device"):
            values.pop(key)
        return content_hash("TrainConfig", values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        pre = values.pop("preprocess", None)
        cfg = super().from_dict(values)
        return cfg.replace(preprocess=dict(pre)) if pre is not None else cfg
