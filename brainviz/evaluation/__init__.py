"""Evaluation: the 20-vs-20 test, significance tests with FDR, encoding metrics, comparisons.

Modules
-------
twenty      :func:`twenty_vs_twenty`, :func:`twenty_vs_twenty_by_run`, :func:`draw_indices`
stats       group (random-effects) tests, sign-flip / block sign-flip permutation tests, one-sample /
            paired tests per unit, FDR (BH default, BY option), reachability of the FDR level
encoding    ridge encoding models (himalaya), Pearson r, variance explained, noise ceilings
summaries   Fig. 2 curves of the 2019 paper, per-ROI tables, significance counts
compare     :class:`CompareConfig`, :func:`compare_predictions`, :func:`evaluate_predictions`,
            :func:`roi_tests`
calibration FDP / power of every offered test on constructed predictions
io          :func:`load_heldout` (held-out predictions of a checkpoint or prediction folder)

Names are imported lazily on first access (``brainviz.evaluation.twenty_vs_twenty``), so
importing the package (e.g. for ``python -m brainviz --help``) loads neither numba nor scipy.
See ``docs/evaluation.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # 20-vs-20
    "draw_indices": "twenty",
    "twenty_vs_twenty": "twenty",
    "twenty_vs_twenty_by_run": "twenty",
    "as_generator": "twenty",
    # statistics
    "TestResult": "stats",
    "test_against_chance": "stats",
    "paired_test": "stats",
    "fdr_correction": "stats",
    "significant_mask": "stats",
    "wilcoxon_signed_rank": "stats",
    "block_permutation": "stats",
    "block_permutation_test": "stats",
    "group_test": "stats",
    "sign_flip_test": "stats",
    "block_sign_flip_test": "stats",
    "smallest_p": "stats",
    "smallest_q": "stats",
    # encoding metrics
    "EncodingResult": "encoding",
    "ridge_encoding": "encoding",
    "pearson_r": "encoding",
    "variance_explained": "encoding",
    "inter_participant_ceiling": "encoding",
    "repeat_ceiling": "encoding",
    "signal_power": "encoding",
    "cc_norm": "encoding",
    "noise_ceiling": "encoding",
    "normalize_by_ceiling": "encoding",
    # summaries
    "fig2_curve": "summaries",
    "fig2_curves": "summaries",
    "roi_summary": "summaries",
    "significance_counts": "summaries",
    # high-level API
    "CompareConfig": "compare",
    "EvaluateConfig": "compare",
    "ComparisonResult": "compare",
    "EvaluationResult": "compare",
    "compare_predictions": "compare",
    "compare_models": "compare",
    "evaluate_predictions": "compare",
    "evaluate_model": "compare",
    "roi_tests": "compare",
    "explain_empty": "compare",
    # calibration on constructed predictions (simulated)
    "ConstructedConfig": "calibration",
    "constructed_predictions": "calibration",
    "calibrate": "calibration",
    # files
    "load_heldout": "io",
    "HeldOutError": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brainviz.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"brainviz.evaluation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
