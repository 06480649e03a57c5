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


def test_window_attention_and_offline_head_view(tiny):
    """All layers of one window; bertviz's head view with d3/jQuery inlined (no CDN), 1-based
    layer names, and a token that cannot close the inline script."""
    import re

    from brainviz.app_support.compute import window_attention
    from brainviz.viz.attention import head_view_html, head_view_params

    tokens, att = window_attention(tiny, WINDOWS[0])
    _, one = token_attention(tiny, WINDOWS[0], layer=1, head=2)
    assert att.shape == (2, 4, len(tokens), len(tokens))
    np.testing.assert_allclose(att[1, 2], one, rtol=1e-5, atol=1e-6)
    html = head_view_html(tokens[:-1] + ["</script>"], att, layer=1, layers=[1], heads=[2], title="<b>base</b>")
    assert not re.search(r"""<script[^>]*src=["']?https?://""", html) and "cdnjs" not in html
    assert "require.config" not in html and "d3.version" in html and "jQuery v3.6.0" in html
    assert html.count("</script>") == 3  # jQuery, d3, the view: the odd token did not end a script early
    assert '.text("L" + (layer + 1))' in html and "&lt;b&gt;base" in html
    params = head_view_params(html)
    assert params["layer"] == 1 and params["include_layers"] == [1] and params["heads"] == [2]
    attn = np.array(params["attention"][0]["attn"])
    assert attn.shape == (1, 4, len(tokens), len(tokens))
    np.testing.assert_allclose(attn[0, 2], np.round(att[1, 2], 3), atol=1e-9)
    with pytest.raises(ValueError):
        head_view_html(tokens, att, layer=0, layers=[1])


def test_attention_figures_label_axes_and_scale_panels_separately():
    from brainviz.viz.attention import head_change_heatmap, layer_attention, token_attention_pair

    mean = np.array([[0.9, 0.01], [0.8, 0.02], [0.85, 0.03]])
    fig = layer_attention({"base": {"mean": mean, "se": np.full_like(mean, 0.001)},
                           "tuned": {"mean": mean + [0.0, 0.01], "se": np.full_like(mean, 0.001)}})
    y1, y2 = fig.layout.yaxis.range, fig.layout.yaxis2.range
    assert y2[1] < 0.1 < y1[0]  # [CLS]→[SEP] is not flattened on the [CLS]→[CLS] scale
    assert list(fig.layout.xaxis.ticktext) == ["L1", "L2", "L3"]
    heat = head_change_heatmap(np.zeros((3, 4, 2)) + 0.01)
    assert list(heat.data[0].y) == ["L1", "L2", "L3"] and list(heat.data[0].x)[0] == "H1"
    assert heat.layout.xaxis.title.text == "head" and heat.layout.yaxis.title.text == "layer"
    toks = ["[CLS]", "a", "[SEP]"]
    pair = token_attention_pair({"base": (toks, np.eye(3)), "tuned": (toks, np.full((3, 3), 1 / 3))})
    assert len(pair.data) == 2 and pair.layout.xaxis.title.text.startswith("key")
    assert pair.layout.yaxis.title.text.startswith("query") and pair.data[0].zmax == pair.data[1].zmax == 1.0
    with pytest.raises(ValueError):
        token_attention_pair({"x": (toks, np.eye(2))})
