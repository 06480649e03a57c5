"""Speech encoders and ``train --modality audio`` (issue 15), on tiny random wav2vec2 / HuBERT /
Whisper configs and the small simulated listening dataset with its audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _speech_fixtures import listening_small, replay_predictions, tiny_models  # noqa: F401  (fixtures)
from brainviz.cli import main
from brainviz.models.speech import AudioWindows, SAMPLE_RATE, load_speech_encoder


# -- encoders --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "whisper"])
def test_encoder_pools_each_chunk_and_keeps_the_stem_frozen(tiny_models, family):  # noqa: F811
    enc = load_speech_encoder(tiny_models[family], n_chunks=3)
    assert enc.family == family and enc.config.hidden_size == 3 * enc.hidden
    x = torch.randn(2, 3, 8000) * 0.1
    out = enc(x).last_hidden_state
    assert out.shape == (2, 1, 3 * enc.hidden)
    # FIR delays: chunk k of the input only changes block k of the head input
    x2 = x.clone()
    x2[:, 1] = torch.randn(2, 8000) * 0.1
    diff = (enc(x2).last_hidden_state - out).abs().reshape(2, 3, enc.hidden).amax(dim=(0, 2))
    assert diff[1] > 1e-4 and diff[0] < 1e-5 and diff[2] < 1e-5
    enc.requires_grad_(True)
    assert not any(p.requires_grad for p in enc.stem_parameters())
    assert any(p.requires_grad for n, p in enc.named_parameters() if "q_proj" in n)
    layers = enc.layer_features(x)
    assert layers.shape == (enc.n_layers + 1, 2, 3 * enc.hidden)
    torch.testing.assert_close(layers[-1], out[:, 0], atol=1e-5, rtol=1e-4)


def test_whisper_pools_real_audio_frames_only(tiny_models):  # noqa: F811
    enc = load_speech_encoder(tiny_models["whisper"], n_chunks=1)
    x = torch.randn(1, 1, 8000) * 0.1  # 0.5 s in a 4 s input: 25 of 200 encoder frames are real
    last, _, n_real = enc.chunk_hidden(x[:, 0])
    assert n_real == 25 and last.shape[1] == 200
    pooled = enc(x).last_hidden_state[0, 0]
    torch.testing.assert_close(pooled, last[0, :25].mean(0))
    assert (pooled - last[0].mean(0)).abs().max() > 1e-3  # the padding frames would change it
    with pytest.raises(ValueError, match="exceed"):
        enc(torch.zeros(1, 1, 5 * SAMPLE_RATE))


def test_audio_windows_cut_chunks_before_each_tr():
    ramp = np.arange(10 * SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE  # value = time since file start
    win = AudioWindows({"r": (ramp, 2.0)}, ["r", "r"], [6.0, 2.5], n_chunks=2, chunk_s=1.5)
    b = win.batch([0, 1])["input_values"].numpy()
    assert b.shape == (2, 2, int(1.5 * SAMPLE_RATE))
    # example 0 covers run-clock [3, 6) s = file time [1, 4): chunk 0 [1, 2.5), chunk 1 [2.5, 4)
    assert b[0, 0, 0] == pytest.approx(1.0) and b[0, 1, 0] == pytest.approx(2.5) and b[0, 1, -1] == pytest.approx(4.0, abs=1e-3)
    # example 1 covers [-0.5, 2.5) run clock: silence before the file starts at 2 s
    assert not b[1, 0].any() and b[1, 1, : SAMPLE_RATE].sum() == 0 and b[1, 1, -1] == pytest.approx(0.5, abs=1e-3)


def test_text_model_is_not_a_speech_encoder():
    from brainviz.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not a supported speech encoder"):
        load_speech_encoder("pretrained")


# -- training ---------------------------------------------------------------------------------


def _train(args, dataset, base, out) -> int:
    return main(["train", "--dataset", str(dataset), "--modality", "audio", "--base", str(base), "--preset", "quick",
                 "--folds", "listening_2", "--participants", "sub-01", "sub-02", "--roi-mask", "planted", "--quiet",
                 "--out", str(out), *args])


def test_train_audio_end_to_end_and_reload(listening_small, tiny_models, tmp_path, capsys):  # noqa: F811
    from brainviz.models import load_checkpoint
    from brainviz.models.speech import load_speech_checkpoint

    ft, van = tmp_path / "ft", tmp_path / "van"
    assert _train(["--variant", "fine-tuned", "--epochs", "1", "1"], listening_small, tiny_models["wav2vec2"], ft) == 0
    assert _train(["--variant", "vanilla", "--epochs", "2"], listening_small, tiny_models["wav2vec2"], van) == 0
    card = json.loads((ft / "card.json").read_text())
    assert card["train_config"]["modality"] == "audio" and card["train_config"]["audio_chunks"] == 5
    assert card["base"] == str(tiny_models["wav2vec2"]) and card["head_mode"] == "shared"
    assert card["metrics"]["encoder_change"]["relative_l2_mean"] > 0
    ckpt = load_checkpoint(ft)
    assert set(ckpt.participants) == {"sub-01", "sub-02"}
    # the reloaded encoder + heads reproduce the stored held-out predictions
    enc, heads = load_speech_checkpoint(ft)
    units = np.flatnonzero(np.load(listening_small / "ground_truth" / "planted_mask.npy"))
    pred, stored = replay_predictions(ckpt, enc, heads, listening_small, units, 5)
    np.testing.assert_allclose(pred, stored, atol=2e-3, rtol=2e-2)
    # evaluate and compare read the checkpoints like text ones
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ft), "--metric", "pearson", "--out", str(tmp_path / "ev.csv")]) == 0
    assert main(["compare", str(ft), str(van), "--level", "participant", "--out", str(tmp_path / "cmp.csv")]) == 0
    assert (tmp_path / "cmp.csv").stat().st_size > 0


def test_lora_changes_only_attention_projections(listening_small, tiny_models, tmp_path):  # noqa: F811
    from safetensors import safe_open

    out = tmp_path / "lora"
    assert _train(["--variant", "fine-tuned", "--lora", "--loss", "correlation", "--epochs", "0", "1"],
                  listening_small, tiny_models["hubert"], out) == 0
    card = json.loads((out / "card.json").read_text())
    with safe_open(str(out / card["fits"][0]["encoder"] / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    assert names and all(n.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "out_proj") for n in names), names


def test_audio_training_errors(listening_small, tiny_models, tmp_path, capsys):  # noqa: F811
    # a text model as base
    rc = _train(["--variant", "vanilla"], listening_small, "pretrained", tmp_path / "a")
    assert rc == 2 and "speech encoder" in capsys.readouterr().err
    # MEG variants have no audio counterpart
    rc = _train(["--variant", "meg-transfer"], listening_small, tiny_models["wav2vec2"], tmp_path / "b")
    assert rc == 2 and "MEG" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    from types import SimpleNamespace

    from brainviz.tuning.speech import SpeechTrainError, check_audio_job

    job = SimpleNamespace(config=SimpleNamespace(variant="joint", meg=True), dataset=None)
    with pytest.raises(SpeechTrainError, match="modality audio supports"):
        check_audio_job(job)


def test_dataset_without_audio_is_refused(small_text_listening, tiny_models, tmp_path, capsys):  # noqa: F811
    rc = _train(["--variant", "vanilla"], small_text_listening, tiny_models["wav2vec2"], tmp_path / "c")
    assert rc == 2 and "no audio" in capsys.readouterr().err


@pytest.fixture
def small_text_listening(listening_small, tmp_path):  # noqa: F811
    """The listening dataset without its audio (an older dataset)."""
    from brainviz.data import load_dataset

    ds = load_dataset(listening_small)
    ds.audio = {}
    return ds.save(tmp_path / "noaudio")


# -- evaluation: data efficiency and residual alignment ---------------------------------------


def _fake_corpus(n: int = 300, units: int = 6, seed: int = 0):
    """Two runs of n TRs; low-level bands z, 'semantic' s; features = [z A + s B]; targets:
    units 0-2 follow s (semantic), units 3-5 follow z (low-level)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2 * n, 3))
    s = rng.standard_normal((2 * n, 3))
    feats = np.c_[z @ rng.standard_normal((3, 8)) + s @ rng.standard_normal((3, 8)) * 0.3, rng.standard_normal((2 * n, 4))]
    y = np.c_[s + 0.8 * rng.standard_normal((2 * n, 3)), z + 0.8 * rng.standard_normal((2 * n, 3))][:, :units]
    t = SimpleNamespace(seq=np.arange(2 * n), real=y, runs=np.array(["a"] * n + ["b"] * n))
    return SimpleNamespace(fmri={"p": t}), feats, z


