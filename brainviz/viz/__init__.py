"""Figures (plotly) used by the app and by scripts; no Streamlit here.

Modules
-------
cortex     3-D cortical maps on fsaverage5 (Mesh3d per hemisphere, threshold, outline, views)
flatmap    2-D flat maps (nilearn's fsaverage5 ``flat`` mesh) with box/lasso selection
curves     Fig. 2 curves of a comparison, per-ROI bars, histograms
attention  [CLS] attention per layer (Fig. 4), layer x head change, token attention
coupling   AN-BN coupling figures and the query/key text heatmap (HTML)
export     CSV / GIfTI / HTML / PNG-SVG exports (simulated data stays marked)

Every builder takes ``simulated=`` and stamps a "SIMULATED DATA" badge when true.
"""

from brainviz.viz._common import SIMULATED_TEXT, add_simulated_badge, has_simulated_badge

__all__ = ["SIMULATED_TEXT", "add_simulated_badge", "has_simulated_badge"]
