"""Content-addressed cache of derived data and results in ``data_cache/``.

Keys are content hashes of the inputs and of the job config. Entries are written to a
temporary file and renamed, under a per-entry file lock, so two processes asking for the same
entry compute it once and never see a half-written file. Temporary files left by a killed
writer (their lock is free) are removed the next time an entry of the same namespace is
written.

Examples
--------
>>> from brainviz.cache import Cache
>>> cache = Cache(tmp_path)                                      # doctest: +SKIP
>>> arrays = cache.arrays("features", key, lambda: {"x": x})     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from brainviz import paths
from brainviz._io import atomic_path, clean_stale_temps, file_hash


class Cache:
    """A folder of cached entries, grouped by namespace.

    Parameters
    ----------
    root : path, optional
        Cache folder; defaults to :func:`brainviz.paths.cache_dir`.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else paths.cache_dir()

    def path(self, namespace: str, key: str, suffix: str) -> Path:
        """Where the entry ``key`` of ``namespace`` lives (it may not exist yet)."""
        return self.root / namespace / f"{key}{suffix}"

    @contextlib.contextmanager
    def lock(self, namespace: str, key: str) -> Iterator[None]:
        """Exclusive inter-process lock for one entry."""
        lock_path = self.path(namespace, key, ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def file(
        self, namespace: str, key: str, suffix: str, write: Callable[[Path], None]
    ) -> Path:
        """Return the entry's path, calling ``write(tmp_path)`` first if it is missing."""
        target = self.path(namespace, key, suffix)
        if target.exists():
            return target
        with self.lock(namespace, key):
            if not target.exists():  # another process may have finished it meanwhile
                clean_stale_temps(target.parent)  # left by killed writers of this namespace
                with atomic_path(target, suffix=suffix) as tmp:
                    write(tmp)
        return target

    def arrays(
        self, namespace: str, key: str, compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """Cached dict of arrays (stored as ``.npz`` without pickles)."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **compute())

        path = self.file(namespace, key, ".npz", write)
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}

    def json(self, namespace: str, key: str, compute: Callable[[], Any]) -> Any:
        """Cached JSON document."""

        def write(tmp: Path) -> None:
            tmp.write_text(json.dumps(compute(), indent=2, sort_keys=True))

        return json.loads(self.file(namespace, key, ".json", write).read_text())

    def has(self, namespace: str, key: str, suffix: str) -> bool:
        return self.path(namespace, key, suffix).exists()


def cached_file_hash(path: str | os.PathLike, cache: Cache | None = None) -> str:
    """Content hash of a file, memoised by (path, size, mtime) so big arrays are read once."""
    path = Path(path).resolve()
    st = path.stat()
    cache = cache or Cache()
    from brainviz._io import content_hash

    memo_key = content_hash(str(path), st.st_size, st.st_mtime_ns)
    return cache.json("file-hashes", memo_key, lambda: file_hash(path))
