"""Coupling job end to end: API accessors, cache, CLI smoke test, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.coupling import CouplingConfig, CouplingError, run_coupling
from brainviz.coupling._synthetic import synthetic_dataset


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer x 4-head x 8-dim random BERT with the packaged tokenizer, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from brainviz.models.encoder import pretrained_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(pretrained_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    ds, _ = synthetic_dataset(n_participants=2, n_units=120, n_networks=3, words_per_story=120, seed=1)
    return ds.save(tmp_path_factory.mktemp("ds") / "tiny")


CONFIG = CouplingConfig(bn="ica", n_networks=4, permutations=200, top_k=20, max_tokens=64)


def test_run_coupling_api(tiny_dataset, tiny_model, tmp_path):
    from brainviz.cache import Cache

    cache = Cache(tmp_path / "cache")
    seen = []
    res = run_coupling(tiny_dataset, "listening_1", str(tiny_model), CONFIG, progress=lambda f, m: seen.append(f), cache=cache)
    assert seen and seen[-1] == 1.0
    assert res.simulated and res.n_ans == 64 and res.n_bns == 4
    pairs = res.pairs()
    assert {"layer", "head", "dim", "bn", "r", "p", "q", "tag", "simulated"} <= set(pairs.columns)
    assert len(pairs) == 64 and pairs["p"].between(0, 1).all()
    assert res.r.shape == (64, 4)
    summ = res.layer_summary()
    assert list(summ["layer"]) == [0, 1] and "frac_below_threshold" in summ
    assert len(res.best_pair_per_layer()) == 2
    assert res.bn_map(0).shape == (120,)
    t = len(res.times)
    assert res.an_timecourse((1, 2, 3)).shape == (t,) and res.bn_timecourse(3).shape == (t,)
    assert res.an_pos_distribution(5).shape == (17, 17) and res.an_pos_distribution(5).values.sum() > 0
    heat = res.text_heatmap(5)
    assert {"token", "query_score", "key_score"} <= set(heat["tokens"].columns) and len(heat["pairs"]) > 0
    assert res.tag_distribution().sum() == 64
    assert 0 <= res.most_anchored_bn()["bn"] < 4
    json.dumps(res.summary())  # JSON-able
    # cached: same result without recomputation
    again = run_coupling(tiny_dataset, "listening_1", str(tiny_model), CONFIG, cache=cache)
    np.testing.assert_array_equal(again.r, res.r)
    assert len(list((tmp_path / "cache" / "coupling").glob("*.npz"))) == 1
    # the second story reuses the networks
    run_coupling(tiny_dataset, "listening_2", str(tiny_model), CONFIG.replace(pos=False), cache=cache)
    assert len(list((tmp_path / "cache" / "coupling-networks").glob("*.npz"))) == 1
    with pytest.raises(CouplingError, match="out of range"):
        res.bn_map(4)


def test_config_round_trip_and_validation():
    from brainviz.config import ConfigError

    cfg = CouplingConfig(bn="ica", n_networks=7, null="phase")
    assert CouplingConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.networks == 7 and CouplingConfig().networks == 32 and CouplingConfig(preset="paper").networks == 128
    with pytest.raises(ConfigError, match="CouplingConfig.bn"):
        CouplingConfig(bn="pca")
    with pytest.raises(ConfigError, match="CouplingConfig.permutations"):
        CouplingConfig(permutations=-1)


def test_cli_smoke(tiny_dataset, tiny_model, tmp_path, capsys):
    from brainviz.cli import main

    out = tmp_path / "res" / "pairs.csv"
    rc = main(["couple", "--dataset", str(tiny_dataset), "--story", "listening_2", "--model", str(tiny_model),
               "--bn", "ica", "--n-networks", "3", "--permutations", "100", "--quiet", "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out)
    assert len(df) == 64 and {"layer", "head", "dim", "bn", "r", "p", "q"} <= set(df.columns)
    assert df["simulated"].all()
    summary = json.loads((tmp_path / "res" / "pairs.summary.json").read_text())
    assert summary["simulated"] is True and len(summary["layers"]) == 2 and summary["story"] == "listening_2"
    assert np.load(tmp_path / "res" / "pairs.maps.npy").shape == (3, 120)
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_ans"] == 64
    # parquet by extension
    rc = main(["couple", "--dataset", str(tiny_dataset), "--story", "listening_2", "--model", str(tiny_model),
               "--bn", "ica", "--n-networks", "3", "--permutations", "100", "--quiet", "--out", str(tmp_path / "p.parquet")])
    assert rc == 0 and len(pd.read_parquet(tmp_path / "p.parquet")) == 64


def test_cli_clear_errors(tiny_dataset, tiny_model, tmp_path, capsys):
    from brainviz.cli import main

    rc = main(["couple", "--dataset", str(tiny_dataset), "--story", "nope", "--model", str(tiny_model),
               "--out", str(tmp_path / "x.csv")])
    assert rc == 2
    assert "story 'nope' is not in dataset" in capsys.readouterr().err
    rc = main(["couple", "--dataset", str(tiny_dataset), "--story", "listening_1", "--out", str(tmp_path / "x.txt")])
    assert rc == 2 and "must end in .csv or .parquet" in capsys.readouterr().err


def test_words_without_timings_fail_before_training(tiny_model):
    ds, _ = synthetic_dataset(n_participants=1, n_units=30, words_per_story=40)
    ds.stimulus.loc[5, "onset"] = np.nan
    with pytest.raises(CouplingError, match="without timings"):
        run_coupling(ds, "listening_1", str(tiny_model), CONFIG, cache=False)


def test_cross_story_pairing_cli_and_test_names(tiny_dataset, tiny_model, tmp_path, capsys):
    """Selection on one story, test on the other: one test per BN, named, with reachability."""
    from brainviz.cli import main
    from brainviz.coupling import cross_story_coupling

    out = tmp_path / "x" / "pairs.csv"
    rc = main(["couple", "--dataset", str(tiny_dataset), "--story", "listening_2", "--select-story", "listening_1",
               "--model", str(tiny_model), "--bn", "ica", "--n-networks", "3", "--permutations", "100", "--quiet",
               "--out", str(out)])
    assert rc == 0
    cross = pd.read_csv(tmp_path / "x" / "pairs.cross.csv")
    assert len(cross) == 3 and (cross["select"] == "listening_1").all() and (cross["test_on"] == "listening_2").all()
    assert {"r_select", "r_test", "ci_low", "ci_high", "p", "q", "significant", "test"} <= set(cross.columns)
    assert (cross["ci_low"] <= cross["r_test"]).all() and (cross["r_test"] <= cross["ci_high"]).all()
    assert cross["test"].str.startswith("cross-story").all()
    printed = json.loads(capsys.readouterr().out)
    assert printed["cross_story"]["reachability"]["min_achievable_p"] > 0
    # every reported p names its test; tables of Eq. 1 and Eq. 2 name different tests
    pairs = pd.read_csv(out)
    assert pairs["test"].str.startswith("Eq. 1").all()
    summary = json.loads((tmp_path / "x" / "pairs.summary.json").read_text())
    assert summary["tests"]["bn_best_an"].startswith("Eq. 2")
    assert set(summary["reachability"]) == {"an_best_bn", "bn_best_an"}
    # 64 ANs with about 100 TRs: a single AN cannot pass BH, and the summary says so
    assert summary["reachability"]["an_best_bn"]["message"]
    with pytest.raises(CouplingError, match="overlap"):
        cross_story_coupling(tiny_dataset, "listening_1", ["listening_1"], str(tiny_model), CONFIG, cache=False)
