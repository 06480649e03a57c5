"""Low-level stimulus features: the baselines a language-model encoding must beat.

Per word: 1 (word rate), letter count, unigram surprisal ``-ln p(word)`` (wordfreq) and
content word (spaCy POS, :data:`brainviz.data.features.CONTENT_POS`); on the TR grid they are
Lanczos sums (so "word rate" is words per TR, "letters" letters per TR, ...), delayed like the
LM features. :func:`trend_features` is the time-in-run baseline (linear + slow cosines): it is
scored as its own model, the same way as the others, never added as a free regressor to the
LM model (it extrapolates across held-out blocks; see docs/encoding.md).
"""

from __future__ import annotations

import numpy as np

LOWLEVEL_COLUMNS = ("word_rate", "letters", "surprisal", "content_words")


def word_lowlevel(stimulus) -> np.ndarray:
    """(n_words, 4) array of :data:`LOWLEVEL_COLUMNS` per word (spaCy + wordfreq)."""
    from brainviz.data.features import annotate_stimulus

    ann = annotate_stimulus(stimulus)
    return np.c_[
        np.ones(len(ann)),
        ann["length"].to_numpy(dtype=float),
        -ann["log_freq"].to_numpy(dtype=float),
        ann["is_content"].to_numpy(dtype=float),
    ].astype(np.float32)


def trend_features(runs: np.ndarray, tr_index: np.ndarray, n_cosines: int = 3) -> np.ndarray:
    """Time-in-run regressors per row: linear ramp and ``n_cosines`` slow cosines (DCT-II basis).

    ``tr_index`` are acquisition indices (the run's position is taken relative to its first
    row), so trimmed TRs keep their place on the ramp.
    """
    runs = np.asarray(runs).astype(str)
    pos = np.asarray(tr_index, dtype=np.float64)
    out = np.zeros((len(runs), 1 + n_cosines))
    for r in dict.fromkeys(runs.tolist()):
        idx = np.flatnonzero(runs == r)
        p = pos[idx] - pos[idx].min()
        span = max(p.max(), 1.0)
        x = p / span
        out[idx, 0] = x - 0.5
        for k in range(1, n_cosines + 1):
            out[idx, k] = np.cos(np.pi * k * (x * (len(p) - 1) + 0.5) / len(p))
    return out.astype(np.float32)
