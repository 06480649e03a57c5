"""MEG (reading): evoked components per word on a synthetic 306-sensor helmet.

Each word's epoch (0-500 ms, 20 bins of 25 ms) sums four evoked components with gamma time
kernels and fixed smooth sensor patterns: visual onset (100 ms), word length (150 ms),
content vs function (250 ms) and log frequency (380 ms, N400m-like). The previous word's late
response spills over (SOA 0.5 s); participants differ in gains and latencies; the noise is
spatially structured (AR(1) over bins) plus white sensor noise and a slow drift.
"""

from __future__ import annotations

import math

import numpy as np

from brainviz.data.simulate._util import _r
from brainviz.data.simulate.config import MEG_BIN_WIDTH, MEG_BINS

# MEG components: name, per-word driver, peak latency (s), gamma shape, relative amplitude, sources
MEG_COMPONENTS: tuple[tuple[str, str, float, float, float], ...] = (
    ("visual_onset", "constant 1 for every word", 0.100, 6.0, 1.5),
    ("word_length", "z-scored word length", 0.150, 6.0, 1.0),
    ("content", "content word (1) minus the mean", 0.250, 5.0, 0.8),
    ("log_freq", "minus the z-scored log frequency (rarer = larger)", 0.380, 4.0, 1.0),
)
# sources on the unit helmet: list of (centre direction, dipole offset direction, sign)
_MEG_SOURCES: dict[str, tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...]] = {
    "visual_onset": (((-0.3, -0.9, 0.1), (0.0, 0.0, 1.0), 1.0), ((0.3, -0.9, 0.1), (0.0, 0.0, 1.0), 1.0)),
    "word_length": (((-0.65, -0.7, -0.05), (0.0, 0.3, 1.0), 1.0),),
    "content": (((-0.75, 0.5, 0.2), (0.0, 1.0, 0.5), 1.0), ((-0.9, 0.0, 0.0), (0.0, 1.0, 0.0), 0.5)),
    "log_freq": (((-0.92, -0.2, 0.05), (0.0, 0.2, 1.0), 1.0), ((0.92, -0.2, 0.05), (0.0, 0.2, 1.0), 0.35)),
}



def meg_sensor_names() -> list[str]:
    """The 306 Elekta Neuromag channel names (magnetometer ...1, gradiometers ...2, ...3)."""
    names = []
    for group in range(1, 27):
        for loc in range(1, (2 if group == 8 else 4) + 1):
            for kind in (1, 2, 3):
                names.append(f"MEG{group:02d}{loc}{kind}")
    return names


def _helmet() -> np.ndarray:
    """102 sensor locations on the upper part of a unit sphere (synthetic helmet)."""
    n = 102
    k = np.arange(n) + 0.5
    z = 1.0 - k / n * 1.25  # from the vertex down to z = -0.25
    rad = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = np.pi * (3.0 - math.sqrt(5.0)) * k
    return np.c_[rad * np.cos(phi), rad * np.sin(phi), z]


def _meg_patterns() -> tuple[np.ndarray, np.ndarray]:
    """Component patterns (components x 306) and sensor positions (306 x 3)."""
    loc = _helmet()
    up = np.array([0.0, 0.0, 1.0])
    e1 = np.cross(up, loc)
    e1[np.linalg.norm(e1, axis=1) < 1e-9] = [1.0, 0.0, 0.0]
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(loc, e1)
    width = 0.35
    patterns = []
    for name, *_ in MEG_COMPONENTS:
        field = np.zeros(len(loc))
        grad = np.zeros((len(loc), 3))
        for centre, offset, sign in _MEG_SOURCES[name]:
            c = np.asarray(centre) / np.linalg.norm(centre)
            o = np.asarray(offset, dtype=float)
            o = o - c * (o @ c)
            o = 0.25 * o / np.linalg.norm(o)
            for q, s in ((c + o, sign), (c - o, -sign)):
                diff = loc - q
                g = np.exp(-(diff ** 2).sum(axis=1) / (2 * width ** 2))
                field += s * g
                grad += (s * g)[:, None] * (-diff / width ** 2)
        gx = (grad * e1).sum(axis=1) * width
        gy = (grad * e2).sum(axis=1) * width
        pat = np.stack([field, gx, gy], axis=1).reshape(-1)  # location-major: mag, grad, grad
        patterns.append(pat / np.abs(pat).max())
    positions = np.repeat(loc, 3, axis=0)
    return np.asarray(patterns), positions


