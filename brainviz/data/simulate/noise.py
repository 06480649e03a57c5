"""fMRI noise: AR(1) in time, a smooth structured part shared through spatial components, drift.

Step 7 of the generative model (``docs/simulation.md``): unit variance per vertex,
``1 - structured_noise`` independent AR(1) noise (coefficient ``exp(-TR / noise_tau)``) and
``structured_noise`` through 16 smooth spatial components with slow AR(1) time courses, plus
a per-run vertex offset and linear drift (removed by detrending).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from brainviz.data.simulate.config import N_VERTICES
from brainviz.data.simulate.space import _smooth_fields

if TYPE_CHECKING:  # pragma: no cover
    from brainviz.data.simulate.config import SimulationConfig


def _ar1(x: np.ndarray, rho: float) -> np.ndarray:
    """In-place stationary AR(1) along axis 0 of white unit-variance noise."""
    if rho <= 0:
        return x
    c = np.float32(math.sqrt(1.0 - rho * rho))
    r = np.float32(rho)
    for t in range(1, x.shape[0]):
        x[t] *= c
        x[t] += r * x[t - 1]
    return x


N_NOISE_COMPONENTS = 16


def _noise_maps(rng: np.random.Generator, config: SimulationConfig) -> np.ndarray:
    """Spatial maps of the structured noise (components x vertices, float32).

    Scaled so the structured part has variance ``structured_noise`` at every vertex.
    """
    maps = _smooth_fields(rng, N_NOISE_COMPONENTS, 12)
    maps /= np.linalg.norm(maps, axis=0, keepdims=True)
    return (maps * math.sqrt(config.structured_noise)).astype(np.float32)


def _fmri_noise(rng: np.random.Generator, layouts, tr: float, config: SimulationConfig, maps: np.ndarray) -> np.ndarray:
    """Unit-variance AR(1) noise with a smooth structured part, plus per-run offset and drift."""
    n_trs = sum(lay.n_trs for lay in layouts)
    rho = math.exp(-tr / config.noise_tau) if config.noise_tau > 0 else 0.0
    lam = config.structured_noise
    n_comp = maps.shape[0]
    rho_slow = math.exp(-tr / 8.0)
    data = rng.standard_normal((n_trs, N_VERTICES), dtype=np.float32)
    c = np.float32(math.sqrt(1.0 - rho * rho) * math.sqrt(1.0 - lam))
    r = np.float32(rho)
    start = 0
    for lay in layouts:
        block = data[start: start + lay.n_trs]
        comps = _ar1(rng.standard_normal((lay.n_trs, n_comp), dtype=np.float32), rho_slow) @ maps
        offset = rng.normal(0.0, 0.5, N_VERTICES).astype(np.float32)
        slope = rng.normal(0.0, 0.3, N_VERTICES).astype(np.float32)
        ramp = np.linspace(-1.0, 1.0, lay.n_trs, dtype=np.float32)
        # AR(1) recursion on the independent part, then add structure and drift row by row
        block[0] *= np.float32(math.sqrt(1.0 - lam))
        prev = block[0].copy()
        block[0] += comps[0] + offset + ramp[0] * slope
        for t in range(1, lay.n_trs):
            row = block[t]
            row *= c
            row += r * prev
            prev[:] = row
            row += comps[t]
            row += offset
            row += ramp[t] * slope
        start += lay.n_trs
    return data


