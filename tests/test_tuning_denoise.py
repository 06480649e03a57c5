"""Denoised encoder targets (``encoder_targets="pcs:K"``) and the refit stage of ``fine-tuned``."""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.errors import ConfigError
from brainviz.models.store import load_checkpoint
from brainviz.tuning import TrainConfig, train
from brainviz.tuning._denoise import encoder_targets, loo_reliability, parse_encoder_targets
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset


def _shared_signal(rng, n=240, units=200, shared=20, participants=6, snr=1.0):
    """Participants share a 3-dimensional signal in the first ``shared`` units; the rest is noise."""
    latent = rng.standard_normal((n, 3))
    maps = np.zeros((3, units))
    maps[:, :shared] = rng.standard_normal((3, shared))
    data = [latent @ maps * snr + rng.standard_normal((n, units)) for _ in range(participants)]
    return latent, data


def test_loo_reliability_ranks_the_shared_units_first():
    rng = np.random.default_rng(0)
    _, data = _shared_signal(rng)
    rel = loo_reliability(data, [1.0] * len(data))
    assert rel.shape == (200,)
    assert set(np.argsort(-rel)[:20]) == set(range(20))
    assert abs(np.median(rel[20:])) < 0.05


def test_encoder_targets_use_training_windows_only_and_recover_the_shared_signal():
    rng = np.random.default_rng(1)
    latent, data = _shared_signal(rng, participants=8)
    n = latent.shape[0]
    runs = np.repeat(["run-1", "run-2", "run-3", "run-4"], n // 4)
    train = np.flatnonzero(runs != "run-1")
    mean = np.mean(data, axis=0)
    feats = np.c_[latent, rng.standard_normal((n, 5))] + 0.1 * rng.standard_normal((n, 8))
    kw = dict(participant_weights=[1.0] * 8, features=feats, train=train, train_runs=runs[train],
              n_components=3, fraction=0.1)
    et = encoder_targets(mean, [d[train] for d in data], **kw)
    assert set(et.units) == set(range(20))  # the 10 % most reliable units are the shared ones
    assert et.scores.shape == (n, 3) and np.allclose(et.scores[train].std(0), 1.0, atol=1e-3)
    # the components span the planted latent space, on held-out windows too
    test = np.flatnonzero(runs == "run-1")
    beta = np.linalg.lstsq(np.c_[latent[test], np.ones(len(test))], et.scores[test], rcond=None)[0]
    resid = et.scores[test] - np.c_[latent[test], np.ones(len(test))] @ beta
    assert resid.var() / et.scores[test].var() < 0.2
    # the fixed read-out predicts the components from the features
    pred = ((feats - et.mean) / et.scale) @ et.weight + et.intercept
    assert np.corrcoef(pred[test].ravel(), et.scores[test].ravel())[0, 1] > 0.8
    # held-out targets do not enter: changing them leaves units, components and read-out unchanged
    mean2 = mean.copy()
    mean2[test] = rng.standard_normal(mean2[test].shape)
    et2 = encoder_targets(mean2, [d[train] for d in data], **kw)
    assert np.array_equal(et2.units, et.units)
    assert np.allclose(et2.scores[train], et.scores[train]) and np.allclose(et2.weight, et.weight)


@pytest.mark.parametrize("spec,k", [("units", 0), ("pcs:8", 8), ("pcs:1", 1)])
def test_parse_encoder_targets(spec, k):
    assert parse_encoder_targets(spec) == k


@pytest.mark.parametrize("bad", ["pcs:0", "pcs:x", "pca", ""])
def test_bad_encoder_targets_name_the_field(bad, tmp_path):
    with pytest.raises(ConfigError, match="encoder_targets"):
        TrainConfig(dataset="d", out=str(tmp_path / "m"), variant="fine-tuned", preset="quick",
                     encoder_targets=bad).validate()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    return {"bert": make_tiny_bert(root / "bert"), "data": make_tiny_dataset(root / "data", n_fmri=3, n_meg=0)}


def _cfg(tiny, out, **kw) -> TrainConfig:
    values = dict(dataset=str(tiny["data"]), base=str(tiny["bert"]), out=str(out), folds=("run-1",), preset="quick",
                  preprocess=TINY_PREPROCESS, pooling="cls", predictions_dtype="float32")
    values.update(kw)
    return TrainConfig(**values)


def test_refit_without_encoder_updates_reproduces_vanilla_exactly(tiny, tmp_path):
    """The refit stage draws vanilla's order and dropout from zeroed heads: with no full epoch
    the fine-tuned model's predictions are vanilla's, bit for bit."""
    va = load_checkpoint(train(_cfg(tiny, tmp_path / "va", variant="vanilla", epochs=(3,)), bar=False))
    ft = load_checkpoint(train(_cfg(tiny, tmp_path / "ft", variant="fine-tuned", epochs=(2, 0, 3)), bar=False))
    for pid in ("P1", "P2", "P3"):
        assert np.array_equal(va.predictions(pid, 0)["predictions"], ft.predictions(pid, 0)["predictions"])


def test_pcs_targets_train_the_encoder_and_say_so(tiny, tmp_path):
    messages = []
    out = train(_cfg(tiny, tmp_path / "ft", variant="fine-tuned", epochs=(2, 1, 3), encoder_targets="pcs:2",
                     reliable_fraction=0.5),
                progress=lambda f, m: messages.append(m), bar=False)
    ck = load_checkpoint(out)
    assert ck.card["train_config"]["encoder_targets"] == "pcs:2"
    assert ck.card["train_config"]["stage_epochs"] == {"heads": 2, "full": 1, "refit": 3}
    assert any("encoder targets: top 2 principal components" in m for m in messages)
    assert ck.card["metrics"]["encoder_change"]["relative_l2_mean"] > 0
    # units: the same schedule trains on every unit (a different encoder)
    units = load_checkpoint(train(_cfg(tiny, tmp_path / "units", variant="fine-tuned", epochs=(2, 1, 3),
                                       encoder_targets="units"), bar=False))
    assert not np.array_equal(units.predictions("P1", 0)["predictions"], ck.predictions("P1", 0)["predictions"])


def test_shuffled_encoder_targets_keep_each_runs_values_but_lose_their_order():
    rng = np.random.default_rng(2)
    latent, data = _shared_signal(rng, participants=4)
    n = latent.shape[0]
    runs = np.repeat(["run-1", "run-2", "run-3"], n // 3)
    train = np.flatnonzero(runs != "run-1")
    kw = dict(participant_weights=[1.0] * 4, features=latent + 0.1 * rng.standard_normal((n, 3)), train=train,
              train_runs=runs[train], n_components=2, fraction=0.1)
    real = encoder_targets(np.mean(data, axis=0), [d[train] for d in data], **kw)
    null = encoder_targets(np.mean(data, axis=0), [d[train] for d in data], shuffle_seed=0, **kw)
    for run in ("run-2", "run-3"):
        rows = np.flatnonzero(runs == run)
        assert np.allclose(np.sort(real.scores[rows], axis=0), np.sort(null.scores[rows], axis=0))
        assert abs(np.corrcoef(real.scores[rows, 0], null.scores[rows, 0])[0, 1]) < 0.3
    assert np.array_equal(real.scores[runs == "run-1"], null.scores[runs == "run-1"])  # held-out rows untouched


def test_shuffled_encoder_targets_need_pcs(tiny, tmp_path):
    with pytest.raises(ConfigError, match="shuffle_encoder_targets: the encoder-only null control needs"):
        train(_cfg(tiny, tmp_path / "x", variant="fine-tuned", epochs=(1, 1, 1), encoder_targets="units",
                   shuffle_encoder_targets=True), bar=False)
