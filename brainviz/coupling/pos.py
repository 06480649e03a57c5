"""Part-of-speech tags of ANs (Liu et al. 2023, "The most frequently anchored BN").

Every token gets one of 17 categories: 15 universal POS tags and ``[CLS]`` / ``[SEP]``. The 15
are spaCy's universal tags minus ``SYM`` and ``X``, which are folded in:

========  ============================================================
spaCy     category here
========  ============================================================
SYM       PUNCT  (symbols such as $ % & behave like punctuation)
X         NOUN   (foreign words, typos, unknown words: mostly nominal)
SPACE     PUNCT
========  ============================================================

Words are tagged in context with :func:`brainviz.data.features.tag_words`; a word piece that is
pure punctuation (the ``,`` of ``said,``) is ``PUNCT``, every other piece gets its word's tag.
Special tokens other than the first/last of a segment (e.g. ``[PAD]``) would be ``[SEP]``.

For each AN, the ``top_k`` (500) query-key pairs ``(a, b)`` of each segment with the largest
``q_a[i] * k_b[i]`` are counted in a 17 x 17 table (query category x key category); the AN's
tag is its most frequent cell, written ``QUERY→KEY``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from brainviz.coupling.neurons import Transcript

POS15 = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
         "PRON", "PROPN", "PUNCT", "SCONJ", "VERB")
CATEGORIES = POS15 + ("[CLS]", "[SEP]")
N_CATEGORIES = len(CATEGORIES)  # 17
POS_MAPPING = {"SYM": "PUNCT", "X": "NOUN", "SPACE": "PUNCT"}
CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}


def pair_label(flat: int) -> str:
    """``'QUERY→KEY'`` of a flat 17 x 17 cell index."""
    qc, kc = divmod(int(flat), N_CATEGORIES)
    return f"{CATEGORIES[qc]}→{CATEGORIES[kc]}"


PAIR_LABELS = tuple(pair_label(i) for i in range(N_CATEGORIES * N_CATEGORIES))


def map_pos(tag: str) -> str:
    """A spaCy universal tag -> one of the 15 POS categories."""
    tag = POS_MAPPING.get(tag, tag)
    return tag if tag in POS15 else "NOUN"


def _is_punct(token: str) -> bool:
    t = token[2:] if token.startswith("##") else token
    return bool(t) and not any(ch.isalnum() for ch in t)


def token_categories(transcript: Transcript, word_pos: Sequence[str] | None = None) -> np.ndarray:
    """Category index (0..16) of every token of the transcript.

    ``word_pos`` gives a universal tag per story word; by default the words are tagged with spaCy.
    """
    if word_pos is None:
        from brainviz.data.features import tag_words

        word_pos = tag_words(transcript.words)
    word_pos = [map_pos(t) for t in word_pos]
    cats = np.empty(transcript.n_tokens, dtype=np.int64)
    for s, (a, b) in enumerate(transcript.segment_bounds):
        for t in range(a, b):
            if transcript.special[t]:
                cats[t] = CATEGORY_INDEX["[CLS]"] if t == a else CATEGORY_INDEX["[SEP]"]
            elif _is_punct(transcript.tokens[t]):
                cats[t] = CATEGORY_INDEX["PUNCT"]
            else:
                cats[t] = CATEGORY_INDEX[word_pos[transcript.word_index[t]]]
    return cats


@dataclasses.dataclass
class TopPairs:
    """The top query-key pairs of every AN.

    ``query``/``key`` int32 (n_ans, n_segments * top_k): global token indices; ``value``
    float32: the products ``q_a[i] * k_b[i]``. Segments shorter than ``sqrt(top_k)`` tokens
    contribute all their pairs (padded with -1 / NaN).
    """

    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    top_k: int


def top_pairs(q: np.ndarray, k: np.ndarray, segment_bounds: Sequence[tuple[int, int]], top_k: int = 500,
              ans: Sequence[int] | None = None, chunk: int = 64) -> TopPairs:
    """The ``top_k`` (a, b) pairs per segment with the largest ``q_a[i] * k_b[i]`` for each AN ``i``.

    Vectorised over chunks of ANs with ``torch.topk`` over the ``n x n`` product matrix of each
    segment (memory ``n^2 x chunk`` floats).
    """
    import torch

    q = np.asarray(q, dtype=np.float32)
    k = np.asarray(k, dtype=np.float32)
    ans = np.arange(q.shape[1]) if ans is None else np.asarray(ans, dtype=np.int64)
    n_seg = len(segment_bounds)
    qi = np.full((len(ans), n_seg * top_k), -1, dtype=np.int32)
    ki = np.full((len(ans), n_seg * top_k), -1, dtype=np.int32)
    val = np.full((len(ans), n_seg * top_k), np.nan, dtype=np.float32)
    for s, (a, b) in enumerate(segment_bounds):
        n = b - a
        kk = min(top_k, n * n)
        qs = torch.from_numpy(np.ascontiguousarray(q[a:b][:, ans].T))  # (A, n)
        ks = torch.from_numpy(np.ascontiguousarray(k[a:b][:, ans].T))
        for c in range(0, len(ans), chunk):
            prod = qs[c:c + chunk, :, None] * ks[c:c + chunk, None, :]  # (c, n, n)
            top = torch.topk(prod.reshape(prod.shape[0], -1), kk, dim=1)
            idx = top.indices.numpy()
            qi[c:c + chunk, s * top_k:s * top_k + kk] = idx // n + a
            ki[c:c + chunk, s * top_k:s * top_k + kk] = idx % n + a
            val[c:c + chunk, s * top_k:s * top_k + kk] = top.values.numpy()
    return TopPairs(qi, ki, val, int(top_k))


def category_counts(pairs: TopPairs, categories: np.ndarray) -> np.ndarray:
    """(n_ans, 17, 17) int32 counts of query category x key category over each AN's top pairs."""
    n_ans = pairs.query.shape[0]
    ok = pairs.query >= 0
    flat = np.where(ok, categories[np.maximum(pairs.query, 0)] * N_CATEGORIES + categories[np.maximum(pairs.key, 0)], 0)
    offs = np.arange(n_ans)[:, None] * (N_CATEGORIES * N_CATEGORIES)
    counts = np.bincount((flat + offs)[ok], minlength=n_ans * N_CATEGORIES * N_CATEGORIES)
    return counts.reshape(n_ans, N_CATEGORIES, N_CATEGORIES).astype(np.int32)