def test_residual_alignment_keeps_semantic_and_removes_lowlevel():
    from brainviz.evaluation.speech import residual_alignment

    corpus, feats, z = _fake_corpus()
    res = residual_alignment(feats, z, corpus, ["p"], "b").set_index("unit")
    sem, low = res.loc[[0, 1, 2]], res.loc[[3, 4, 5]]
    assert (sem["r_raw"] > 0.3).all() and (low["r_raw"] > 0.5).all()
    assert (sem["r_residual"] > 0.3).all()          # what is not low-level survives
    assert (low["r_residual"].abs() < 0.15).all()   # what is low-level is gone
    assert (low["r_lowlevel"] > 0.5).all() and (sem["r_lowlevel"].abs() < 0.15).all()


def test_data_efficiency_curve_and_ratio():
    import pandas as pd

    from brainviz.evaluation.speech import data_efficiency, data_ratio

    corpus, feats, z = _fake_corpus(n=400)
    noisy = feats + 3.0 * np.random.default_rng(1).standard_normal(feats.shape)
    curves = data_efficiency({"clean": feats, "noisy": noisy}, corpus, ["p"], "b", [0.5, 2, 10], tr=1.5)
    mean = curves.groupby(["model", "minutes"])["mean_r"].mean()
    assert mean["clean", 10] > mean["clean", 0.5] and mean["clean", 10] > mean["noisy", 10]
    assert curves["n_train_trs"].max() == 400  # capped at the training run's TRs
    synthetic = pd.DataFrame({"model": ["a"] * 2 + ["b"] * 3, "minutes": [1, 2, 1, 4, 8],
                              "mean_r": [0.2, 0.3, 0.1, 0.2, 0.35]})
    ratio = data_ratio(synthetic, "a", "b").set_index("minutes")
    assert ratio.loc[1, "reference_minutes"] == pytest.approx(4.0) and ratio.loc[1, "ratio"] == pytest.approx(4.0)
    assert ratio.loc[2, "reference_minutes"] == pytest.approx(4 + 4 * (0.1 / 0.15))


