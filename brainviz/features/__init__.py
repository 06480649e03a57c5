"""Stimulus features for encoding models: language-model layers, low-level baselines, delays.

| module | what |
| --- | --- |
| ``config`` | :class:`FeatureConfig` (the one config of feature extraction) |
| ``lm`` | :func:`word_states` (word pieces with causal context, every layer), :func:`window_states` |
| ``resample`` | :func:`lanczos_matrix`, :func:`lanczos_resample`, :class:`Delayer`, :func:`delay_by_run` |
| ``lowlevel`` | per-word low-level values, :func:`trend_features` |
| ``tr`` | :func:`lm_features`, :func:`baseline_features` at a participant's TRs (cached) |

Names load lazily; importing the package loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FeatureConfig": "config",
    "word_states": "lm", "window_states": "lm",
    "lanczos_matrix": "resample", "lanczos_resample": "resample", "Delayer": "resample", "delay_by_run": "resample",
    "trend_features": "lowlevel", "LOWLEVEL_COLUMNS": "lowlevel",
    "lm_features": "tr", "baseline_features": "tr", "selected_layers": "tr", "model_key": "tr",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"brainviz.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'brainviz.features' has no attribute {name!r}")
