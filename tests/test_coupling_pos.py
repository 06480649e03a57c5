"""POS tags of ANs: 17 categories, top query-key pairs, counts, text heatmap data."""

from __future__ import annotations

import numpy as np
import pytest

from brainviz.coupling import pos
from brainviz.data.features import UNIVERSAL_POS


def test_seventeen_categories_cover_spacy_tags():
    assert len(pos.CATEGORIES) == 17 and len(pos.POS15) == 15
    assert pos.CATEGORIES[-2:] == ("[CLS]", "[SEP]")
    for tag in UNIVERSAL_POS:
        assert pos.map_pos(tag) in pos.POS15
    assert pos.map_pos("SYM") == "PUNCT" and pos.map_pos("X") == "NOUN"
    assert pos.pair_label(pos.CATEGORY_INDEX["NOUN"] * 17 + pos.CATEGORY_INDEX["PRON"]) == "NOUN→PRON"


def test_top_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((30, 5)).astype(np.float32)
    k = rng.standard_normal((30, 5)).astype(np.float32)
    bounds = [(0, 12), (12, 30)]
    tp = pos.top_pairs(q, k, bounds, top_k=10, chunk=2)
    for i in range(5):
        for s, (a, b) in enumerate(bounds):
            prod = np.outer(q[a:b, i], k[a:b, i])
            want = np.sort(prod.ravel())[::-1][:10]
            got = tp.value[i, s * 10:(s + 1) * 10]
            np.testing.assert_allclose(np.sort(got)[::-1], want, rtol=1e-6)
            qi, ki = tp.query[i, s * 10:(s + 1) * 10], tp.key[i, s * 10:(s + 1) * 10]
            assert np.all((qi >= a) & (qi < b) & (ki >= a) & (ki < b))
            np.testing.assert_allclose(q[qi, i] * k[ki, i], got, rtol=1e-6)
    cats = rng.integers(0, 17, size=30)
    counts = pos.category_counts(tp, cats)
    assert counts.shape == (5, 17, 17) and np.all(counts.sum(axis=(1, 2)) == 20)
    i = 3
    manual = np.zeros((17, 17), int)
    for a, b in zip(tp.query[i], tp.key[i]):
        manual[cats[a], cats[b]] += 1
    np.testing.assert_array_equal(counts[i], manual)
    dist = pos.tag_distribution(counts)
    assert dist.sum() == 5
    heat = pos.text_heatmap([f"t{j}" for j in range(30)], np.arange(30), np.arange(30) // 3, np.r_[np.zeros(12), np.ones(18)].astype(int),
                            cats, tp.query[i], tp.key[i], tp.value[i])
    assert len(heat["pairs"]) == 20 and heat["tokens"]["n_as_query"].sum() == 20
    assert heat["tokens"]["query_score"].sum() == pytest.approx(np.abs(tp.value[i]).sum(), rel=1e-5)


def test_token_categories_with_given_tags():
    from brainviz.coupling.neurons import Transcript, StoryGrid

    tokens = ["[CLS]", "the", "dog", "##s", ",", "ran", "[SEP]"]
    tr = Transcript(story="s", grid=StoryGrid("s", ["s"], [3], [0.0], 1.5), words=["the", "dogs,", "ran"],
                    word_tr=np.array([0, 1, 2]), input_ids=np.arange(7), tokens=tokens,
                    word_index=np.array([-1, 0, 1, 1, 1, 2, -1]), special=np.array([1, 0, 0, 0, 0, 0, 1], bool),
                    segment=np.zeros(7, int), segment_bounds=[(0, 7)])
    cats = pos.token_categories(tr, ["DET", "NOUN", "X"])
    assert [pos.CATEGORIES[c] for c in cats] == ["[CLS]", "DET", "NOUN", "NOUN", "PUNCT", "NOUN", "[SEP]"]
