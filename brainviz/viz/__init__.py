"""Figures (plotly) used by the app and by scripts; no Streamlit here.

Modules
-------
montage    static four-view montages (left/right x lateral/medial) drawn on the server: PNG (Pillow),
           SVG/PDF (matplotlib); colour centred on 0 (differences) or chance (accuracies)
cortex     interactive 3-D cortical maps on fsaverage5 (Mesh3d per hemisphere, threshold, outline, views)
flatmap    curvature-shaded flat maps (fsaverage5 ``flat`` mesh) with click/box/lasso selection
heldout    linked views: measured vs predicted held-out time courses of A and B, per-run accuracies
curves     Fig. 2 curves of a comparison, per-ROI bars, histograms
attention  [CLS] attention per layer (Fig. 4), layer x head change, token attention
coupling   AN-BN coupling figures and the query/key text heatmap (HTML)
export     CSV / GIfTI / zip with README / HTML / PNG-SVG-PDF exports (simulated data stays marked)

The fsaverage5 geometry (meshes, curvature, hemisphere slices) comes from :mod:`brainviz.surface`.

Every builder takes ``simulated=`` and stamps a "SIMULATED DATA" badge when true.
"""

from brainviz.viz._common import SIMULATED_TEXT, add_simulated_badge, has_simulated_badge

__all__ = ["SIMULATED_TEXT", "add_simulated_badge", "has_simulated_badge"]
