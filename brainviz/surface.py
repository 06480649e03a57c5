"""fsaverage5 meshes (shipped inside nilearn) and MNI-coordinate helpers.

Unit order everywhere in brainviz: 10,242 left-hemisphere vertices, then 10,242 right.
"""

from __future__ import annotations

import functools

import numpy as np

N_PER_HEMI = 10242
HEMIS = ("left", "right")
MESH_KINDS = ("pial", "inflated", "white_matter", "sphere", "flat")


@functools.lru_cache(maxsize=None)
def fsaverage5_mesh(kind: str = "pial", hemi: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """``(coordinates (10242, 3), faces (n_faces, 3))`` of one fsaverage5 hemisphere.

    ``kind`` is one of ``pial, inflated, white_matter, sphere, flat`` (nilearn's names).
    The flat mesh has fewer faces (the medial wall is cut out).
    """
    if kind not in MESH_KINDS:
        raise ValueError(f"unknown mesh kind {kind!r}; expected one of {MESH_KINDS}")
    if hemi not in HEMIS:
        raise ValueError(f"unknown hemisphere {hemi!r}; expected 'left' or 'right'")
    from nilearn.datasets import load_fsaverage

    part = load_fsaverage("fsaverage5")[kind].parts[hemi]
    coords = np.asarray(part.coordinates, dtype=np.float32)
    faces = np.asarray(part.faces, dtype=np.int32)
    coords.setflags(write=False)
    faces.setflags(write=False)
    return coords, faces


def pial_coordinates() -> np.ndarray:
    """MNI-like (fsaverage/MNI305) mm coordinates of all 20,484 vertices, left first."""
    return np.concatenate([fsaverage5_mesh("pial", h)[0] for h in HEMIS])


def hemisphere_slices() -> dict[str, slice]:
    """Slices of the 20,484-vector that belong to each hemisphere."""
    return {"left": slice(0, N_PER_HEMI), "right": slice(N_PER_HEMI, 2 * N_PER_HEMI)}


def vertices_near(mni_xyz, radius: float) -> np.ndarray:
    """Indices (0..20483) of pial vertices within ``radius`` mm of an MNI coordinate.

    A coordinate with x < 0 searches the left hemisphere only, x >= 0 the right one, so a
    midline-adjacent sphere never leaks across hemispheres.
    """
    xyz = np.asarray(mni_xyz, dtype=float)
    coords = pial_coordinates()
    d = np.linalg.norm(coords - xyz, axis=1)
    hemi = np.zeros(2 * N_PER_HEMI, dtype=bool)
    hemi[hemisphere_slices()["left" if xyz[0] < 0 else "right"]] = True
    return np.flatnonzero((d <= radius) & hemi)


def cortex_mask() -> np.ndarray:
    """True for vertices that are not medial wall (those that survive in the flat mesh)."""
    mask = np.zeros(2 * N_PER_HEMI, dtype=bool)
    for h, sl in hemisphere_slices().items():
        faces = fsaverage5_mesh("flat", h)[1]
        used = np.zeros(N_PER_HEMI, dtype=bool)
        used[np.unique(faces)] = True
        mask[sl] = used
    return mask
