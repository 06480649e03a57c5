"""Artificial neurons: closed form = naive, HRF = nilearn, segments, hooks, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.coupling import neurons
from brainviz.coupling._synthetic import synthetic_dataset
from brainviz.coupling.neurons import CouplingError


def test_closed_form_equals_naive_on_random_tensors():
    rng = np.random.default_rng(0)
    n_tok, n_ans, n_trs = 60, 24, 20
    q = rng.standard_normal((n_tok, n_ans)).astype(np.float32)
    k = rng.standard_normal((n_tok, n_ans)).astype(np.float32)
    token_tr = np.sort(rng.integers(-1, n_trs, size=n_tok))  # -1: outside the runs
    token_tr[token_tr == 7] = 8  # an empty TR
    fast = neurons.an_activations(q, k, token_tr, n_trs)
    naive = neurons.an_activations_naive(q, k, token_tr, n_trs)
    pair = neurons.an_activations_pairwise(q, k, token_tr, n_trs)
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pair, naive, rtol=1e-10, atol=1e-12)
    assert np.all(fast[7] == 0)
    # unsorted token order gives the same result
    perm = rng.permutation(n_tok)
    np.testing.assert_allclose(neurons.an_activations(q[perm], k[perm], token_tr[perm], n_trs), fast, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("oversampling", [1, 16])
def test_hrf_convolution_matches_nilearn_regressor(oversampling):
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(1)
    tr, n = 1.5, 80
    x = rng.standard_normal(n)
    frame_times = tr * np.arange(n)
    ref, _ = compute_regressor((frame_times, np.full(n, tr), x), "spm", frame_times,
                               oversampling=oversampling, min_onset=0)
    np.testing.assert_allclose(neurons.convolve_hrf(x, tr, oversampling), ref[:, 0], atol=1e-10)
    # columns are convolved independently
    two = neurons.convolve_hrf(np.c_[x, 2 * x], tr, oversampling)
    np.testing.assert_allclose(two[:, 1], 2 * ref[:, 0], atol=1e-10)


def test_pack_segments_respects_budget_and_sentence_ends():
    words = ("The cat sat. It was happy! Then a very long sentence went on and on and on without end "
             "for many words indeed. Done.").split()
    pieces = [1 + (len(w) > 5) for w in words]
    ends = neurons.sentence_ends(words)
    segs = neurons.pack_segments(pieces, ends, budget=12)
    assert segs[0][0] == 0 and segs[-1][1] == len(words)
    for (a, b), (c, _) in zip(segs, segs[1:]):
        assert b == c
    for a, b in segs:
        assert sum(pieces[a:b]) <= 12
    # a segment ends at a sentence end unless the sentence itself is too long
    assert ends[segs[0][1] - 1]


@pytest.fixture(scope="module")
def tiny_bert():
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from brainviz.models.encoder import pretrained_path

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(pretrained_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg).eval(), tok


def test_transcript_and_queries_keys(tiny_bert):
    model, tok = tiny_bert
    ds, _ = synthetic_dataset(n_participants=1, n_units=20, words_per_story=120)
    tr = neurons.build_transcript(ds, "listening_1", tok, max_tokens=64)
    assert max(tr.segment_lengths()) <= 64 and tr.n_segments >= 3
    assert tr.tokens[0] == "[CLS]" and tr.tokens[tr.segment_bounds[0][1] - 1] == "[SEP]"
    assert np.all(tr.word_index[~tr.special] >= 0)
    # every word's pieces are present, in order
    assert sorted(set(tr.word_index[~tr.special])) == list(range(len(tr.words)))
    q, k = neurons.extract_qk(model, tr)
    shape = neurons.attention_shape(model)
    assert (shape.n_layers, shape.n_heads, shape.head_dim) == (2, 4, 8)
    assert q.shape == k.shape == (tr.n_tokens, 64)
    an = neurons.compute_an_timecourses(ds, "listening_1", model, tok, max_tokens=64)
    grid = neurons.story_grid(ds, "listening_1")
    assert an.timecourses.shape == (grid.n_trs, 64)
    # trimmed grid: first and last TR hold words
    assert an.tokens_per_tr[0] > 0 and an.tokens_per_tr[-1] > 0
    with_special = neurons.compute_an_timecourses(ds, "listening_1", model, tok, max_tokens=64, include_special=True)
    assert with_special.tokens_per_tr.sum() == an.tokens_per_tr.sum() + 2 * an.transcript.n_segments
    # layer 1 head 2 dim 3 is column (1 * 4 + 2) * 8 + 3
    assert neurons.an_number(shape, 1, 2, 3) == 51
    idx = neurons.an_index(shape)
    assert (idx["layer"][51], idx["head"][51], idx["dim"][51]) == (1, 2, 3)


def test_model_without_attention_is_a_clear_error():
    import torch

    class NoAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(4, 4)

    with pytest.raises(CouplingError, match="no attention query/key modules"):
        neurons.attention_shape(NoAttention())


def test_story_not_in_dataset_and_words_without_timings():
    ds, _ = synthetic_dataset(n_participants=1, n_units=20, words_per_story=40)
    with pytest.raises(CouplingError, match=r"story 'nope' is not in dataset .* stories are \['listening_1', 'listening_2'\]"):
        neurons.story_grid(ds, "nope")
    stim = ds.stimulus.copy()
    stim.loc[3, "onset"] = np.nan
    ds.stimulus = stim
    with pytest.raises(CouplingError, match=r"story 'listening_1': 1 word\(s\) without timings .* rows \[4\]"):
        neurons.story_words(ds, "listening_1")
