"""Cross-validation splits that never shuffle TRs (brainviz.data.splits) and the generated preprocessing options."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from brainviz.config import ConfigError
from brainviz.data.preprocess import FMRIExamples, PreprocessConfig, folds
from brainviz.data.splits import SplitError, describe_cv, inner_folds, make_folds, parse_cv, resolve_cv
from brainviz.errors import BrainvizError


def test_parse_and_resolve():
    assert parse_cv("auto") == ("auto", None)
    assert parse_cv("blocks:6") == ("blocks", 6)
    assert parse_cv("blocks") == ("blocks", 4)
    for bad in ("blocks:1", "kfold", "blocks:x"):
        with pytest.raises(ConfigError, match="cv"):
            parse_cv(bad)
    assert resolve_cv("auto", ["a"] * 5) == ("blocks", 4)
    assert resolve_cv("auto", ["a", "b"]) == ("runs", None)
    assert "4 contiguous blocks" in describe_cv("auto", ["a"] * 100)


def test_blocks_are_contiguous_with_buffers():
    runs = np.array(["r1"] * 100)
    fs = make_folds(runs, "blocks:4", buffer=5)
    assert [f.name for f in fs] == ["block-1of4", "block-2of4", "block-3of4", "block-4of4"]
    # held-out blocks tile the rows in order, each contiguous
    np.testing.assert_array_equal(np.concatenate([f.test for f in fs]), np.arange(100))
    for f in fs:
        assert np.all(np.diff(f.test) == 1)
        assert not set(f.train) & set(f.test)
        # every training row is more than `buffer` TRs from the held-out block
        dist = np.min(np.abs(f.train[:, None] - f.test[None, :]), axis=1)
        assert dist.min() == 6
    assert len(fs[0].train) == 100 - 25 - 5 and len(fs[1].train) == 100 - 25 - 10


def test_buffer_counts_acquisition_tr_gaps():
    runs = np.array(["r1"] * 40)
    tr_index = np.r_[np.arange(20), np.arange(30, 50)]  # 10 TRs dropped in the middle
    fs = make_folds(runs, "blocks:2", buffer=5, tr_index=tr_index, min_test=5, min_train=5)
    # the gap already separates the halves by 11 TRs: no buffer row is lost
    assert len(fs[0].train) == 20 and len(fs[1].train) == 20
    fs0 = make_folds(runs, "blocks:2", buffer=5, min_test=5, min_train=5)
    assert len(fs0[0].train) == 15


def test_runs_and_errors_say_what_to_do():
    runs = np.array(["a"] * 30 + ["b"] * 30)
    fs = make_folds(runs, "auto")
    assert [f.name for f in fs] == ["a", "b"] and fs[0].kind == "runs"
    np.testing.assert_array_equal(fs[0].test, np.arange(30))
    with pytest.raises(SplitError, match="--cv blocks:4") as info:
        make_folds(np.array(["only"] * 50), "runs")
    assert isinstance(info.value, BrainvizError)
    with pytest.raises(SplitError, match="fewer blocks"):
        make_folds(np.array(["r"] * 30), "blocks:4")
    with pytest.raises(SplitError, match="buffer"):
        make_folds(np.array(["r"] * 45), "blocks:4", buffer=20)


def test_inner_folds_stay_inside_training_rows():
    runs = np.array(["r1"] * 120)
    outer = make_folds(runs, "blocks:4", buffer=5)
    f = outer[1]
    inner = inner_folds(runs[f.train], 5, tr_index=f.train, n_blocks=3)
    assert len(inner) == 3
    for tr, va in inner:
        assert tr.max() < len(f.train) and va.max() < len(f.train)
        assert not set(tr) & set(va)
        gap = np.min(np.abs(f.train[tr][:, None] - f.train[va][None, :]))
        assert gap > 5
    two = inner_folds(np.array(["a"] * 40 + ["b"] * 40), 5)
    assert len(two) == 2 and len(two[0][1]) == 40


def test_preprocess_folds_follow_config():
    ex = FMRIExamples("p", np.zeros((80, 2), np.float32), np.arange(80), np.array(["r"] * 80), np.arange(80.0),
                      [np.array([0])] * 80)
    fs = folds(ex, PreprocessConfig(cv="blocks:3", buffer=2))
    assert len(fs) == 3 and fs[0].kind == "blocks"
    with pytest.raises(ValueError, match="blocks:4"):
        folds(ex, PreprocessConfig(cv="runs"))
    with pytest.raises(ConfigError, match="cv"):
        PreprocessConfig(cv="shuffle")
    with pytest.raises(ConfigError, match="buffer"):
        PreprocessConfig(buffer=-1)


def test_preprocess_options_generated_from_the_dataclass():
    import dataclasses

    from brainviz.data._cli_preprocess import add_preprocess_arguments, preprocess_config_from_args, preprocess_overrides
    from brainviz.cli import build_parser

    p = argparse.ArgumentParser()
    add_preprocess_arguments(p)
    flags = {a for action in p._actions for a in action.option_strings}
    for f in dataclasses.fields(PreprocessConfig):
        assert "--" + f.name.replace("_", "-") in flags
    args = p.parse_args(["--trim-start", "0", "--trim-end", "3", "--no-detrend", "--cv", "blocks:3", "--window", "8"])
    assert preprocess_overrides(args) == {"trim_start": 0, "trim_end": 3, "detrend": False, "cv": "blocks:3", "window": 8.0}
    cfg = preprocess_config_from_args(args, base={"trim_start": 7, "zscore": False})
    assert cfg.trim_start == 0 and cfg.zscore is False and cfg.buffer == PreprocessConfig().buffer
    # the same options on train and encode
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in ("train", "encode"):
        cmd_flags = {s for a in sub.choices[cmd]._actions for s in a.option_strings}
        assert {"--trim-start", "--trim-end", "--window", "--cv", "--buffer", "--no-detrend"} <= cmd_flags, cmd