def _gamma_kernel(t: np.ndarray, peak: float, shape: float) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    x = np.clip(t / peak, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(x > 0, x ** shape * np.exp(shape * (1.0 - x)), 0.0)
    return k


def _meg_word_drivers(wf) -> np.ndarray:
    content = wf["is_content"].to_numpy(dtype=float)
    lf = wf["log_freq"].to_numpy(dtype=float)
    cols = {
        "visual_onset": np.ones(len(wf)),
        "word_length": wf["z_length"].to_numpy(dtype=float),
        "content": content - content.mean(),
        "log_freq": -(lf - lf.mean()) / (lf.std() or 1.0),
    }
    return np.stack([cols[name] for name, *_ in MEG_COMPONENTS], axis=1)


def _meg_participant(rng, drivers, onsets, run_codes, patterns, responsiveness, config) -> tuple[np.ndarray, dict]:
    """One participant's epochs (words x sensors x bins, float32) and their gains / latency shifts."""
    n_words, n_sens = drivers.shape[0], patterns.shape[1]
    t = (np.arange(MEG_BINS) + 0.5) * MEG_BIN_WIDTH
    gains = np.exp(rng.normal(0.0, 0.25, len(MEG_COMPONENTS))) * responsiveness
    shifts = rng.normal(0.0, 0.012, len(MEG_COMPONENTS))
    # soa to previous word in the same run (spill-over of its late response)
    prev_ok = np.r_[False, run_codes[1:] == run_codes[:-1]]
    soa = np.r_[np.inf, np.diff(onsets)]
    terms = np.zeros((n_words, MEG_BINS, len(MEG_COMPONENTS)))
    spill = prev_ok & (soa < 1.5)
    lag_prev = t[None, :] + np.where(np.isfinite(soa), soa, 0.0)[:, None]
    for c, (name, _, peak, shape, rel) in enumerate(MEG_COMPONENTS):
        amp = rel * gains[c] * (1.0 if name == "visual_onset" else config.meg_snr)
        a = drivers[:, c] * amp
        terms[:, :, c] = a[:, None] * _gamma_kernel(t, peak + shifts[c], shape)[None, :]
        # the previous word's late response at lag t + soa (same run, close enough to matter)
        a_prev = np.r_[0.0, a[:-1]] * spill
        terms[:, :, c] += a_prev[:, None] * _gamma_kernel(lag_prev, peak + shifts[c], shape)
    signal = np.matmul(terms.astype(np.float32), patterns.astype(np.float32))  # words x bins x sensors
    # noise: structured (smooth sensor components, AR(1) over bins) + white + slow drift
    n_comp = 24
    comp_pat, _ = _random_sensor_patterns(rng, n_comp)
    comps = rng.standard_normal((n_words, n_comp, MEG_BINS), dtype=np.float32)
    rho = 0.8
    for b in range(1, MEG_BINS):
        comps[:, :, b] = rho * comps[:, :, b - 1] + math.sqrt(1 - rho * rho) * comps[:, :, b]
    structured = np.matmul(comps.transpose(0, 2, 1), (comp_pat * math.sqrt(0.6)).astype(np.float32))
    white = rng.standard_normal((n_words, MEG_BINS, n_sens), dtype=np.float32) * np.float32(math.sqrt(0.4))
    drift = (np.linspace(-1.0, 1.0, n_words)[:, None] * rng.normal(0.0, 0.3, n_sens)[None, :]).astype(np.float32)
    data = signal + structured + white + drift[:, None, :]
    info = {"gains": [_r(g) for g in gains], "latency_shifts_s": [_r(s) for s in shifts]}
    return np.ascontiguousarray(data.transpose(0, 2, 1)), info


def _random_sensor_patterns(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` smooth random sensor patterns (n x 306) with unit mean square over components."""
    loc = _helmet()
    centres = rng.standard_normal((n, 3))
    centres[:, 2] = np.abs(centres[:, 2])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    d2 = ((loc[None, :, :] - centres[:, None, :]) ** 2).sum(axis=2)
    pats = np.exp(-d2 / (2 * 0.4 ** 2)) * rng.choice([-1.0, 1.0], size=(n, 1))
    pats = np.repeat(pats, 3, axis=1) * np.tile([1.0, 0.6, 0.6], len(loc))[None, :]
    pats /= np.sqrt((pats ** 2).sum(axis=0, keepdims=True))  # unit structured variance per sensor
    return pats, loc


