"""The one config type of feature extraction."""

from __future__ import annotations

import dataclasses

from brainviz.config import ConfigError, JobConfig
from brainviz.features.resample import DEFAULT_DELAYS

POOLINGS = ("words", "window")


@dataclasses.dataclass(frozen=True)
class FeatureConfig(JobConfig):
    """How language-model features are computed and put on the TR grid.

    Attributes
    ----------
    model : str
        Any name :func:`brainviz.models.encoder.resolve_model` accepts (default: the packaged
        all-MiniLM-L6-v2).
    layers : tuple of int
        Hidden-state indices (0 = embeddings, 1..L = layers); empty = all.
    pooling : {"words", "window"}
        ``words`` (Huth et al. 2016; LeBel et al. 2023): each word's state with ``context``
        preceding words, Lanczos-resampled at the TRs, then FIR ``delays``. ``window`` (Schwartz
        et al. 2019): the words in [t - window, t) read together, pooled by ``window_pool``.
    context : int
        Preceding words (same run) the model sees with each word (``words`` pooling).
    word_piece : {"first", "mean"}
        A word's state: its first word piece or the mean of its pieces.
    window_pool : {"cls", "mean", "last"}
        Pooling of a window (``window`` pooling).
    window : float
        Seconds of words per TR for ``window`` pooling (the paper's 10.1 s).
    delays : tuple of int, optional
        FIR delays in TRs; default (1, 2, 3, 4) for ``words``, (0,) for ``window`` (the window
        already spans the haemodynamic lag).
    lanczos_window : int
        Lobes of the Lanczos kernel.
    batch_size, max_length, device
        Forward-pass batching (sequences per batch), token limit (context is cut from the
        left) and torch device.
    """

    model: str = "pretrained"
    layers: tuple[int, ...] = ()
    pooling: str = "words"
    context: int = 20
    word_piece: str = "mean"
    window_pool: str = "mean"
    window: float = 10.1
    delays: tuple[int, ...] | None = None
    lanczos_window: int = 3
    batch_size: int = 64
    max_length: int = 512
    device: str = "cpu"

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"FeatureConfig.pooling: expected one of {POOLINGS}, got {self.pooling!r}")
        if self.word_piece not in ("first", "mean"):
            raise ConfigError(f"FeatureConfig.word_piece: expected 'first' or 'mean', got {self.word_piece!r}")
        if self.window_pool not in ("cls", "mean", "last"):
            raise ConfigError(f"FeatureConfig.window_pool: expected cls, mean or last, got {self.window_pool!r}")
        if self.context < 0:
            raise ConfigError(f"FeatureConfig.context must be >= 0 words, got {self.context}")
        if not self.window > 0:
            raise ConfigError(f"FeatureConfig.window must be > 0 s, got {self.window}")
        if self.delays is not None and (len(self.delays) == 0 or any(int(d) != d for d in self.delays)):
            raise ConfigError(f"FeatureConfig.delays must be whole TRs, got {self.delays}")
        if any(int(x) < 0 for x in self.layers):
            raise ConfigError(f"FeatureConfig.layers must be >= 0 (0 = embeddings), got {self.layers}")

    @property
    def effective_delays(self) -> tuple[int, ...]:
        if self.delays is not None:
            return tuple(int(d) for d in self.delays)
        return DEFAULT_DELAYS if self.pooling == "words" else (0,)
