"""Preprocessing (Schwartz et al. 2019) against hand-computed toy cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainviz.config import ConfigError
from brainviz.data import (
    Dataset, DatasetError, DatasetMeta, FMRIRecording, MEGRecording, PreprocessConfig, Run, Space,
    fmri_examples, leave_one_run_out, meg_examples,
)
from brainviz.data.features import (
    annotate_stimulus, clean_word, first_piece_mask, tag_words, token_word_features,
)
from brainviz.data.preprocess import standardize_within_runs


def toy(n_trs=(10, 8), tr=2.0, words_per_run=10, data=None):
    rows = []
    for r, n in enumerate(n_trs):
        for i in range(words_per_run):
            rows.append({"onset": 1.0 + 1.0 * i, "duration": 0.5, "word": f"w{r}_{i}", "run": f"run-{r + 1}", "story": "s"})
    stim = pd.DataFrame(rows)
    total = sum(n_trs)
    if data is None:
        data = np.arange(total * 2, dtype=np.float32).reshape(total, 2)
    space = Space("rois", roi_names=["a", "b"])
    rec = FMRIRecording("p1", data, tr, [Run(f"run-{r + 1}", n) for r, n in enumerate(n_trs)], space)
    return Dataset(DatasetMeta("toy", True), stim, {"p1": rec})


def test_trim_and_windows_hand_computed():
    ds = toy()
    cfg = PreprocessConfig(trim_start=2, trim_end=1, window=4.0, detrend=False, zscore=False, drop_empty=False)
    ex = fmri_examples(ds, "p1", cfg)
    # run-1 has TRs 0..9 -> keep 2..8; run-2 has TRs 10..17 -> keep 12..16
    np.testing.assert_array_equal(ex.tr_index, [2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 16])
    np.testing.assert_array_equal(ex.runs, ["run-1"] * 7 + ["run-2"] * 5)
    np.testing.assert_allclose(ex.times[:3], [4.0, 6.0, 8.0])
    # TR at t=4 s: words with onset in [0, 4) -> onsets 1, 2, 3 -> rows 0, 1, 2
    np.testing.assert_array_equal(ex.windows[0], [0, 1, 2])
    # TR at t=8: onsets in [4, 8): 4,5,6,7 -> rows 3..6
    np.testing.assert_array_equal(ex.windows[2], [3, 4, 5, 6])
    # run-2 first kept TR (t=4 s on run-2's clock) uses run-2's words (rows 10..)
    np.testing.assert_array_equal(ex.windows[7], [10, 11, 12])
    # t = 16 s: onsets in [12, 16) -> none (words stop at 10 s): empty window kept here
    assert len(ex.windows[6]) == 0
    np.testing.assert_array_equal(ex.data, ds.fmri["p1"].data[ex.tr_index])


def test_drop_empty_windows():
    ds = toy()
    cfg = PreprocessConfig(trim_start=2, trim_end=1, window=4.0, detrend=False, zscore=False)
    ex = fmri_examples(ds, "p1", cfg)
    assert all(len(w) > 0 for w in ex.windows)
    assert 8 not in ex.tr_index


def test_window_is_half_open_at_10_1_s():
    ds = toy(n_trs=(40, 40), words_per_run=60)
    ex = fmri_examples(ds, "p1", PreprocessConfig(trim_start=0, trim_end=0, detrend=False, zscore=False))
    onsets = ds.stimulus["onset"].to_numpy()
    for t, w in zip(ex.times, ex.windows):
        assert np.all(onsets[w] >= t - 10.1) and np.all(onsets[w] < t)
    # at t = 20 s: onsets 10..19 (10 words); onset 9.9 would be inside, 20 is not
    i = int(np.flatnonzero((ex.times == 20.0) & (ex.runs == "run-1"))[0])
    np.testing.assert_allclose(onsets[ex.windows[i]], np.arange(10.0, 20.0))


def test_detrend_and_zscore_within_run():
    # run 1: a pure linear trend -> zero after detrending; run 2: [1, 3, 1, 3] -> [-1, 1, -1, 1]
    data = np.array([[0.0], [1.0], [2.0], [3.0], [1.0], [3.0], [1.0], [3.0]], dtype=np.float32)
    runs = np.array(["a"] * 4 + ["b"] * 4)
    out = standardize_within_runs(data, runs, detrend=False, zscore=True)
    np.testing.assert_allclose(out[4:, 0], [-1, 1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(out[:4, 0], np.array([-3, -1, 1, 3]) / np.sqrt(5), atol=1e-6)
    out = standardize_within_runs(data, runs, detrend=True, zscore=True)
    np.testing.assert_allclose(out[:4, 0], 0, atol=1e-6)  # constant after detrend -> 0, not NaN
    # detrending [1,3,1,3] removes slope 0.4: residuals [0.6-? ...] then unit variance
    resid = np.array([1, 3, 1, 3.0]) - np.polyval(np.polyfit(np.arange(4), [1, 3, 1, 3], 1), np.arange(4))
    np.testing.assert_allclose(out[4:, 0], (resid - resid.mean()) / resid.std(), atol=1e-5)
    assert out.dtype == np.float32


def test_preprocessed_targets_are_standardised():
    rng = np.random.default_rng(1)
    ds = toy(n_trs=(50, 50), words_per_run=90, data=(rng.standard_normal((100, 2)) * 5 + 3).astype(np.float32))
    ex = fmri_examples(ds, "p1", PreprocessConfig(trim_start=20, trim_end=15, drop_empty=False))
    for run in ("run-1", "run-2"):
        block = ex.data[ex.runs == run]
        assert block.shape[0] == 15
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-5)


def test_run_too_short_for_trimming():
    with pytest.raises(DatasetError, match="run 'run-2'.*8 TRs"):
        fmri_examples(toy(), "p1", PreprocessConfig(trim_start=5, trim_end=3))


def test_leave_one_run_out():
    folds = leave_one_run_out(np.array(["a", "a", "b", "c", "b"]))
    assert [f.test_run for f in folds] == ["a", "b", "c"]
    np.testing.assert_array_equal(folds[1].test, [2, 4])
    np.testing.assert_array_equal(folds[1].train, [0, 1, 3])
    with pytest.raises(DatasetError, match="at least 2 runs"):
        leave_one_run_out(np.array(["a", "a"]))


def test_config_validation():
    with pytest.raises(ConfigError, match="window"):
        PreprocessConfig(window=0)
    cfg = PreprocessConfig(trim_start=3)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.key() != PreprocessConfig().key()
    with pytest.raises(ConfigError, match="unknown field"):
        PreprocessConfig.from_dict({"trim": 1})


def test_token_word_features_first_piece_and_dummies():
    # [CLS] un ##believ ##able day [SEP]
    word_ids = [None, 0, 0, 0, 1, None]
    feats = token_word_features(word_ids, np.array([12.0, 3.0]), np.array([-15.0, -7.0]))
    np.testing.assert_array_equal(feats, [[0, -20], [12, -15], [0, -20], [0, -20], [3, -7], [0, -20]])
    np.testing.assert_array_equal(first_piece_mask(word_ids), [False, True, False, False, True, False])


def test_word_features_and_content_words():
    assert clean_word('"Hello,') == "Hello" and clean_word("don't.") == "don't" and clean_word("--") == ""
    stim = pd.DataFrame({
        "onset": np.arange(7.0), "duration": 0.5, "run": "r", "story": "s",
        "word": ["The", "old", "keeper", "ran", "to", "the", "dome."],
    })
    out = annotate_stimulus(stim)
    assert list(out["pos"]) == tag_words(stim["word"].tolist())
    assert list(out["pos"][[0, 2, 4]]) == ["DET", "NOUN", "ADP"]
    assert list(out["is_content"]) == [False, True, True, True, False, False, True]
    np.testing.assert_array_equal(out["length"], [3, 3, 6, 3, 2, 3, 4])
    assert out["log_freq"][0] > out["log_freq"][2] > -21  # "the" is far more frequent than "keeper"


def test_meg_examples_content_words_standardised():
    rng = np.random.default_rng(2)
    ds = toy(n_trs=(50, 50), words_per_run=90)
    ds.stimulus = annotate_stimulus(ds.stimulus.assign(word=(["the", "cat", "ran", "away"] * 50)[:180]))
    n = len(ds.stimulus)
    ds.meg = {"m1": MEGRecording("m1", (rng.standard_normal((n, 3, 5)) * 4 + 1).astype(np.float32), 0.025, ["a", "b", "c"], np.arange(n))}
    ex = meg_examples(ds, "m1", PreprocessConfig(drop_empty=False))
    assert ds.stimulus["is_content"].to_numpy()[ex.word_rows].all()
    kept = fmri_examples(ds, "p1", PreprocessConfig(drop_empty=False))
    used = np.unique(np.concatenate(kept.windows))
    assert set(ex.word_rows) <= set(used)
    for run in ("run-1", "run-2"):
        block = ex.data[ex.runs == run].reshape(-1, 15)
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-4)