def test_lowlevel_bands_count_words_and_follow_the_spectrum():
    import pandas as pd
    from types import SimpleNamespace

    from brainviz.features.speech import LOWLEVEL_NAMES, lowlevel_audio_features

    t = np.arange(6 * SAMPLE_RATE) / SAMPLE_RATE
    x = np.where(t < 3, 0.3 * np.sin(2 * np.pi * 150 * t), 0.3 * np.sin(2 * np.pi * 7000 * t)).astype(np.float32)
    win = AudioWindows({"r": (x, 0.0)}, ["r"], [6.0], n_chunks=2, chunk_s=3.0)
    stim = pd.DataFrame({"onset": [0.5, 1.0, 2.0, 4.0], "run": "r"})
    f = lowlevel_audio_features(SimpleNamespace(tokens=win), SimpleNamespace(stimulus=stim)).reshape(2, -1)
    n = len(LOWLEVEL_NAMES)
    assert f.shape == (2, n)
    assert list(f[:, -1]) == [3, 1]  # word onsets in [0, 3) and [3, 6)
    bands = f[:, 1:-1]
    assert np.argmax(bands[0]) == 0 and np.argmax(bands[1]) == bands.shape[1] - 1


def test_group_statistics_across_participants():
    import pandas as pd

    from brainviz.evaluation.speech import group_statistics

    rng = np.random.default_rng(0)
    rows = []
    for p in range(8):
        for u in range(20):
            low = u < 10  # units 0-9: alignment explained by low-level features; 10-19: not
            raw = 0.2 + 0.02 * rng.standard_normal()
            rows.append({"participant": f"p{p}", "unit": u, "r_raw": raw,
                         "r_residual": (0.0 if low else raw - 0.01) + 0.02 * rng.standard_normal(),
                         "r_lowlevel": (0.2 if low else 0.0) + 0.02 * rng.standard_normal()})
    stats = group_statistics(pd.DataFrame(rows), {"low": np.arange(10), "sem": np.arange(10, 20)}).set_index("group")
    assert stats.loc["low", "n_participants"] == 8 and stats.loc["low", "n_units"] == 10
    assert stats.loc["low", "p_lowlevel_share"] < 1e-3 and stats.loc["low", "p_r_residual"] > 0.05
    assert stats.loc["sem", "p_r_residual"] < 1e-3 and stats.loc["sem", "p_r_lowlevel"] > 0.05
    assert stats.loc["sem", "r_raw"] == pytest.approx(0.2, abs=0.01)


