"""Attention read-outs on the tiny random BERT, and one check on the packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainviz.models.attention import attention_change, cls_attention, layer_summary, token_attention
from brainviz.tuning._testing import make_tiny_bert

WINDOWS = [["the", "boy", "ran", "over", "the", "house"], ["a", "cat"], ["she", "read", "a", "book", "at", "night"]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from brainviz.models.encoder import load_encoder

    return load_encoder(make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert"))


def test_cls_attention_matches_manual_readout(tiny):
    att = cls_attention(tiny, WINDOWS, batch_size=2)
    assert att.shape == (3, 2, 4, 2) and att.dtype == np.float32
    assert np.all((att >= 0) & (att <= 1))
    model, tokenizer = tiny
    enc = tokenizer(WINDOWS[1], is_split_into_words=True, return_tensors="pt")  # [CLS] a cat [SEP]
    with torch.no_grad():
        full = model(**enc, output_attentions=True).attentions
    for layer in range(2):
        np.testing.assert_allclose(att[1, layer, :, 0], full[layer][0, :, 0, 0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(att[1, layer, :, 1], full[layer][0, :, 0, 3].numpy(), rtol=1e-5, atol=1e-6)


def test_summaries_and_change():
    rng = np.random.default_rng(0)
    a = rng.random((2, 5, 3, 4, 2))  # seeds x examples x layers x heads x kind
    s = layer_summary(a, se_over="examples")
    np.testing.assert_allclose(s["mean"], a.mean(axis=(0, 1, 3)))
    per_example = a.mean(axis=(0, 3))  # examples x layers x kind
    np.testing.assert_allclose(s["se"], per_example.std(axis=0, ddof=1) / np.sqrt(5))
    assert s["n"] == 5 and layer_summary(a, se_over="seeds")["n"] == 2 and layer_summary(a[0], "heads")["n"] == 4
    assert np.isnan(layer_summary(a[0], "seeds")["se"]).all()  # one seed: no spread
    change = attention_change(a[0], a[1])
    np.testing.assert_allclose(change, a[1].mean(0) - a[0].mean(0))
    with pytest.raises(ValueError):
        attention_change(a[0], a[1][:, :2])


def test_token_attention_rows_sum_to_one(tiny):
    tokens, mat = token_attention(tiny, WINDOWS[0], layer=1, head=2)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and mat.shape == (len(tokens), len(tokens))
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="layer must be"):
        token_attention(tiny, WINDOWS[0], layer=5, head=0)


def test_packaged_minilm_readout_and_vanilla_training(tmp_path):
    """The one test on the packaged MiniLM: attention shape + a vanilla fit end to end."""
    from brainviz.models.store import load_checkpoint
    from brainviz.tuning import TrainConfig, train
    from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_dataset

    att = cls_attention("pretrained", WINDOWS[:2])
    assert att.shape == (2, 6, 12, 2)
    data = make_tiny_dataset(tmp_path / "data", n_fmri=1, n_meg=0, n_runs=2)
    out = train(TrainConfig(dataset=str(data), variant="vanilla", out=str(tmp_path / "van"), folds=("run-1",),
                            epochs=(1,), preset="quick", preprocess=TINY_PREPROCESS), bar=False)
    ckpt = load_checkpoint(out)
    assert ckpt.card["encoder"] == "pretrained" and ckpt.heads().fmri.linear.in_features == 384
    from brainviz.models.encoder import load_encoder

    model, _ = load_encoder(out)  # heads-only checkpoint -> the base encoder
    assert model.config.num_hidden_layers == 6
