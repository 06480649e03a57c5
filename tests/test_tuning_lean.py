"""Lean checkpoints and the quick multi-participant recipe (tiny BERT, tiny dataset; fast)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from brainviz.evaluation.encoding import pearson_r
from brainviz.evaluation.twenty import draw_indices, twenty_vs_twenty
from brainviz.models.store import load_checkpoint
from brainviz.tuning import TrainConfig, train
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean")
    return {"root": root, "bert": make_tiny_bert(root / "bert"),
            "data": make_tiny_dataset(root / "data", n_fmri=3, n_meg=0, trs_per_run=30)}


@pytest.fixture(scope="module")
def quick_pair(tiny):
    """The default recipe (quick preset, all participants together) on the tiny data."""
    common = dict(dataset=str(tiny["data"]), base=str(tiny["bert"]), preset="quick", preprocess=TINY_PREPROCESS,
                  folds=("run-1", "run-2", "run-3"))
    ft = train(TrainConfig(out=str(tiny["root"] / "ft"), variant="fine-tuned", epochs=(2, 2), lr=1e-3, **common), bar=False)
    va = train(TrainConfig(out=str(tiny["root"] / "va"), variant="vanilla", epochs=(4,), **common), bar=False)
    return ft, va


def test_quick_recipe_trains_all_participants_in_one_fit_with_a_shared_head(quick_pair):
    ft, va = quick_pair
    for out in quick_pair:
        ckpt = load_checkpoint(out)
        assert [f["group"] for f in ckpt.fits] == ["_all"] * 3 and ckpt.fits[0]["predicts"] == ["P1", "P2", "P3"]
        assert ckpt.card["head_mode"] == "shared" and ckpt.card["pooling"] == "mean"
        heads = ckpt.heads()
        assert heads.fmri.mode == "shared" and heads.fmri.linear.out_features == 12 and heads.fmri.pooling == "mean"
        # one prediction file for everybody (shared head): hard links, not copies
        files = [out / ckpt.card["predictions"]["seed-0"][p] for p in ckpt.participants]
        assert len({os.stat(f).st_ino for f in files}) == 1
        assert set(ckpt.predictions("P2")["run"]) == {"run-1", "run-2", "run-3"}
        # keep_weights = first: only the first fold's weights are on disk, all folds' predictions are
        kept = [f["weights_kept"] for f in ckpt.fits]
        assert kept == [True, False, False] and ckpt.fits[1]["heads"] is None
        assert not (out / "fits/_all/fold-run-2").exists()
    card = load_checkpoint(ft).card
    change = card["fits"][0]["encoder_change"]
    assert 0 < change["relative_l2"] <= change["relative_l2_trained"]
    assert card["metrics"]["encoder_change"]["relative_l2_mean"] > 0
    # vanilla: no encoder copy at all (its encoder is the base)
    vcard = load_checkpoint(va).card
    assert vcard["encoder"] == vcard["base"] and not list(va.rglob("encoder"))
    assert "encoder_change" not in vcard["metrics"]


def test_encoder_delta_is_float16_without_frozen_tensors_and_reproduces_predictions(quick_pair, tiny):
    from safetensors import safe_open

    from brainviz.data import PreprocessConfig, fmri_examples, load_dataset

    ft, _ = quick_pair
    ckpt = load_checkpoint(ft)
    path = ft / ckpt.fits[0]["encoder"] / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["brainviz_weights"] == "delta-fp16"
        keys = list(f.keys())
        assert keys and all(str(f.get_tensor(k).dtype) == "torch.float16" for k in keys)
    assert not any("word_embeddings" in k for k in keys)  # frozen in the quick preset: not stored
    # the stored model (base + float16 delta, float16 heads) re-predicts the stored predictions
    ds = load_dataset(tiny["data"])
    ex = fmri_examples(ds, "P1", PreprocessConfig(**ckpt.card["preprocess"]))
    stored = ckpt.predictions("P1")
    rows = {int(t): i for i, t in enumerate(ex.tr_index)}
    words = ds.stimulus["word"].astype(str).to_numpy()
    sel = stored["run"] == "run-1"
    windows = [words[ex.windows[rows[int(t)]]].tolist() for t in stored["tr_index"][sel]]
    model, tok = ckpt.brain_model(ckpt.fits[0])
    again = model.predict_fmri(tok, windows, max_length=ckpt.card["train_config"]["max_length"])["P1"]
    np.testing.assert_allclose(again, stored["predictions"][sel].astype(np.float32), rtol=2e-3, atol=2e-4)
    # the top-level encoder of a lean checkpoint is the first fit's
    from brainviz.models.encoder import load_encoder

    top, _ = load_encoder(str(ft))
    fit_enc, _ = ckpt.fit_encoder(ckpt.fits[0])
    for a, b in zip(top.state_dict().values(), fit_enc.state_dict().values()):
        assert (a == b).all()


def _scores(pred, target, indices):
    return pearson_r(pred.astype(np.float64), target), twenty_vs_twenty(pred, target, indices=indices, backend="numpy")


def test_float16_predictions_leave_scores_unchanged():
    """Held-out scores from float16 predictions equal those from float32 within far less than
    their sampling error: Pearson r to < 1e-3, 20-vs-20 accuracy to at most 2 of 1,000 draws
    (not bit for bit: rounding can flip a draw whose two distances nearly tie)."""
    rng = np.random.default_rng(0)
    n, units = 200, 400
    shared = rng.standard_normal((n, 8))
    target = (shared @ rng.standard_normal((8, units)) * 0.3 + rng.standard_normal((n, units))).astype(np.float32)
    for scale in (0.05, 1.0, 30.0):  # predictions of a weak, a unit-scale and a large head
        pred32 = (scale * (shared @ rng.standard_normal((8, units)) * 0.2 + 0.5 * rng.standard_normal((n, units)))).astype(np.float32)
        pred16 = pred32.astype(np.float16)
        indices = draw_indices(n, k=20, n_samples=1000, rng=1)
        r32, acc32 = _scores(pred32, target, indices)
        r16, acc16 = _scores(pred16.astype(np.float32), target, indices)
        assert np.max(np.abs(r16 - r32)) < 1e-3
        assert np.max(np.abs(acc16 - acc32)) <= 0.002 + 1e-9
        # most units' accuracies are bit-identical; the others moved by one or two near-tied draws
        # (measured: 5-15 % of units, mostly near-chance ones, by 0.001; the accuracy's sampling
        # s.e. with 1,000 draws is ~0.016): hence float32 in the paper preset
        assert np.mean(acc16 != acc32) <= 0.25 and np.mean(np.abs(acc16 - acc32)) <= 3e-4


def test_stored_float16_predictions_score_like_the_float32_model(quick_pair, tiny):
    """On a trained checkpoint: scores of the stored float16 predictions vs the float32
    predictions of the same stored model."""
    from brainviz.data import PreprocessConfig, fmri_examples, load_dataset

    ft, _ = quick_pair
    ckpt = load_checkpoint(ft)
    ds = load_dataset(tiny["data"])
    ex = fmri_examples(ds, "P3", PreprocessConfig(**ckpt.card["preprocess"]))
    stored = ckpt.predictions("P3")
    sel = stored["run"] == "run-1"
    rows = np.array([{int(t): i for i, t in enumerate(ex.tr_index)}[int(t)] for t in stored["tr_index"][sel]])
    words = ds.stimulus["word"].astype(str).to_numpy()
    model, tok = ckpt.brain_model(ckpt.fits[0])
    pred32 = model.predict_fmri(tok, [words[ex.windows[i]].tolist() for i in rows],
                                max_length=ckpt.card["train_config"]["max_length"])["P3"]
    target = ex.data[rows]
    indices = draw_indices(len(rows), k=5, n_samples=1000, rng=0)
    r32, acc32 = _scores(pred32, target, indices)
    r16, acc16 = _scores(stored["predictions"][sel].astype(np.float32), target, indices)
    assert np.max(np.abs(r16 - r32)) < 1e-3 and np.max(np.abs(acc16 - acc32)) <= 0.002 + 1e-9


def test_participant_specific_heads_option(tiny):
    out = train(TrainConfig(dataset=str(tiny["data"]), base=str(tiny["bert"]), out=str(tiny["root"] / "both"),
                            preset="quick", preprocess=TINY_PREPROCESS, folds=("run-2",), variant="vanilla",
                            epochs=(3,), head_mode="shared+split", pooling="cls"), bar=False)
    ckpt = load_checkpoint(out)
    heads = ckpt.heads()
    assert heads.fmri.mode == "shared+split" and heads.fmri.linear.out_features == 12 * 4 and heads.fmri.pooling == "cls"
    p1, p2 = ckpt.predictions("P1")["predictions"], ckpt.predictions("P2")["predictions"]
    assert not np.array_equal(p1, p2)  # own blocks differ
    files = {os.stat(out / ckpt.card["predictions"]["seed-0"][p]).st_ino for p in ("P1", "P2")}
    assert len(files) == 2


def test_old_format_checkpoint_still_loads(tiny, tmp_path):
    """A checkpoint in the format-1 layout (full float32 fit encoder, top-level encoder/ HF
    folder, float32 heads and predictions) written as the code before the lean format did."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModel, AutoTokenizer

    from brainviz.models.brain_model import BrainModel
    from brainviz.models.encoder import load_encoder
    from brainviz.models.heads import BrainHeads, FMRIHead

    root = tmp_path / "old"
    fit_dir = root / "fits/P1/fold-run-1/seed-0"
    (fit_dir / "encoder").mkdir(parents=True)
    enc = AutoModel.from_pretrained(str(tiny["bert"]), attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(enc, str(fit_dir / "encoder/model.safetensors"))
    enc.save_pretrained(str(root / "encoder"), safe_serialization=True)
    tok.save_pretrained(str(root / "encoder"))
    heads = BrainHeads(FMRIHead(32, ["P1"], [12]))
    with torch.no_grad():
        heads.fmri.linear.weight.normal_()
    heads.save(fit_dir / "heads.safetensors")
    heads.save(root / "heads.safetensors")
    windows = [["the", "boy", "ran"], ["a", "dog", "saw", "the", "cat"], ["sun", "moon"]]
    preds = BrainModel(enc, heads).predict_fmri(tok, windows)["P1"]
    (root / "predictions/seed-0").mkdir(parents=True)
    with open(root / "predictions/seed-0/P1.npz", "wb") as fh:
        np.savez(fh, predictions=preds.astype(np.float32), tr_index=np.arange(3, dtype=np.int64),
                 run=np.array(["run-1"] * 3), units=np.arange(12, dtype=np.int64))
    card = {
        "format": 1, "name": "old", "variant": "fine-tuned", "base": str(tiny["bert"]), "encoder": "encoder",
        "heads": "heads.safetensors", "dataset": {"name": "tiny", "path": str(tiny["data"]), "hash": "0" * 16},
        "simulated": True, "participants": ["P1"], "meg_participants": [], "folds": ["run-1"], "seeds": [0],
        "train_config": {"max_length": 128}, "preprocess": TINY_PREPROCESS, "metrics": {}, "versions": {},
        "created": "2026-01-01T00:00:00+00:00",
        "fits": [{"group": "P1", "fold": "run-1", "seed": 0, "fmri": ["P1"], "meg": [], "stages": [], "init": None,
                  "predicts": ["P1"], "encoder": "fits/P1/fold-run-1/seed-0/encoder",
                  "heads": "fits/P1/fold-run-1/seed-0/heads.safetensors"}],
        "predictions": {"seed-0": {"P1": "predictions/seed-0/P1.npz"}},
    }
    (root / "card.json").write_text(json.dumps(card))
    ckpt = load_checkpoint(root)
    model, tokenizer = ckpt.brain_model()
    np.testing.assert_allclose(model.predict_fmri(tokenizer, windows)["P1"], ckpt.predictions("P1")["predictions"],
                               rtol=1e-5, atol=1e-6)
    top, _ = load_encoder(str(root))
    for a, b in zip(top.state_dict().values(), enc.state_dict().values()):
        assert torch.equal(a, b)
    assert ckpt.predictions("P1")["predictions"].dtype == np.float32


def test_delta_from_another_base_is_refused(quick_pair, tmp_path):
    import shutil

    from brainviz.errors import CheckpointError

    ft, _ = quick_pair
    copy = tmp_path / "moved"
    shutil.copytree(ft, copy)
    card = json.loads((copy / "card.json").read_text())
    other = make_tiny_bert(tmp_path / "other", seed=5)
    card["base"] = str(other)
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="different base model"):
        load_checkpoint(copy).fit_encoder()


