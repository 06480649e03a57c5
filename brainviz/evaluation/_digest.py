"""Fast content digests of large in-memory arrays, for cache keys.

Hashing the inputs of an interactive comparison (about 1.5 GB of predictions and targets) with
SHA-1 costs about a second on two cores, more than serving the cached result. Large arrays are
therefore hashed in 1 MiB chunks, in parallel, with an XXH64-style 64-bit hash of each chunk
(numba); the chunk hashes, the dtype, the shape and the unaligned tail are then combined with
SHA-1. This is a non-cryptographic content hash, which is what a cache key needs (accidental
collisions, not adversaries). Without numba, or for small arrays, plain SHA-1 is used.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

#: Arrays smaller than this are hashed with SHA-1 directly.
MIN_BYTES = 1 << 22
#: 64-bit words per chunk (1 MiB).
CHUNK_WORDS = 1 << 17
_LOCK = threading.Lock()  # numba's workqueue layer forbids concurrent parallel calls


def _chunk_hash_fn():
    """The compiled chunk-hash function, or None when numba is unavailable."""
    try:
        from brainviz.evaluation._digest_numba import chunk_hashes
    except ImportError:
        return None
    return chunk_hashes


def array_digest(arr: np.ndarray) -> str:
    """Hex digest of an array's dtype, shape and bytes (fast for large arrays)."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "OV":
        raise TypeError(f"cannot hash arrays of dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha1(f"{arr.dtype.str}{arr.shape}".encode())
    raw = arr.reshape(-1).view(np.uint8)
    if raw.size >= MIN_BYTES:
        fn = _chunk_hash_fn()
        if fn is not None:
            n8 = raw.size - raw.size % 8
            h.update(b"xxh64-chunks")
            with _LOCK:
                chunks = fn(raw[:n8].view(np.uint64), CHUNK_WORDS)
            h.update(chunks.tobytes())
            h.update(memoryview(raw[n8:]))
            return h.hexdigest()
    h.update(memoryview(raw))
    return h.hexdigest()
