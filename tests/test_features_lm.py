"""Language-model word and window states (brainviz.features.lm) with the packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def minilm():
    from brainviz.models.encoder import load_encoder

    return load_encoder("pretrained")


WORDS = ["The", "old", "farmer", "carried", "a", "heavy", "hammer.", "She", "bought", "bread"]


def _direct(model, tok, words):
    enc = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
    return enc, torch.stack(out.hidden_states)[:, 0].numpy()


def test_word_states_are_causal_and_match_a_direct_forward(minilm):
    from brainviz.features.lm import word_states

    model, tok = minilm
    s = word_states(model, tok, WORDS, context=3, layers=[0, 2, 6], word_piece="mean", batch_size=4)
    assert s.shape == (3, len(WORDS), 384) and s.dtype == np.float32
    # word 6 ("hammer.") read with its 3 preceding words: mean of its pieces, layers 0/2/6
    enc, hs = _direct(model, tok, WORDS[3:7])
    pos = [t for t, w in enumerate(enc.word_ids(0)) if w == 3]
    np.testing.assert_allclose(s[:, 6], hs[[0, 2, 6]][:, pos].mean(axis=1), atol=2e-4)
    # changing later words never changes an earlier word's state (causal context)
    changed = WORDS[:7] + ["They", "sold", "rope"]
    s2 = word_states(model, tok, changed, context=3, layers=[6], batch_size=3)
    np.testing.assert_allclose(s2[0, :7], s[2, :7], atol=2e-4)
    assert not np.allclose(s2[0, 8], s[2, 8], atol=1e-3)
    # context never crosses a group (run) boundary: word 7 starts run 2, so it is read alone
    groups = ["r1"] * 7 + ["r2"] * 3
    s3 = word_states(model, tok, WORDS, groups, context=3, layers=[6], word_piece="first")
    _, alone = _direct(model, tok, WORDS[7:8])
    np.testing.assert_allclose(s3[0, 7], alone[6, 1], atol=2e-4)


def test_window_states_pooling(minilm):
    from brainviz.features.lm import window_states

    model, tok = minilm
    wins = [WORDS[:4], [], WORDS[4:9]]
    cls = window_states(model, tok, wins, pool="cls", layers=[6])
    last = window_states(model, tok, wins, pool="last", layers=[1, 6])
    _, hs = _direct(model, tok, WORDS[4:9])
    np.testing.assert_allclose(cls[0, 2], hs[6, 0], atol=2e-4)
    np.testing.assert_array_equal(cls[0, 1], 0)  # empty window -> zeros
    enc = tok(WORDS[4:9], is_split_into_words=True)
    last_piece = max(t for t, w in enumerate(enc.word_ids()) if w is not None)
    np.testing.assert_allclose(last[1, 2], hs[6, last_piece], atol=2e-4)


def test_shallow_layers_skip_the_deeper_ones_and_leave_the_model_whole(minilm):
    """Asking for layers up to 2 runs only two transformer layers (same states), and the
    shared model object keeps its six layers."""
    from brainviz.features.lm import _first_layers, window_states, word_states

    model, tok = minilm
    short = _first_layers(model, 2)
    assert len(short.encoder.layer) == 2 and len(model.encoder.layer) == 6
    assert short.encoder.layer[1] is model.encoder.layer[1]  # weights shared, not copied
    enc = tok(WORDS[:5], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        n_states = len(short(**enc, output_hidden_states=True).hidden_states)
    assert n_states == 3
    shallow = word_states(model, tok, WORDS, context=3, layers=[1, 2])
    full = word_states(model, tok, WORDS, context=3, layers=[1, 2, 6])
    np.testing.assert_allclose(shallow, full[:2], atol=1e-5)
    win = window_states(model, tok, [WORDS[:6]], pool="mean", layers=[0])
    np.testing.assert_allclose(win, window_states(model, tok, [WORDS[:6]], pool="mean", layers=[0, 6])[:1], atol=1e-5)
    assert len(model.encoder.layer) == 6
