"""Constants, presets and :class:`SimulationConfig` of the simulated experiment."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from brainviz.config import ConfigError, JobConfig

SIMULATOR_VERSION = "3.0"
EXPERIMENTS = ("reading", "listening")
N_VERTICES = 20484
STORY_DIR = Path(__file__).resolve().parent.parent / "stories"
GROUND_TRUTH_DIR = "ground_truth"
GROUND_TRUTH_JSON = "ground_truth.json"

ProgressFn = Callable[[float, str], None]

# --------------------------------------------------------------------------------------
# Presets and config
# --------------------------------------------------------------------------------------

# Peak per-TR r^2 of the language regions when SimulationConfig.peak_r2 is None (version 3.0:
# reading 0.4, so that with 18 readers brain-tuning has something detectable to learn)
DEFAULT_PEAK_R2 = {"reading": 0.4, "listening": 0.25}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "reading_fmri": 18, "reading_meg": 8, "reading_shared": 4, "reading_words": None,
        "listening_fmri": 20, "listening_words": None,
    },
    "small": {
        "reading_fmri": 3, "reading_meg": 3, "reading_shared": 2, "reading_words": 640,
        "listening_fmri": 4, "listening_words": 160,
    },
}
READING_TR = 2.0
LISTENING_TR = 1.5
READING_SOA = 0.5  # s per word (RSVP)
N_READING_RUNS = 4
TRIM_START, TRIM_END = 20, 15  # TRs dropped per run by the 2019 preprocessing
# Fixation / silence around the words of each run, in TRs: the first 4 (5) trimmed TRs of a
# run hold words, so the haemodynamic rise at story onset falls in the trimmed part; the tail
# covers all 15 trimmed TRs.
LEAD_IN_TRS = {"reading": 16, "listening": 15}
TAIL_TRS = 15
GRID_DT = 0.25  # s; neural time grid (divides both TRs)
N_CV_PARTICIPANTS = 4  # participants whose cross-validated variance explained is measured
MEG_BINS, MEG_BIN_WIDTH = 20, 0.025


@dataclasses.dataclass(frozen=True)
class SimulationConfig(JobConfig):
    """Options of the simulated experiment.

    Attributes
    ----------
    preset : str
        ``"default"`` (18 fMRI + 8 MEG readers, 20 listeners, full stories) or ``"small"``
        (3 fMRI + 3 MEG readers with 2 shared, 4 listeners, first paragraphs only).
    seed : int
        Seed of every random stream (>= 0).
    peak_r2 : float or None
        Target per-TR signal r^2 (both components together) at the centre of a
        left-hemisphere language region for an average participant; it falls off towards
        the region's edge, so the median over planted vertices is much lower. None (default):
        0.4 in reading (version 3.0: the best vertices' inter-participant correlation then
        reaches the ~0.3-0.4 of real language cortex) and 0.25 in listening.
    readable_share : float
        Share of a region's planted signal variance carried by the *readable* component
        (linear in word-level semantic / lexical features, which pretrained token features
        encode); the rest is the *brain-specific* component (nonlinear functions of the
        window's words, orthogonal to word-level lexical features). Regions deviate from this
        mean by a fixed offset (see :data:`~brainviz.data.simulate.space.LANGUAGE_REGIONS`)
        and a smooth field, within [0.05, 0.95] (default 0.5; 0 or 1 plant one component
        only).
    right_r2_scale : float
        Multiplier of ``peak_r2`` in the right-hemisphere homologues (default 0.35).
    network_r2 : float
        Target per-TR r^2 at the peak of each planted listening network (default 0.10).
    n_networks : int
        Number K of planted functional networks in the listening data: the first K of
        :data:`~brainviz.data.simulate.space.NETWORK_SPECS` (default 7, all of them: 5 that ANs
        should couple with, then 2 negative controls).
    recency_tau : float
        Time constant (s) of the exponential recency weighting of words (default 2.5).
    window : float
        Seconds of preceding words that drive the neural response (default 10.1, the
        preprocessing window).
    noise_tau : float
        Time constant (s) of the AR(1) fMRI noise: coefficient ``exp(-TR / noise_tau)``
        (default 2.0, i.e. 0.37 at TR 2 s and 0.47 at TR 1.5 s).
    structured_noise : float
        Share of the fMRI noise variance carried by smooth spatial components (default 0.25).
    meg_snr : float
        Peak amplitude of the feature-driven MEG components at their best sensor per unit (z)
        of their driver, relative to the noise s.d. (default 0.3: single-word correlations of
        about 0.2-0.3 at the best sensor and time bin; single epochs stay noisy, as in real MEG).
    audio : str
        Voice of the listening stories (issue 15, :mod:`brainviz.data.simulate.audio`):
        ``"auto"`` (default: Debian ``espeak-ng`` when installed, else the pure-Python formant
        synthesizer), ``"espeak-ng"``, ``"formant"`` or ``"none"`` (no audio).
    """

    preset: str = "default"
    seed: int = 0
    peak_r2: float | None = None
    readable_share: float = 0.5
    right_r2_scale: float = 0.35
    network_r2: float = 0.10
    n_networks: int = 7
    recency_tau: float = 2.5
    window: float = 10.1
    noise_tau: float = 2.0
    structured_noise: float = 0.25
    meg_snr: float = 0.3
    audio: str = "auto"  # issue 15: simulated listening audio

    def region_peak_r2(self, experiment: str) -> float:
        """``peak_r2`` of ``experiment``'s language regions (the experiment's default when None)."""
        if self.peak_r2 is not None:
            return float(self.peak_r2)
        return DEFAULT_PEAK_R2[experiment]

    def validate(self) -> None:
        name = type(self).__name__
        if self.preset not in PRESETS:
            raise ConfigError(f"{name}.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"{name}.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))  # numpy integers -> int (JSON, cache keys)
        checks = [
            ("peak_r2", self.peak_r2 is None or 0.0 < _num(self.peak_r2) < 0.9, "None or in (0, 0.9)"),
            ("readable_share", 0.0 <= _num(self.readable_share) <= 1.0, "in [0, 1]"),
            ("right_r2_scale", 0.0 <= _num(self.right_r2_scale) <= 1.0, "in [0, 1]"),
            ("network_r2", 0.0 <= _num(self.network_r2) < 0.9, "in [0, 0.9)"),
            ("recency_tau", 0.0 < _num(self.recency_tau) <= 60.0, "in (0, 60] seconds"),
            ("window", 1.0 <= _num(self.window) <= 60.0, "in [1, 60] seconds"),
            ("noise_tau", 0.0 <= _num(self.noise_tau) <= 60.0, "in [0, 60] seconds"),
            ("structured_noise", 0.0 <= _num(self.structured_noise) < 1.0, "in [0, 1)"),
            ("meg_snr", 0.0 <= _num(self.meg_snr) <= 100.0, "in [0, 100]"),
        ]
        for field, ok, what in checks:
            if not ok:
                raise ConfigError(f"{name}.{field} must be {what}, got {getattr(self, field)!r}")
        if self.audio not in ("auto", "espeak-ng", "formant", "none"):  # issue 15
            raise ConfigError(f"{name}.audio must be one of auto, espeak-ng, formant, none; got {self.audio!r}")
        from brainviz.data.simulate.space import NETWORK_SPECS

        n_specs = len(NETWORK_SPECS)
        if (
            isinstance(self.n_networks, bool)
            or not isinstance(self.n_networks, (int, np.integer))
            or not 1 <= self.n_networks <= n_specs
        ):
            raise ConfigError(f"{name}.n_networks must be an integer in [1, {n_specs}], got {self.n_networks!r}")
        object.__setattr__(self, "n_networks", int(self.n_networks))


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if not isinstance(value, bool) else math.nan

