"""The Compare page's adapters: 'significant' comes from the named test only, never from the
display threshold; the group map uses the group test; ROI tables carry names."""

from __future__ import annotations

import numpy as np

from brainviz.app_support.compute import comparison_maps
from brainviz.evaluation import CompareConfig, compare_predictions
from brainviz.evaluation.calibration import ConstructedConfig, constructed_predictions


def _result(level="group"):
    d = constructed_predictions(ConstructedConfig(n_participants=4, n_seeds=2, n_rows=60, n_units=120, n_planted=30,
                                                  n_null_signal=30, effect=1.5), 0)
    return compare_predictions(d["preds_a"], d["preds_b"], d["targets"], d["runs"],
                               CompareConfig(n_samples=60, level=level, alpha=0.05), cache=False)


def test_display_threshold_never_makes_a_unit_significant():
    res = _result()
    maps = comparison_maps(res, ("A", "B"))
    assert maps.level == "group" and maps.group is not None
    loose = maps.frame(None, show_q=1.0)
    np.testing.assert_array_equal(loose["significant"].to_numpy(), res.group.significant)
    assert loose["shown"].sum() >= loose["significant"].sum()
    assert not (loose["significant"] & (loose["q"] > 0.05)).any()  # q 0.83 is never "significant"
    assert (loose["test"] == "group:ttest").all()
    values, shown = maps.map("diff", None, 1.0)
    assert shown.sum() == np.isfinite(res.group.q).sum()
    part = maps.frame("sub-02", show_q=1.0)
    np.testing.assert_array_equal(part["significant"].to_numpy(), res.tests["sub-02"].significant)
    assert "group:ttest" in maps.describe() and "4 participant(s)" in maps.describe()


def test_roi_table_has_names_and_one_test_per_roi():
    from types import SimpleNamespace

    from brainviz.app_support.compute import roi_table

    res = _result()
    atlas = SimpleNamespace(labels=np.repeat([0, 1, 2, 3], 30), names={0: "planted", 1: "null-signal", 2: "n2", 3: "n3"})
    table = roi_table(res, atlas, None)
    assert table["roi"].tolist() == ["planted", "null-signal", "n2", "n3"]
    assert (table["test"] == "group:ttest").all() and (table["n"] == 4).all()
    assert table.set_index("roi").loc["planted", "significant"]
    assert np.isfinite(table["se"]).all()
    one = roi_table(res, atlas, "sub-01")
    assert (one["test"] == "block-sign-flip[pearson]").all() and (one["level"] == "participant").all()
