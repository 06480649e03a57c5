"""Heads and BrainModel on a tiny random BERT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainviz.models.brain_model import BrainModel, tokenize_windows
from brainviz.models.heads import BrainHeads, FMRIHead, MEGHead
from brainviz.tuning._testing import make_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from brainviz.models.encoder import load_encoder

    return load_encoder(make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert"))


def test_split_and_shared_fmri_heads():
    split = FMRIHead(8, ["a", "b"], [3, 5], mode="split")
    assert split.linear.out_features == 8 and split.splits == {"a": (0, 3), "b": (3, 8)}
    shared = FMRIHead(8, ["a", "b"], [4, 4], mode="shared")
    assert shared.linear.out_features == 4 and shared.splits == {"a": (0, 4), "b": (0, 4)}
    with pytest.raises(ValueError, match="equal size"):
        FMRIHead(8, ["a", "b"], [3, 4], mode="shared")
    with pytest.raises(ValueError, match="unknown fMRI head mode"):
        FMRIHead(8, ["a"], [3], mode="tied")
    out = torch.arange(8.0)[None]
    assert split.block(out, "b").tolist() == [[3, 4, 5, 6, 7]]


def test_meg_head_uses_word_features():
    head = MEGHead(4, ["m1", "m2"], [3, 2], [5, 5])
    assert head.linear.in_features == 6 and head.linear.out_features == 25
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.weight[:, 4] = 1.0  # length column
    out = head(torch.zeros(2, 4), torch.tensor([[3.0, -20.0], [0.0, -20.0]]))
    assert out.shape == (2, 25) and torch.all(out[0] == 3) and torch.all(out[1] == 0)


def test_heads_save_load_roundtrip(tmp_path):
    heads = BrainHeads(FMRIHead(8, ["a", "b"], [3, 5], dropout=0.2), MEGHead(8, ["m"], [2], [3]))
    with torch.no_grad():
        for p in heads.parameters():
            p.normal_()
    heads.save(tmp_path / "heads.safetensors")
    again = BrainHeads.load(tmp_path / "heads.safetensors")
    assert again.spec() == heads.spec()
    for (k, a), b in zip(heads.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_brain_model_forward_uses_cls_not_pooler(tiny_bert):
    encoder, tokenizer = tiny_bert
    heads = BrainHeads(FMRIHead(32, ["p"], [6], dropout=0.0), MEGHead(32, ["m"], [2], [2]))
    with torch.no_grad():
        heads.fmri.linear.weight.normal_()
    model = BrainModel(encoder, heads).eval()
    tok = tokenize_windows(tokenizer, [["the", "boy", "ran"], ["a", "dog", "jumped", "over", "the", "house"]])
    assert tok.word_ids[0] == [None, 0, 1, 2, None]
    batch = tok.batch([0, 1])
    with torch.no_grad():
        out = model(batch, torch.tensor([[0, 1], [1, 3]]), torch.tensor([[3.0, -5.0], [3.0, -4.0]]))
        hidden = encoder(**batch).last_hidden_state
    assert out["fmri"].shape == (2, 6) and out["meg"].shape == (2, 4)
    torch.testing.assert_close(out["fmri"], heads.fmri.linear(hidden[:, 0]))
    preds = model.predict_fmri(tokenizer, [["the", "boy", "ran"]])
    np.testing.assert_allclose(preds["p"], out["fmri"][:1].numpy(), rtol=1e-5, atol=1e-6)


def test_long_windows_keep_the_most_recent_words(tiny_bert):
    _, tokenizer = tiny_bert
    words = ["the"] * 10 + ["boy", "ran"]
    tok = tokenize_windows(tokenizer, [words], max_length=6)
    assert len(tok.input_ids[0]) == 6
    kept = [w for w in tok.word_ids[0] if w is not None]
    assert kept[-1] == 11 and kept[0] == 8  # oldest words dropped
    with pytest.raises(ValueError, match="no words"):
        tokenize_windows(tokenizer, [[]])
