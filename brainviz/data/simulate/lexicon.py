"""Words: the packaged lexicon (``lexicon.json``), spaCy parse and the per-word table.

Step 1 of the generative model (``docs/simulation.md``): every word gets its POS, content /
function class, dependency role and depth, log frequency, and one lexical-semantic category
from the packaged lexicon ``brainviz/data/simulate/lexicon.json`` (POS-gated, simple suffix
stripping, first match in the lexicon's ``order`` wins).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

LEXICON_FILE = Path(__file__).resolve().parent / "lexicon.json"
# The categories are part of the driver definitions, so they are fixed here; the lexicon file
# must list exactly these (checked when it is loaded).
CATEGORIES = ("people", "body", "place", "motion", "emotion", "object", "time_number", "perception",
              "nature", "mental", "quality")
# Content-word POS whose repetition within the window counts (pronouns and auxiliaries do not).
REPEAT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})


@functools.lru_cache(maxsize=1)
def load_lexicon() -> dict[str, Any]:
    """The packaged lexicon: ``{"order": [...], "pos": {cat: frozenset}, "words": {cat: frozenset}}``.

    Raises
    ------
    ValueError
        When ``lexicon.json`` does not list exactly :data:`CATEGORIES` (naming the file and field).
    """
    raw = json.loads(LEXICON_FILE.read_text(encoding="utf-8"))
    cats = raw.get("categories", {})
    order = list(raw.get("order", []))
    if set(cats) != set(CATEGORIES) or sorted(order) != sorted(CATEGORIES):
        raise ValueError(f"{LEXICON_FILE}: field 'categories' / 'order' must list exactly {sorted(CATEGORIES)}")
    return {
        "order": tuple(order),
        "pos": {c: frozenset(v["pos"]) for c, v in cats.items()},
        "words": {c: frozenset(v["words"]) for c, v in cats.items()},
        "version": raw.get("version"),
    }


def __getattr__(name: str) -> Any:  # lazy module attributes backed by the data file (PEP 562)
    if name == "CATEGORY_LEXICON":
        return load_lexicon()["words"]
    if name == "CATEGORY_POS":
        return load_lexicon()["pos"]
    if name == "CATEGORY_ORDER":
        return load_lexicon()["order"]
    raise AttributeError(name)


_NUMBER_WORD = re.compile(
    r"^(\d+(st|nd|rd|th)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundred|thousand|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|twentieth|thirtieth|fortieth)(-\w+)?$"
)
SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass", "csubj", "csubjpass"})
OBJECT_DEPS = frozenset({"dobj", "obj", "iobj", "pobj", "dative", "attr", "oprd"})
LENGTH_MEAN, LENGTH_SD = 4.5, 2.5  # fixed corpus-free constants so values do not depend on the preset
RARITY_THRESHOLD, RARITY_WIDTH = 11.5, 0.75  # on -ln p (unigram surprisal), nats
MAX_DEPTH = 8.0  # dependency depths are capped here (long chains are parser artefacts)
# fixed constants for the z-scored log frequency (natural log, wordfreq) of content words:
# the mean / s.d. over the content words of the three packaged stories, rounded
LOG_FREQ_MEAN, LOG_FREQ_SD = -8.85, 2.83


def _lookup_forms(w: str) -> list[str]:
    forms = [w]
    if w.endswith("ies") and len(w) > 4:
        forms.append(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        forms.append(w[:-2])
    if w.endswith("s") and len(w) > 3:
        forms.append(w[:-1])
    if w.endswith("ed") and len(w) > 4:
        forms += [w[:-2], w[:-1]]
        if len(w) > 5 and w[-3] == w[-4]:
            forms.append(w[:-3])
    if w.endswith("ing") and len(w) > 5:
        forms += [w[:-3], w[:-3] + "e"]
        if len(w) > 6 and w[-4] == w[-5]:
            forms.append(w[:-4])
    if w.endswith("ly") and len(w) > 4:
        forms.append(w[:-2])
    return forms


def word_category(word: str, pos: str, is_content: bool) -> str:
    """Lexical-semantic category of one word (see :func:`load_lexicon`).

    Function words get ``"function"``; content words not in the lexicon ``"other"``, except
    numbers (``time_number``) and unknown proper nouns (``people``: mostly characters).
    """
    from brainviz.data.features import clean_word

    if not is_content:
        return "function" if pos != "NUM" else "time_number"
    w = clean_word(word).lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    lex = load_lexicon()
    allowed = [cat for cat in lex["order"] if pos in lex["pos"][cat]]
    for cat in allowed:  # the word itself first ("staring" is perception, not "star")
        if w in lex["words"][cat]:
            return cat
    forms = _lookup_forms(w)[1:]
    for cat in allowed:
        if any(f in lex["words"][cat] for f in forms):
            return cat
    if pos == "NUM" or (pos in ("ADJ", "NOUN") and _NUMBER_WORD.match(w)):
        return "time_number"
    if pos == "PROPN" and w and w[0].isalpha():
        return "people"
    return "other"


def parse_words(words: Sequence[str]) -> tuple[list[str], list[str], list[int]]:
    """spaCy POS, dependency label and depth in the dependency tree of each word.

    Uses the same tokens and pipeline as :func:`brainviz.data.features.tag_words`, so the POS
    tags are identical to the ones :func:`~brainviz.data.features.annotate_stimulus` computes.
    """
    from brainviz.data.features import parse_words as parse

    doc, cleaned = parse(words)
    pos, deps, depths = [], [], []
    for tok, c in zip(doc, cleaned):
        depth, node = 0, tok
        while node.head.i != node.i and depth < 500:
            node, depth = node.head, depth + 1
        pos.append(tok.pos_ if c else "PUNCT")
        deps.append(tok.dep_)
        depths.append(depth)
    return pos, deps, depths


def _parse_stories(stimulus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """POS, dependency labels and depths of every stimulus row, parsed story by story."""
    words = stimulus["word"].astype(str).tolist()
    pos = np.empty(len(words), dtype=object)
    deps = np.empty(len(words), dtype=object)
    depths = np.zeros(len(words), dtype=int)
    for _, idx in stimulus.groupby(stimulus["story"].astype(str), sort=False).indices.items():
        p, d, dp = parse_words([words[i] for i in idx])
        pos[idx], deps[idx], depths[idx] = p, d, dp
    return pos, deps, depths


def word_features(stimulus, parse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
    """Per-word table used by the generator: category, role, depth, z-length, rarity, ...

    ``stimulus`` must already carry ``pos, is_content, length, log_freq``
    (:func:`brainviz.data.features.annotate_stimulus`); ``parse`` is the output of
    ``_parse_stories`` (computed here when not given).
    """
    import pandas as pd

    from brainviz.data.features import clean_word

    stim = stimulus
    _, deps, depths = parse if parse is not None else _parse_stories(stim)
    deps = np.asarray(deps).astype(str)
    words = stim["word"].astype(str).tolist()
    pos = stim["pos"].astype(str).to_numpy()
    content = stim["is_content"].to_numpy(dtype=bool)
    cats = [word_category(w, p, c) for w, p, c in zip(words, pos, content)]
    role = np.where(np.isin(deps, list(SUBJECT_DEPS)), "subject",
                    np.where(np.isin(deps, list(OBJECT_DEPS)), "object", np.where(deps == "ROOT", "root", "other")))
    surprisal = -stim["log_freq"].to_numpy(dtype=float)
    rarity = content / (1.0 + np.exp(-(surprisal - RARITY_THRESHOLD) / RARITY_WIDTH))
    forms = np.array([clean_word(w).lower().replace("\u2019", "'") for w in words], dtype=object)
    runs = stim["run"].astype(str).to_numpy()
    return pd.DataFrame({
        "word": words,
        "run": stim["run"].astype(str).to_numpy(),
        "pos": pos,
        "is_content": content,
        "category": cats,
        "dep": deps,
        "role": role,
        "depth": np.asarray(depths, dtype=int),
        "z_length": (stim["length"].to_numpy(dtype=float) - LENGTH_MEAN) / LENGTH_SD,
        "log_freq": stim["log_freq"].to_numpy(dtype=float),
        "rarity": rarity,
        "z_log_freq": (stim["log_freq"].to_numpy(dtype=float) - LOG_FREQ_MEAN) / LOG_FREQ_SD,
        "form": forms,
        "repeat_back": _repeat_back(forms, pos, runs),
    })


def _repeat_back(forms: np.ndarray, pos: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Words back to the previous occurrence of the same form in the same run (0 = none).

    Only nouns, proper nouns, verbs, adjectives and adverbs (:data:`REPEAT_POS`) count.
    """
    out = np.zeros(len(forms), dtype=np.int64)
    last: dict[tuple[str, str], int] = {}
    for i, (f, p, r) in enumerate(zip(forms, pos, runs)):
        if p not in REPEAT_POS or not f:
            continue
        key = (str(r), str(f))
        if key in last:
            out[i] = i - last[key]
        last[key] = i
    return out


