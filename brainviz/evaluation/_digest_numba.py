"""Compiled chunk hashes for :mod:`brainviz.evaluation._digest` (imports numba)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

P1 = np.uint64(11400714785074694791)
P2 = np.uint64(14029467366897019727)
P3 = np.uint64(1609587929392839161)
P4 = np.uint64(9650029242287828579)
B64 = np.uint64(64)
R1, R7, R12, R18, R27, R29, R31, R32, R33 = (np.uint64(v) for v in (1, 7, 12, 18, 27, 29, 31, 32, 33))


@njit(inline="always")
def _rotl(x, r):  # pragma: no cover - compiled
    return (x << r) | (x >> (B64 - r))


@njit(inline="always")
def _round(acc, w):  # pragma: no cover - compiled
    return _rotl(acc + w * P2, R31) * P1


@njit(parallel=True, cache=True, nogil=True)
def chunk_hashes(words, chunk_words):  # pragma: no cover - compiled
    """XXH64-style 64-bit hash of each chunk of ``chunk_words`` uint64 words, in parallel."""
    n = words.size
    n_chunks = (n + chunk_words - 1) // chunk_words
    out = np.empty(n_chunks, dtype=np.uint64)
    for c in prange(n_chunks):
        lo = c * chunk_words
        hi = min(lo + chunk_words, n)
        seed = np.uint64(c)
        a1 = seed + P1 + P2
        a2 = seed + P2
        a3 = seed
        a4 = seed - P1
        i = lo
        while i + 3 < hi:
            a1 = _round(a1, words[i])
            a2 = _round(a2, words[i + 1])
            a3 = _round(a3, words[i + 2])
            a4 = _round(a4, words[i + 3])
            i += 4
        h = _rotl(a1, R1) + _rotl(a2, R7) + _rotl(a3, R12) + _rotl(a4, R18)
        while i < hi:
            h ^= _round(np.uint64(0), words[i])
            h = _rotl(h, R27) * P1 + P4
            i += 1
        h ^= np.uint64(hi - lo)
        h ^= h >> R33
        h *= P2
        h ^= h >> R29
        h *= P3
        h ^= h >> R32
        out[c] = h
    return out
