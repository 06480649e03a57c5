"""Compatibility alias: the fsaverage5 geometry lives in :mod:`brainviz.surface`.

Figures used to read meshes from here; everything now comes from the one surface module
(meshes cached in ``<cache>/meshes/``, sulcal depth/curvature, cortex mask, edges).
"""

from __future__ import annotations

from brainviz.surface import (  # noqa: F401  (re-exported)
    HEMIS,
    N_PER_HEMI,
    clear_memory_cache,
    cortex_mask,
    cortex_vertices,
    curvature,
    edges,
    mesh,
    prewarm,
    sulcal_depth,
)

KINDS = ("inflated", "pial", "flat", "sulc")

__all__ = ["mesh", "sulcal_depth", "curvature", "cortex_mask", "cortex_vertices", "edges", "prewarm",
           "clear_memory_cache", "N_PER_HEMI", "HEMIS"]
