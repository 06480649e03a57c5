"""fsaverage5 surface geometry: the one place that knows the mesh.

Unit order everywhere in brainviz: 10,242 left-hemisphere vertices, then 10,242 right
(:data:`N_PER_HEMI`, :data:`N_VERTICES`, :func:`hemisphere_slices`).

Two ways to the meshes:

* :func:`fsaverage5_mesh` reads any of nilearn's fsaverage5 meshes (shipped inside nilearn, no
  network) through nilearn, whose import alone takes seconds;
* :func:`mesh`, :func:`sulcal_depth`, :func:`curvature`, :func:`cortex_vertices`,
  :func:`cortex_mask`, :func:`edges` and :func:`vertex_normals` serve the figures from one
  ``.npz`` written on first use into ``<cache>/meshes/fsaverage5-v2.npz`` (tens of ms in a
  new process, no nilearn import).

Shading data: ``sulc`` (sulcal depth; positive = deep, FreeSurfer convention) and ``curv``
(mean curvature) are nilearn's bundled fsaverage5 maps; when they are missing (an older
nilearn), sulcal depth is approximated from the inflated mesh (distance below the convex hull
direction) so figures still get a folding pattern.
"""

from __future__ import annotations

import functools

import numpy as np

N_PER_HEMI = 10242
N_VERTICES = 2 * N_PER_HEMI
HEMIS = ("left", "right")
MESH_KINDS = ("pial", "inflated", "white_matter", "sphere", "flat")
#: Meshes kept in the cache file used by the figures.
CACHED_KINDS = ("inflated", "pial", "flat")
_CACHE_FILE = "fsaverage5-v2.npz"


def _check_hemi(hemi: str) -> None:
    if hemi not in HEMIS:
        raise ValueError(f"unknown hemisphere {hemi!r}; expected 'left' or 'right'")


def hemisphere_slices() -> dict[str, slice]:
    """Slices of the 20,484-vector that belong to each hemisphere."""
    return {"left": slice(0, N_PER_HEMI), "right": slice(N_PER_HEMI, N_VERTICES)}


def hemisphere_slice(hemi: str) -> slice:
    """Slice of the 20,484-vector of one hemisphere."""
    _check_hemi(hemi)
    return hemisphere_slices()[hemi]


def is_fsaverage5(n_units: int) -> bool:
    """Whether ``n_units`` columns are fsaverage5 vertices (both hemispheres)."""
    return int(n_units) == N_VERTICES