def an_tags(counts: np.ndarray) -> np.ndarray:
    """Flat 17 x 17 cell index of each AN's most frequent category (its tag)."""
    return counts.reshape(counts.shape[0], -1).argmax(axis=1)


def tag_distribution(counts: np.ndarray):
    """Number of ANs tagged with each ``QUERY→KEY`` category (pandas Series, non-zero cells, descending)."""
    import pandas as pd

    tags = an_tags(counts)
    n = np.bincount(tags, minlength=N_CATEGORIES * N_CATEGORIES)
    s = pd.Series(n, index=list(PAIR_LABELS), name="n_ans")
    return s[s > 0].sort_values(ascending=False)


def pos_table(counts_one: np.ndarray):
    """One AN's 17 x 17 counts as a DataFrame (rows: query category, columns: key category)."""
    import pandas as pd

    df = pd.DataFrame(np.asarray(counts_one), index=list(CATEGORIES), columns=list(CATEGORIES))
    df.index.name = "query"
    df.columns.name = "key"
    return df


def text_heatmap(tokens: Sequence[str], word_index: np.ndarray, token_tr: np.ndarray, segment: np.ndarray,
                 categories: np.ndarray, query: np.ndarray, key: np.ndarray, value: np.ndarray) -> dict:
    """Text heatmap data for one AN (red: queries, blue: keys, colour by product magnitude).

    Returns ``{"tokens": DataFrame, "pairs": DataFrame}``: one row per token with
    ``query_score`` / ``key_score`` (sum of the products of the top pairs in which the token is
    the query / key) and their counts; one row per top pair.
    """
    import pandas as pd

    ok = query >= 0
    query, key, value = query[ok].astype(np.int64), key[ok].astype(np.int64), value[ok].astype(np.float64)
    n = len(tokens)
    qs = np.bincount(query, weights=np.abs(value), minlength=n)
    ks = np.bincount(key, weights=np.abs(value), minlength=n)
    tok = pd.DataFrame({
        "token": list(tokens),
        "segment": np.asarray(segment),
        "word_index": np.asarray(word_index),
        "tr": np.asarray(token_tr),
        "pos": [CATEGORIES[c] for c in categories],
        "query_score": qs,
        "key_score": ks,
        "n_as_query": np.bincount(query, minlength=n),
        "n_as_key": np.bincount(key, minlength=n),
    })
    pairs = pd.DataFrame({
        "segment": np.asarray(segment)[query],
        "query_token": query,
        "key_token": key,
        "query": [tokens[i] for i in query],
        "key": [tokens[i] for i in key],
        "query_pos": [CATEGORIES[categories[i]] for i in query],
        "key_pos": [CATEGORIES[categories[i]] for i in key],
        "product": value,
    }).sort_values("product", ascending=False, kind="stable").reset_index(drop=True)
    return {"tokens": tok, "pairs": pairs}