def test_word_class_probe_leave_one_story_out(listening_small, tiny_models):  # noqa: F811
    """The downstream probe runs per layer and story with a duration baseline and a permutation
    p-value; spoken duration alone separates content from function words above chance (content
    words are longer in the simulated speech), and every p respects its floor."""
    from brainviz.data import load_dataset
    from brainviz.data.dataset import DatasetError
    from brainviz.evaluation.probe import word_class_probe

    ds = load_dataset(listening_small)
    res = word_class_probe(str(tiny_models["wav2vec2"]), ds, n_permutations=199, window=0.4)
    t = res.table
    stories = res.meta["stories"]
    assert len(stories) == 2 and set(t["test_story"]) == set(stories)
    assert set(t["layer"]) == {0, 1, 2, "duration"}  # stem + 2 layers of the tiny model, and the baseline
    assert t["accuracy"].between(0, 1).all() and t["p"].between(1 / 200, 1).all()
    dur = t[t["layer"] == "duration"]
    assert (dur["accuracy"] > dur["chance"]).all()
    assert res.meta["n_words"] == int(dur["n_test"].sum())
    assert len(res.by_layer()) == 3
    one_story = type(ds)(ds.meta, ds.stimulus.assign(story="one"), ds.fmri, ds.meg, path=ds.path, audio=ds.audio)
    with pytest.raises(DatasetError, match="2 stories"):
        word_class_probe(str(tiny_models["wav2vec2"]), one_story, n_permutations=0)


def test_attention_page_lists_text_encoders_only(listening_small, tiny_models, tmp_path, monkeypatch):  # noqa: F811
    """A speech checkpoint in the store is not offered on the Attention page ([CLS] attention is a
    text encoder's); before, choosing it failed with a confusing model-loading error."""
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    models = tmp_path / "models"
    assert _train(["--variant", "vanilla", "--epochs", "1"], listening_small, tiny_models["wav2vec2"],
                  models / "speech-vanilla") == 0
    monkeypatch.setenv("BRAINVIZ_MODELS", str(models))
    monkeypatch.setenv("BRAINVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINVIZ_DATASETS", str(listening_small.parent))
    from pathlib import Path

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("speech-vanilla" in str(df.value.to_dict()) for df in at.dataframe)  # listed as a checkpoint
    at.switch_page("pages/attention.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="att_base").options == ["pretrained"]  # the only text encoder here
    assert "att_tuned" not in [sb.key for sb in at.selectbox]  # no tuned text model: nothing to compare
