"""A tiny synthetic listening dataset with planted networks, for tests and benchmarks.

Stand-in for :mod:`brainviz.data.simulate` where that is unavailable or too big: words of the
packaged listening stories at a steady speech rate, and fMRI = sum over ``n_networks`` planted
sparse spatial maps of their time courses (smooth random signals, some of them given as
``drivers``) plus Gaussian noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

STORIES = Path(__file__).resolve().parents[1] / "data" / "stories"


def story_text_words(name: str, n_words: int | None = None) -> list[str]:
    words = (STORIES / f"{name}.txt").read_text().split()
    return words[:n_words] if n_words else words


def smooth_noise(rng: np.random.Generator, n: int, width: float = 3.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.standard_normal(n + 20), width)[10:-10]
    return (x - x.mean()) / x.std()


def synthetic_dataset(
    n_participants: int = 3,
    n_units: int = 600,
    n_networks: int = 4,
    words_per_story: int = 300,
    tr: float = 1.5,
    words_per_second: float = 2.5,
    noise: float = 1.0,
    stories: tuple[str, ...] = ("listening_1", "listening_2"),
    drivers: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    space: Space | None = None,
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Build the dataset; return it and the ground truth ``{"maps": (K, V), "<story>": (T, K)}``.

    ``drivers[story]`` (T x k) replaces the first ``k`` planted time courses of that story.
    """
    rng = np.random.default_rng(seed)
    rows = []
    n_trs = {}
    for s in stories:
        words = story_text_words(s, words_per_story)
        onsets = np.arange(len(words)) / words_per_second + 3.0
        for w, o in zip(words, onsets):
            rows.append({"onset": float(o), "duration": 1.0 / words_per_second, "word": w, "run": s, "story": s})
        n_trs[s] = int(np.ceil((onsets[-1] + 12.0) / tr))
    stim = pd.DataFrame(rows)
    maps = np.zeros((n_networks, n_units))
    for k in range(n_networks):
        idx = rng.choice(n_units, size=max(4, n_units // (2 * n_networks)), replace=False)
        maps[k, idx] = rng.uniform(1.0, 2.0, size=idx.size)
    truth: dict[str, np.ndarray] = {"maps": maps}
    for s in stories:
        tc = np.stack([smooth_noise(rng, n_trs[s]) for _ in range(n_networks)], axis=1)
        if drivers and s in drivers:
            d = np.asarray(drivers[s], dtype=float)
            d = (d - d.mean(0)) / np.where(d.std(0) > 0, d.std(0), 1.0)
            tc[:, : d.shape[1]] = d
        truth[s] = tc
    space = space or Space("rois", roi_names=[f"u{i}" for i in range(n_units)])
    fmri = {}
    for p in range(n_participants):
        blocks = [truth[s] @ maps + noise * rng.standard_normal((n_trs[s], n_units)) for s in stories]
        data = np.concatenate(blocks).astype(np.float32)
        pid = f"sub-{p + 1:02d}"
        fmri[pid] = FMRIRecording(pid, data, tr, [Run(s, n_trs[s]) for s in stories], space)
    meta = DatasetMeta(name="coupling-synthetic", simulated=True, modality="listening")
    return Dataset(meta, stim, fmri), truth
