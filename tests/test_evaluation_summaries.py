"""Fig. 2 curves, ROI tables, significance counts."""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.evaluation import fig2_curve, fig2_curves, roi_summary, significance_counts
from brainviz.evaluation.summaries import curve_points


def test_fig2_curve_hand_computed():
    a = np.array([0.9, 0.6, 0.7, np.nan])
    b = np.array([0.8, 0.65, 0.5, 0.9])
    n, curve = fig2_curve(a, b)
    # max = [0.9, 0.65, 0.7] -> order units 0, 2, 1 -> diffs 0.1, 0.2, -0.05 (NaN unit dropped)
    assert n.tolist() == [1, 2, 3]
    np.testing.assert_allclose(curve, [0.1, 0.15, 0.25 / 3])


def test_fig2_curves_average():
    curves, avg = fig2_curves({"s1": np.array([0.9, 0.6]), "s2": np.array([0.7, 0.8, 0.5])},
                              {"s1": np.array([0.8, 0.6]), "s2": np.array([0.7, 0.6, 0.5])})
    np.testing.assert_allclose(curves["s1"], [0.1, 0.05])
    np.testing.assert_allclose(curves["s2"], [0.2, 0.1, 2 / 30])
    np.testing.assert_allclose(avg, [0.15, 0.075, 2 / 30])


def test_curve_points_subsample():
    pts = curve_points(np.arange(1000.0), n_points=50)
    assert pts["n_units"][0] == 1 and pts["n_units"][-1] == 1000
    assert len(pts["n_units"]) <= 50
    assert pts["mean_diff"][-1] == 999.0


def test_roi_summary_and_counts():
    a = np.array([0.8, 0.6, 0.7, 0.5, 0.9])
    b = np.array([0.6, 0.7, 0.7, 0.6, np.nan])
    labels = np.array([0, 0, 1, 1, 1])
    sig = np.array([True, True, False, True, False])
    df = roi_summary(a, b, labels, ["V1", "IFG"], significant=sig)
    assert df["roi"].tolist() == ["V1", "IFG"]
    assert df["n_units"].tolist() == [2, 3]
    assert df.loc[0, "acc_a"] == pytest.approx(0.7)
    assert df.loc[0, "diff"] == pytest.approx(0.05)
    assert df.loc[1, "acc_b"] == pytest.approx(0.65)  # NaN unit left out of the means
    assert df["n_sig_up"].tolist() == [1, 0]
    assert df["n_sig_down"].tolist() == [1, 1]
    counts = significance_counts(a - b, sig, p=np.array([0.01, 0.01, 0.5, 0.01, np.nan]))
    assert counts == {"n_units": 5, "n_tested": 4, "n_significant": 3, "n_a_better": 1, "n_b_better": 2}