def category_coverage(word_table, categories: Sequence[str] = CATEGORIES) -> dict[str, dict[str, dict[str, float]]]:
    """How well each run's category words are covered by the other runs (leave-one-run-out).

    For every run (held out) and category: ``tokens`` (its words of that category),
    ``types`` (distinct forms), and ``token_coverage`` / ``type_coverage``, the share of them
    whose form occurs with the same category in the other runs.

    Parameters
    ----------
    word_table : DataFrame
        The per-word table (:func:`word_features`, or ``ground_truth/word_features.tsv``)
        with ``run``, ``category`` and ``form`` (or ``word``) columns.
    """
    runs = list(dict.fromkeys(word_table["run"].astype(str)))
    if "form" in word_table.columns:
        forms = word_table["form"].astype(str).to_numpy()
    else:
        from brainviz.data.features import clean_word

        forms = np.array([clean_word(w).lower() for w in word_table["word"].astype(str)])
    cats = word_table["category"].astype(str).to_numpy()
    run_of = word_table["run"].astype(str).to_numpy()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        test = run_of == run
        out[run] = {}
        for c in categories:
            held = forms[test & (cats == c)]
            seen = set(forms[~test & (cats == c)])
            types = set(held)
            out[run][c] = {
                "tokens": int(held.size),
                "types": len(types),
                "token_coverage": round(float(np.mean([f in seen for f in held])), 4) if held.size else None,
                "type_coverage": round(float(np.mean([f in seen for f in types])), 4) if types else None,
            }
    return out


def _linguistic_stimulus(stim):
    """Stimulus + ``pos, is_content, length, log_freq`` (annotate_stimulus) and the word table.

    spaCy runs once per story: the POS tags of the same pass (identical to ``tag_words``) are
    handed to ``annotate_stimulus``, which keeps an existing ``pos`` column.
    """
    from brainviz.data.features import annotate_stimulus

    parse = _parse_stories(stim)
    stim = stim.copy()
    stim["pos"] = parse[0]
    stim = annotate_stimulus(stim)
    return stim, word_features(stim, parse)