def test_shared_head_mean_target_shortcut_gives_the_same_model(tiny, tmp_path, monkeypatch):
    """Shared head + MSE fits the participants' mean target (one participant's cost): same
    gradients as the sum of per-participant losses, hence the same trained model."""
    from brainviz.tuning._loop import FitTrainer

    common = dict(dataset=str(tiny["data"]), base=str(tiny["bert"]), preset="quick", preprocess=TINY_PREPROCESS,
                  folds=("run-2",), variant="fine-tuned", epochs=(2, 1), lr=1e-3, encoder_targets="units")
    fast = train(TrainConfig(out=str(tmp_path / "fast"), **common), bar=False)
    monkeypatch.setattr(FitTrainer, "pool_shared_mse", False)
    slow = train(TrainConfig(out=str(tmp_path / "slow"), **common), bar=False)
    a = load_checkpoint(fast).predictions("P1")["predictions"].astype(np.float32)
    b = load_checkpoint(slow).predictions("P1")["predictions"].astype(np.float32)
    np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-3)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_single_run_dataset_trains_on_contiguous_blocks(tmp_path):
    """One run: the shared splitter's contiguous blocks (with buffers), never shuffled TRs."""
    bert = make_tiny_bert(tmp_path / "bert")
    data = make_tiny_dataset(tmp_path / "one", n_fmri=2, n_meg=0, n_runs=1, trs_per_run=90)
    out = train(TrainConfig(dataset=str(data), base=str(bert), out=str(tmp_path / "blk"), variant="vanilla",
                            preset="quick", preprocess=TINY_PREPROCESS, epochs=(2,), pooling="cls"), bar=False)
    ckpt = load_checkpoint(out)
    assert ckpt.folds == ["block-1of4", "block-2of4", "block-3of4", "block-4of4"]
    # every held-out block was predicted (each block scored on its own in the card's metrics)
    assert np.all(np.isfinite(ckpt.predictions("P2")["predictions"].astype(np.float32)))
    p = ckpt.predictions("P1")
    assert len(np.unique(p["tr_index"])) == len(p["tr_index"]) and set(p["run"]) == {"run-1"}
    assert len(p["tr_index"]) >= 80  # the four blocks cover the kept TRs (87 here)
    assert set(ckpt.card["metrics"]["pearson_r"]["seed-0"]["P1"]["folds"]) == set(ckpt.folds)
