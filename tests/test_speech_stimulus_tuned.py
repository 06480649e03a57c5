"""The ``stimulus-tuned`` speech control (issue 15): a tiny random wav2vec2 tuned on stimulus
features of the small simulated listening data, then brain heads fitted as vanilla's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _speech_fixtures import listening_small, replay_predictions, tiny_models  # noqa: F401  (fixtures)
from brainviz.cli import main

CHUNKS = 2  # audio chunks per example (the default is 5; 2 keeps the test cheap)


def _train(args, dataset, base, out) -> int:
    return main(["train", "--dataset", str(dataset), "--modality", "audio", "--base", str(base), "--preset", "quick",
                 "--folds", "listening_2", "--participants", "sub-01", "sub-02", "--roi-mask", "planted",
                 "--audio-chunks", str(CHUNKS), "--quiet", "--out", str(out), *args])


def test_stimulus_targets_are_fitted_on_training_rows_only():
    from brainviz.tuning.speech import stimulus_targets

    rng = np.random.default_rng(0)
    low, lm = rng.normal(size=(60, 4)) * 3 + 1, rng.normal(size=(60, 30)) @ rng.normal(size=(30, 30))
    low[:, 3] = 2.0  # constant on the training rows: becomes 0, not NaN
    train = np.arange(60) < 40
    y, info = stimulus_targets(low, lm, train, k=5)
    assert y.shape == (60, 4 + 5) and info["n_pcs"] == 5 and 0 < info["pc_variance_explained"] < 1
    np.testing.assert_allclose(y[train].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y[train, :3].std(0), 1, atol=1e-4)
    np.testing.assert_allclose(y[train, 4:].std(0), 1, atol=1e-4)
    assert np.all(y[:, 3] == 0) and np.isfinite(y).all()
    # held-out rows never reach the fit: changing them leaves every training-row target unchanged
    low2, lm2 = low.copy(), lm.copy()
    low2[~train] *= 50
    lm2[~train] = rng.normal(size=(20, 30)) * 100
    y2, _ = stimulus_targets(low2, lm2, train, k=5)
    np.testing.assert_allclose(y2[train], y[train], atol=1e-4)
    assert np.abs(y2[~train] - y[~train]).max() > 1
    # k = 0: the low-level bands alone
    assert stimulus_targets(low, lm, train, k=0)[0].shape == (60, 4)


def test_stimulus_tuned_end_to_end(listening_small, tiny_models, tmp_path, capsys):  # noqa: F811
    from brainviz.models import load_checkpoint
    from brainviz.models.speech import load_speech_checkpoint, load_speech_encoder

    base = tiny_models["wav2vec2"]
    st = tmp_path / "st"
    # stages: stimulus heads, stimulus full fine-tuning, brain heads (vanilla's); the papers' cosine + L2 loss
    assert _train(["--variant", "stimulus-tuned", "--epochs", "1", "1", "2", "--stimulus-pcs", "4",
                   "--loss", "cosine-l2"], listening_small, base, st) == 0
    card = json.loads((st / "card.json").read_text())
    assert card["variant"] == "stimulus-tuned" and card["train_config"]["loss"] == "cosine-l2"
    stim = card["stimulus_targets"]
    assert stim["kind"] == "lowlevel+lm-pcs" and "not fMRI" in stim["description"]
    assert stim["n_pcs"] == 4 and stim["n_lowlevel"] == 4 * CHUNKS and stim["n_targets"] == 4 * CHUNKS + 4
    assert stim["layer"] == 3 and stim["delays_tr"] == list(range(1, CHUNKS + 1))  # MiniLM: 7 states, middle 3
    assert stim["folds"]["listening_2"]["n_train_trs"] > 0
    assert card["train_config"]["stimulus_pcs"] == 4
    fits = {f["group"]: f for f in card["fits"]}
    assert set(fits) == {"_stimulus", "_all"} and fits["_stimulus"]["predicts"] == []
    assert fits["_all"]["init"] == "_stimulus/fold-listening_2/seed-0"
    assert fits["_all"]["encoder"] == fits["_stimulus"]["encoder"] != "base"
    assert card["metrics"]["encoder_change"]["relative_l2_mean"] > 0

    # the encoder changed: ||delta theta|| > 0 between the stored tuned encoder and the base model
    ckpt = load_checkpoint(st)
    brain_fit = ckpt.fit(group="_all")
    enc, heads = load_speech_checkpoint(st, fit=brain_fit)
    ref = load_speech_encoder(base, n_chunks=CHUNKS)
    ref_state = ref.state_dict()
    delta = sum(float((v.float() - ref_state[k].float()).pow(2).sum()) for k, v in enc.state_dict().items()) ** 0.5
    assert delta > 0
    # the stimulus head predicts the stimulus targets, the brain head the planted units
    stim_heads = ckpt.heads(ckpt.fit(group="_stimulus"))
    units = np.flatnonzero(np.load(listening_small / "ground_truth" / "planted_mask.npy"))
    assert stim_heads.fmri.linear.out_features == stim["n_targets"]
    assert heads.fmri.linear.out_features == len(units)
    # tuned encoder + brain heads reproduce the stored held-out predictions of the brain units
    pred, stored = replay_predictions(ckpt, enc, heads, listening_small, units, CHUNKS)
    assert stored.shape[1] == len(units)
    np.testing.assert_allclose(pred, stored, atol=2e-3, rtol=2e-2)
    assert np.abs(pred).max() > 0  # the heads were trained (they start at zero)

    # brain heads exactly as vanilla's: without stimulus fine-tuning the predictions equal vanilla's
    st0, van = tmp_path / "st0", tmp_path / "van"
    assert _train(["--variant", "stimulus-tuned", "--epochs", "1", "0", "2"], listening_small, base, st0) == 0
    assert _train(["--variant", "vanilla", "--epochs", "2"], listening_small, base, van) == 0
    for pid in ("sub-01", "sub-02"):
        a, b = load_checkpoint(st0).predictions(pid), load_checkpoint(van).predictions(pid)
        np.testing.assert_array_equal(a["tr_index"], b["tr_index"])
        np.testing.assert_allclose(a["predictions"].astype(np.float32), b["predictions"].astype(np.float32), atol=1e-6)
    # compare reads it like any checkpoint (stimulus-tuned vs vanilla here; fine-tuned vs stimulus-tuned alike)
    capsys.readouterr()
    assert main(["compare", str(st), str(van), "--level", "participant", "--out", str(tmp_path / "cmp.csv")]) == 0
    assert (tmp_path / "cmp.csv").stat().st_size > 0


def test_stimulus_tuned_errors(listening_small, tiny_models, tmp_path, capsys):  # noqa: F811
    from brainviz.errors import ConfigError
    from brainviz.tuning.config import TrainConfig

    with pytest.raises(ConfigError, match="stimulus-tuned.*modality 'audio'"):
        TrainConfig(dataset="d", out="o", variant="stimulus-tuned").validate()
    with pytest.raises(ConfigError, match="stimulus_pcs"):
        TrainConfig(dataset="d", out="o", variant="stimulus-tuned", modality="audio", stimulus_pcs=-1).validate()
    with pytest.raises(ConfigError, match="heads"):  # no brain-head epochs: nothing would predict the brain
        TrainConfig(dataset="d", out="o", variant="stimulus-tuned", modality="audio", epochs=(1, 1, 0)).validate()
    rc = _train(["--variant", "stimulus-tuned", "--stimulus-layer", "99"], listening_small, tiny_models["wav2vec2"],
                tmp_path / "bad")
    assert rc == 2 and "hidden states 0..6" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
