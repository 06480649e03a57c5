"""``encode`` end to end on a small single-run ROI dataset imported with ``import generic``.

The dataset mimics the real case of issue 11 (one run, TR 2 s, language ROIs, ~400 words): two
drivers - word rate and a semantic contrast (food vs tool nouns) - convolved with an HRF, AR(1)
noise and a slow drift per participant, and a NULL ROI with no signal at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("himalaya")
pytest.importorskip("torch")

FOOD = ["apple", "bread", "cheese", "soup", "cake", "rice", "milk", "butter", "orange", "egg", "meat", "honey"]
TOOL = ["hammer", "knife", "rope", "shovel", "saw", "wrench", "ladder", "drill", "bucket", "nail", "axe", "chisel"]
SUBJ = ["the man", "my sister", "the old farmer", "she", "he", "the child", "our neighbour", "they"]
VERB = ["took", "wanted", "found", "bought", "carried", "saw", "dropped", "liked"]
TAIL = ["", "", "yesterday", "at home", "in the morning", "again", "quickly"]
ROIS = ["L_pSTG", "L_aSTG", "L_IFG", "R_pSTG", "L_AG", "NULL"]


def build_generic_source(src: Path, n_part: int = 6, n_trs: int = 200, tr: float = 2.0, seed: int = 0,
                         noise: float = 1.4) -> None:
    """words.tsv + one CSV (TRs x ROIs, header = ROI names) per participant: what `import generic` reads."""
    from nilearn.glm.first_level import glover_hrf

    rng = np.random.default_rng(seed)
    t, onsets, words, sem = 4.0, [], [], []
    end = n_trs * tr - 8
    while t < end:
        food = rng.random() < 0.5
        noun = str(rng.choice(FOOD if food else TOOL))
        rate = float(rng.choice([1.5, 2.5, 3.5]))
        for w in f"{rng.choice(SUBJ)} {rng.choice(VERB)} the {noun} {rng.choice(TAIL)}".split():
            if t >= end:
                break
            onsets.append(t)
            words.append(w)
            sem.append((1.0 if food else -1.0) if w == noun else 0.0)
            t += 1.0 / rate
        words[-1] += "."
        t += float(rng.choice([0.3, 1.0, 3.0, 6.0]))
    dt = 0.1
    n_grid = int(n_trs * tr / dt)
    idx = (np.asarray(onsets) / dt).astype(int)
    hrf = glover_hrf(dt, oversampling=1, time_length=32.0)

    def driver(values):
        x = np.zeros(n_grid)
        np.add.at(x, idx, values)
        s = np.convolve(x, hrf)[:n_grid][(np.arange(n_trs) * tr / dt + tr / 2 / dt).astype(int)]
        return (s - s.mean()) / s.std()

    signal = np.c_[driver(np.ones(len(idx))), driver(np.asarray(sem))] @ np.array(
        [[0.5, 0.5], [0.2, 0.7], [0.3, 0.3], [0.6, 0.1], [0.1, 0.4], [0.0, 0.0]]).T
    src.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"onset": np.round(onsets, 3), "duration": 0.25, "word": words}).to_csv(
        src / "words.tsv", sep="\t", index=False)
    for p in range(n_part):
        e = rng.standard_normal((n_trs, len(ROIS)))
        ar = np.zeros_like(e)
        for k in range(n_trs):
            ar[k] = (0.5 * ar[k - 1] if k else 0.0) + e[k]
        drift = np.linspace(-1, 1, n_trs)[:, None] * rng.normal(0, 0.5, len(ROIS))
        pd.DataFrame(signal + noise * ar / ar.std(axis=0) + drift, columns=ROIS).to_csv(
            src / f"sub-{p + 1:02d}.csv", index=False)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    from brainviz.cli import main

    root = tmp_path_factory.mktemp("encode")
    build_generic_source(root / "src")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVIZ_CACHE", str(root / "cache"))
        assert main(["import", "generic", str(root / "src"), "--out", str(root / "ds"), "--tr", "2",
                     "--space", "rois", "--modality", "listening"]) == 0
        # default settings except two candidate layers (embeddings and layer 4), to stay quick
        assert main(["encode", "--dataset", str(root / "ds"), "--layers", "0", "4", "--out", str(root / "enc.csv")]) == 0
    return root


def test_encode_finds_the_signal_and_not_the_null(encoded):
    table = pd.read_csv(encoded / "enc.csv", keep_default_na=False)
    summary = json.loads((encoded / "enc.summary.json").read_text())
    for col in ("participant", "unit", "layer", "r", "r2", "unique_lm", "r_baseline", "r_word_rate", "r_trend",
                "r_joint", "ceiling", "r_norm"):
        assert col in table.columns, col
    assert len(table) == 6 * len(ROIS) and set(table["unit"]) == set(ROIS)
    assert set(table["layer"]) <= {0, 4}
    assert "contiguous blocks" in summary["cv"] and summary["simulated"] is False
    pstg, null = summary["units"]["L_pSTG"], summary["units"]["NULL"]
    # the acceptance rule on the language ROI: mean held-out r >= 0.05 and one-sample p < 0.01
    assert pstg["mean_r"] >= 0.05 and pstg["r"]["p"] < 0.01 and pstg["r"]["significant"]
    assert pstg["mean_r_word_rate"] > 0.05 and pstg["ceiling"] > 0.1
    assert np.isfinite(pstg["r_norm"])
    # no signal, no discovery
    assert not null["r"]["significant"] and null["r"]["q"] > 0.05
    assert not null["unique_lm"]["significant"]
    assert abs(null["ceiling"]) < 0.15
    # the LM-beyond-low-level verdict is reported for every unit
    assert all(isinstance(u["lm_adds_beyond_lowlevel"], bool) for u in summary["units"].values())
    assert len(pstg["layer_profile"]["mean_r"]) == 2


def test_single_run_errors_and_cli_options(encoded, capsys):
    from brainviz.cli import main

    code = main(["encode", "--dataset", str(encoded / "ds"), "--cv", "runs", "--out", str(encoded / "x.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "at least 2 runs" in err and "--cv blocks:4" in err
    assert not (encoded / "x.csv").exists()
    from brainviz.cli import build_parser
    from brainviz.evaluation._cli_encode import config_from_args

    args = build_parser().parse_args(["encode", "--dataset", "d", "--out", "o.csv", "--layers", "all",
                                      "--features", "window:cls", "--trim-start", "0", "--cv", "blocks:3"])
    cfg = config_from_args(args)
    assert cfg.layers == "all" and cfg.feature_config().pooling == "window"
    assert cfg.feature_config().window_pool == "cls" and cfg.feature_config().effective_delays == (0,)
    assert cfg.preprocess_config().trim_start == 0 and cfg.preprocess_config().cv == "blocks:3"


def test_fit_to_others_is_a_leave_one_participant_out_group_model(encoded):
    """--fit-to others: each participant's models are fitted to the mean of the others (never to
    its own data) and scored on its own held-out rows; with independent noise per participant the
    shared signal is estimated better, so the language ROIs' held-out r rises; no group test."""
    from brainviz.cli import main
    from brainviz.config import ConfigError
    from brainviz.data import load_dataset
    from brainviz.data.preprocess import fmri_examples, folds
    from brainviz.evaluation.encode import EncodeConfig, _others_means, encode_participant
    from brainviz.features.tr import baseline_features, lm_features

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVIZ_CACHE", str(encoded / "cache"))
        assert main(["encode", "--dataset", str(encoded / "ds"), "--layers", "0", "4", "--fit-to", "others",
                     "--out", str(encoded / "others.csv")]) == 0
        own = pd.read_csv(encoded / "enc.csv", keep_default_na=False)
        grp = pd.read_csv(encoded / "others.csv", keep_default_na=False)
        summary = json.loads((encoded / "others.summary.json").read_text())
        assert summary["fit_to"] == "others" and summary["config"]["fit_to"] == "others"
        lang = ["L_pSTG", "L_aSTG", "L_IFG", "R_pSTG"]
        assert grp[grp.unit.isin(lang)]["r"].mean() > own[own.unit.isin(lang)]["r"].mean()
        # the participants' fold-averaged scores are dependent under this fit: the group test runs per
        # held-out fold (scores independent there) and combines the folds; the notes say why
        assert summary["test"]["name"] == "group:ttest-by-run" and "r" in summary["units"]["NULL"]
        assert any("not independent" in n and "per held-out fold" in n for n in summary["notes"])

        # the participant's own training rows never enter its fit: scramble them, same scores
        ds = load_dataset(encoded / "ds")
        cfg = EncodeConfig(dataset=str(encoded / "ds"), features={"layers": (4,)}, fit_to="others", n_ratios=2)
        pre = cfg.preprocess_config()
        ex = {p: fmri_examples(ds, p, pre) for p in ds.participants}
        others = _others_means(ex, ds)
        e1 = ex["sub-01"]
        fo = folds(e1, pre)
        lm = lm_features(ds, e1, cfg.feature_config())
        base = baseline_features(ds, e1, cfg.feature_config())
        a = encode_participant(ds, e1, lm, base, cfg, fo, fit_targets=others["sub-01"])
        rng = np.random.default_rng(1)
        scrambled = np.array(e1.data, copy=True)
        outside = np.setdiff1d(np.arange(len(scrambled)), fo[0].test)  # fold 0's training rows (and buffers)
        scrambled[outside] = rng.standard_normal((len(outside), scrambled.shape[1]))
        e_s = type(e1)(e1.participant, scrambled, e1.tr_index, e1.runs, e1.times, e1.windows)
        b = encode_participant(ds, e_s, lm, base, cfg, fo, fit_targets=others["sub-01"])
        np.testing.assert_array_equal(a.scores["lm"]["r"][0], b.scores["lm"]["r"][0])
        np.testing.assert_array_equal(a.scores["joint"]["r"][0], b.scores["joint"]["r"][0])
        # and the fit does depend on the targets it is given
        c = encode_participant(ds, e1, lm, base, cfg, fo, fit_targets=rng.standard_normal(e1.data.shape))
        assert not np.allclose(a.scores["lm"]["r"], c.scores["lm"]["r"])
    with pytest.raises(ConfigError, match="fit_to"):
        EncodeConfig(dataset="d", fit_to="everyone").validate()