# --------------------------------------------------------------------------------------
# nilearn (slow import; used to build the cache and by the volume projector)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def fsaverage5_mesh(kind: str = "pial", hemi: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """``(coordinates (10242, 3), faces (n_faces, 3))`` of one fsaverage5 hemisphere, via nilearn.

    ``kind`` is one of ``pial, inflated, white_matter, sphere, flat`` (nilearn's names).
    The flat mesh has fewer faces (the medial wall is cut out).
    """
    if kind not in MESH_KINDS:
        raise ValueError(f"unknown mesh kind {kind!r}; expected one of {MESH_KINDS}")
    _check_hemi(hemi)
    from nilearn.datasets import load_fsaverage

    part = load_fsaverage("fsaverage5")[kind].parts[hemi]
    coords = np.asarray(part.coordinates, dtype=np.float32)
    faces = np.asarray(part.faces, dtype=np.int32)
    coords.setflags(write=False)
    faces.setflags(write=False)
    return coords, faces


def nilearn_mesh(kind: str, hemi: str):
    """A nilearn ``InMemoryMesh`` of one fsaverage5 hemisphere (for nilearn's samplers)."""
    from nilearn.surface import InMemoryMesh

    coords, faces = fsaverage5_mesh(kind, hemi)
    return InMemoryMesh(np.asarray(coords, dtype=np.float64), np.asarray(faces))


def _nilearn_shading(data_type: str) -> dict[str, np.ndarray] | None:
    try:
        from nilearn.datasets import load_fsaverage_data

        img = load_fsaverage_data("fsaverage5", mesh_type="inflated", data_type=data_type)
        return {h: np.asarray(img.data.parts[h], dtype=np.float32).ravel() for h in HEMIS}
    except Exception:  # pragma: no cover - older nilearn without bundled maps
        return None


def _approx_sulc(coords: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Sulcal-depth stand-in: how far a vertex lies inside the local smooth surface."""
    import scipy.sparse as sp

    n = coords.shape[0]
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = sp.coo_matrix((np.ones(i.size), (i, j)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    smooth = coords.astype(np.float64)
    for _ in range(30):
        smooth = (adj @ smooth) / deg[:, None]
    centre = coords.mean(axis=0)
    return (np.linalg.norm(smooth - centre, axis=1) - np.linalg.norm(coords - centre, axis=1)).astype(np.float32)


def _build_cache() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for kind in CACHED_KINDS:
        for hemi in HEMIS:
            coords, faces = fsaverage5_mesh(kind, hemi)
            out[f"{kind}_{hemi}_coords"] = np.asarray(coords, dtype=np.float32)
            out[f"{kind}_{hemi}_faces"] = np.asarray(faces, dtype=np.int32)
    for key, data_type in (("sulc", "sulcal"), ("curv", "curvature")):
        maps = _nilearn_shading(data_type)
        for hemi in HEMIS:
            if maps is not None:
                out[f"{key}_{hemi}"] = maps[hemi]
            elif key == "sulc":
                out[f"{key}_{hemi}"] = _approx_sulc(out[f"inflated_{hemi}_coords"], out[f"inflated_{hemi}_faces"])
    return out


def _cache_file():
    from brainviz import paths

    return paths.cache_dir() / "meshes" / _CACHE_FILE


@functools.lru_cache(maxsize=1)
def _cached() -> dict[str, np.ndarray]:
    target = _cache_file()
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
            if all(f"{k}_{h}_faces" in data for k in CACHED_KINDS for h in HEMIS):
                return data
        except (OSError, ValueError):
            pass
    data = _build_cache()
    try:
        from brainviz._io import atomic_path

        with atomic_path(target, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **data)
    except OSError:  # read-only cache: keep it in memory only
        pass
    return data


def mesh(kind: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """``(coords float32 (10242, 3), faces int32 (n, 3))`` of one hemisphere, from the cache file.

    ``kind`` is ``inflated``, ``pial`` or ``flat`` (the flat mesh has no medial-wall faces).
    """
    if kind not in CACHED_KINDS:
        raise ValueError(f"unknown mesh kind {kind!r}; expected one of {CACHED_KINDS}")
    _check_hemi(hemi)
    data = _cached()
    return data[f"{kind}_{hemi}_coords"], data[f"{kind}_{hemi}_faces"]


def sulcal_depth(hemi: str) -> np.ndarray | None:
    """Sulcal depth (10242,) of one hemisphere (positive = sulcus), or None."""
    _check_hemi(hemi)
    return _cached().get(f"sulc_{hemi}")


def curvature(hemi: str) -> np.ndarray | None:
    """Mean curvature (10242,) of one hemisphere (nilearn's bundled map), or None."""
    _check_hemi(hemi)
    return _cached().get(f"curv_{hemi}")


@functools.lru_cache(maxsize=4)
def shading_grey(hemi: str, *, light: float = 0.78, dark: float = 0.52) -> np.ndarray:
    """Grey level (10242,) in ``[dark, light]`` for the background: gyri light, sulci dark.

    A smooth step of the sulcal depth (tanh of depth / its s.d.), the usual look of
    pycortex/nilearn backgrounds.
    """
    s = sulcal_depth(hemi)
    if s is None:
        return np.full(N_PER_HEMI, (light + dark) / 2, dtype=np.float32)
    s = np.asarray(s, dtype=np.float64)
    z = np.tanh(2.0 * (s - np.median(s)) / max(float(np.std(s)), 1e-9))
    out = light - (light - dark) * (z + 1.0) / 2.0
    out.setflags(write=False)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=2)
def cortex_vertices(hemi: str) -> np.ndarray:
    """Vertex indices (0..10241) of one hemisphere that are cortex (in the flat mesh)."""
    return np.unique(mesh("flat", hemi)[1])


def cortex_mask() -> np.ndarray:
    """True for the 20,484 vertices that are not medial wall (those of the flat mesh)."""
    out = np.zeros(N_VERTICES, dtype=bool)
    for h, hemi in enumerate(HEMIS):
        out[h * N_PER_HEMI + cortex_vertices(hemi)] = True
    return out


@functools.lru_cache(maxsize=1)
def medial_wall_mask(iterations: int = 2) -> np.ndarray:
    """True for the 20,484 vertices of the medial wall proper.

    The flat mesh leaves out the medial wall *and* the thin relaxation cuts of the flat patch
    (calcarine, etc.); a morphological opening on the mesh (erode then dilate the non-cortex
    set ``iterations`` times) keeps the wall and drops the one- or two-vertex-wide cuts, whose
    vertices are real cortex and keep their values on 3-D views.
    """
    out = np.zeros(N_VERTICES, dtype=bool)
    for h, hemi in enumerate(HEMIS):
        off = ~np.isin(np.arange(N_PER_HEMI), cortex_vertices(hemi))
        e = edges(hemi)
        core = off.copy()
        for _ in range(iterations):  # erode: every neighbour also off-cortex
            bad = np.zeros(N_PER_HEMI, dtype=bool)
            bad[e[~core[e[:, 1]], 0]] = True
            bad[e[~core[e[:, 0]], 1]] = True
            core &= ~bad
        for _ in range(iterations):  # dilate back
            grow = core.copy()
            grow[e[core[e[:, 0]], 1]] = True
            grow[e[core[e[:, 1]], 0]] = True
            core = grow
        out[h * N_PER_HEMI:(h + 1) * N_PER_HEMI] = core & off
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=2)
def edges(hemi: str) -> np.ndarray:
    """Unique undirected edges (m, 2) of one hemisphere's (pial) mesh."""
    faces = mesh("pial", hemi)[1]
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


@functools.lru_cache(maxsize=8)
def vertex_normals(kind: str, hemi: str) -> np.ndarray:
    """Unit vertex normals (10242, 3) of a cached mesh (area-weighted face normals, outward)."""
    coords, faces = mesh(kind, hemi)
    c = coords.astype(np.float64)
    fn = np.cross(c[faces[:, 1]] - c[faces[:, 0]], c[faces[:, 2]] - c[faces[:, 0]])
    n = np.zeros_like(c)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    # orient outward: most normals should point away from the centroid
    if np.mean(np.sum(n * (c - c.mean(axis=0)), axis=1)) < 0:
        n = -n
    n.setflags(write=False)
    return n


def pial_coordinates() -> np.ndarray:
    """MNI-like (fsaverage/MNI305) mm coordinates of all 20,484 vertices, left first."""
    return np.concatenate([mesh("pial", h)[0] for h in HEMIS])


def vertices_near(mni_xyz, radius: float) -> np.ndarray:
    """Indices (0..20483) of pial vertices within ``radius`` mm of an MNI coordinate.

    A coordinate with x < 0 searches the left hemisphere only, x >= 0 the right one, so a
    midline-adjacent sphere never leaks across hemispheres.
    """
    xyz = np.asarray(mni_xyz, dtype=float)
    coords = pial_coordinates()
    d = np.linalg.norm(coords - xyz, axis=1)
    hemi = np.zeros(N_VERTICES, dtype=bool)
    hemi[hemisphere_slices()["left" if xyz[0] < 0 else "right"]] = True
    return np.flatnonzero((d <= radius) & hemi)


def clear_memory_cache() -> None:
    """Forget the in-memory meshes (tests that change ``BRAINVIZ_CACHE``)."""
    _cached.cache_clear()
    cortex_vertices.cache_clear()
    medial_wall_mask.cache_clear()
    edges.cache_clear()
    vertex_normals.cache_clear()
    shading_grey.cache_clear()
    try:  # the figure rasters derived from the meshes
        from brainviz.viz import _raster

        _raster.clear_memory_cache()
    except ImportError:  # pragma: no cover
        pass


def prewarm() -> None:
    """Build the mesh cache file now (e.g. while the default dataset is built)."""
    _cached()


__all__ = [
    "N_PER_HEMI", "N_VERTICES", "HEMIS", "MESH_KINDS", "hemisphere_slices", "hemisphere_slice", "is_fsaverage5",
    "fsaverage5_mesh", "nilearn_mesh", "mesh", "sulcal_depth", "curvature", "shading_grey", "cortex_vertices",
    "cortex_mask", "medial_wall_mask", "edges", "vertex_normals", "pial_coordinates", "vertices_near", "clear_memory_cache", "prewarm",
]
