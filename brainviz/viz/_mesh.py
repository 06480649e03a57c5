"""fsaverage5 meshes for the figures, cached as one ``.npz`` in the cache folder.

:func:`brainviz.surface.fsaverage5_mesh` reads the meshes through nilearn, whose import alone
takes seconds; the app draws maps often, so the first call stores every mesh the figures use
in ``<cache>/meshes/fsaverage5-v1.npz`` and later processes read that file (tens of ms).
"""

from __future__ import annotations

import functools

import numpy as np

from brainviz import paths
from brainviz._io import atomic_path

N_PER_HEMI = 10242
HEMIS = ("left", "right")
KINDS = ("inflated", "pial", "flat", "sulc")
_FILE = "fsaverage5-v1.npz"


def _cache_file():
    return paths.cache_dir() / "meshes" / _FILE


def _build() -> dict[str, np.ndarray]:
    from brainviz.surface import fsaverage5_mesh

    out: dict[str, np.ndarray] = {}
    for kind in ("inflated", "pial", "flat"):
        for hemi in HEMIS:
            coords, faces = fsaverage5_mesh(kind, hemi)
            out[f"{kind}_{hemi}_coords"] = np.asarray(coords, dtype=np.float32)
            out[f"{kind}_{hemi}_faces"] = np.asarray(faces, dtype=np.int32)
    try:  # sulcal depth for the grey background shading (optional)
        from nilearn.datasets import load_fsaverage_data

        sulc = load_fsaverage_data("fsaverage5", mesh_type="inflated", data_type="sulcal")
        for hemi in HEMIS:
            out[f"sulc_{hemi}"] = np.asarray(sulc.data.parts[hemi], dtype=np.float32).ravel()
    except Exception:  # pragma: no cover - older nilearn
        pass
    return out


@functools.lru_cache(maxsize=1)
def _all() -> dict[str, np.ndarray]:
    target = _cache_file()
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError):
            pass
    data = _build()
    try:
        with atomic_path(target, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **data)
    except OSError:  # read-only cache: keep it in memory only
        pass
    return data


def mesh(kind: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """``(coords float32 (10242, 3), faces int32 (n, 3))`` of one fsaverage5 hemisphere."""
    if kind not in ("inflated", "pial", "flat"):
        raise ValueError(f"unknown mesh kind {kind!r}; expected inflated, pial or flat")
    if hemi not in HEMIS:
        raise ValueError(f"unknown hemisphere {hemi!r}; expected 'left' or 'right'")
    data = _all()
    return data[f"{kind}_{hemi}_coords"], data[f"{kind}_{hemi}_faces"]


def sulcal_depth(hemi: str) -> np.ndarray | None:
    return _all().get(f"sulc_{hemi}")


@functools.lru_cache(maxsize=2)
def cortex_vertices(hemi: str) -> np.ndarray:
    """Vertex indices (0..10241) of one hemisphere that are cortex (in the flat mesh)."""
    return np.unique(mesh("flat", hemi)[1])


def cortex_mask() -> np.ndarray:
    """True for the 20,484 vertices that are not medial wall."""
    out = np.zeros(2 * N_PER_HEMI, dtype=bool)
    for h, hemi in enumerate(HEMIS):
        out[h * N_PER_HEMI + cortex_vertices(hemi)] = True
    return out


@functools.lru_cache(maxsize=2)
def edges(hemi: str) -> np.ndarray:
    """Unique undirected edges (m, 2) of one hemisphere's (pial) mesh."""
    faces = mesh("pial", hemi)[1]
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


def clear_memory_cache() -> None:
    """Forget the in-memory meshes (tests that change ``BRAINVIZ_CACHE``)."""
    _all.cache_clear()
    cortex_vertices.cache_clear()
    edges.cache_clear()


def prewarm() -> None:
    """Build the mesh cache file now (e.g. while the default dataset is built)."""
    _all()


__all__ = ["mesh", "sulcal_depth", "cortex_mask", "cortex_vertices", "edges", "prewarm", "clear_memory_cache"]
