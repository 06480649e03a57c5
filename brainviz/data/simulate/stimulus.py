"""Stimulus: the packaged stories, runs, RSVP and spoken-word timing, and the TR grid of each run.

Step 0 of the generative model (``docs/simulation.md``, *Experiments*): the reading story is
shown one word every 0.5 s and split at paragraph ends into 4 runs; the listening stories are
spoken (syllable-based durations with jittered pauses) and each is one run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

from brainviz.data.simulate._util import _rng
from brainviz.data.simulate.config import (
    LEAD_IN_TRS, N_READING_RUNS, READING_SOA, STORY_DIR, TAIL_TRS, TRIM_END, TRIM_START,
)


def read_story(name: str) -> tuple[str, list[list[str]]]:
    """``(title, paragraphs)`` of a packaged story; each paragraph a list of words."""
    path = STORY_DIR / f"{name}.txt"
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    title = " ".join(blocks[0].split())
    return title, [b.split() for b in blocks[1:]]


def _story_paragraphs(name: str, max_words: int | None) -> tuple[str, list[list[str]]]:
    """Title + paragraphs; the title is the first 'paragraph' (shown / read first)."""
    title, paragraphs = read_story(name)
    paras = [title.split()] + paragraphs
    if max_words is not None:
        out, n = [], 0
        for p in paras:
            out.append(p)
            n += len(p)
            if n >= max_words:
                break
        paras = out
    return title, paras


def _split_runs(paragraphs: list[list[str]], n_runs: int) -> list[list[list[str]]]:
    """Split paragraphs into ``n_runs`` groups of about equal word count (at paragraph ends)."""
    counts = np.cumsum([len(p) for p in paragraphs])
    total = counts[-1]
    cuts, prev = [], 0
    for k in range(1, n_runs):
        target = total * k / n_runs
        cut = int(np.argmin(np.abs(counts - target))) + 1
        cut = min(max(cut, prev + 1), len(paragraphs) - (n_runs - k))
        cuts.append(cut)
        prev = cut
    bounds = [0, *cuts, len(paragraphs)]
    return [paragraphs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _syllables(word: str) -> int:
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 1
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(n, 1)


def _speech_timing(paragraphs: list[list[str]], rng: np.random.Generator, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and durations (s) of spoken words: syllable-based durations, pauses at punctuation."""
    onsets, durations = [], []
    t = start
    for pi, para in enumerate(paragraphs):
        for wi, word in enumerate(para):
            syl = _syllables(word)
            dur = (0.09 + 0.15 * syl) * float(np.exp(rng.normal(0.0, 0.12)))
            onsets.append(t)
            durations.append(dur)
            stripped = word.rstrip("\"'”’)")
            if wi == len(para) - 1:
                gap = 0.75 if pi > 0 else 0.9  # paragraph end (a longer pause after the title)
            elif stripped.endswith((".", "!", "?")):
                gap = 0.40
            elif stripped.endswith((",", ";", ":", "-", "—")):
                gap = 0.18
            else:
                gap = 0.03
            t += dur + gap * float(np.exp(rng.normal(0.0, 0.25)))
    return np.asarray(onsets), np.asarray(durations)


@dataclasses.dataclass
class _RunLayout:
    name: str
    n_trs: int
    rows: np.ndarray  # stimulus rows of the run


def _reading_stimulus(max_words: int | None, tr: float):
    import pandas as pd

    title, paras = _story_paragraphs("reading", max_words)
    lead_in, tail = LEAD_IN_TRS["reading"] * tr, TAIL_TRS * tr
    frames, layouts, row = [], [], 0
    for k, group in enumerate(_split_runs(paras, N_READING_RUNS)):
        words = [w for p in group for w in p]
        n = len(words)
        onsets = lead_in + READING_SOA * np.arange(n)
        name = f"run-{k + 1}"
        frames.append(pd.DataFrame({"onset": onsets, "duration": READING_SOA, "word": words, "run": name, "story": "reading"}))
        n_trs = int(math.ceil((lead_in + n * READING_SOA + tail) / tr - 1e-9))
        layouts.append(_RunLayout(name, n_trs, np.arange(row, row + n)))
        row += n
    return pd.concat(frames, ignore_index=True), layouts, {"reading": title}


def _listening_stimulus(max_words: int | None, tr: float, seed: int):
    import pandas as pd

    lead_in, tail = LEAD_IN_TRS["listening"] * tr, TAIL_TRS * tr
    frames, layouts, titles, row = [], [], {}, 0
    for name in ("listening_1", "listening_2"):
        title, paras = _story_paragraphs(name, max_words)
        titles[name] = title
        words = [w for p in paras for w in p]
        onsets, durations = _speech_timing(paras, _rng(seed, "listening", "timing", name), lead_in)
        # millisecond precision, as parsed back from the stimulus table (so the ground-truth
        # drivers use exactly the onsets the preprocessing windows will see)
        onsets = np.array([float(f"{v:.3f}") for v in onsets])
        durations = np.array([float(f"{v:.3f}") for v in durations])
        frames.append(pd.DataFrame({"onset": onsets, "duration": durations, "word": words, "run": name, "story": name}))
        n_trs = int(math.ceil((onsets[-1] + durations[-1] + tail) / tr - 1e-9))
        layouts.append(_RunLayout(name, n_trs, np.arange(row, row + len(words))))
        row += len(words)
    return pd.concat(frames, ignore_index=True), layouts, titles


# TR grid of the runs


def _kept_mask(layouts: Sequence[_RunLayout]) -> np.ndarray:
    parts = []
    for lay in layouts:
        m = np.zeros(lay.n_trs, dtype=bool)
        m[TRIM_START: lay.n_trs - TRIM_END] = True
        parts.append(m)
    return np.concatenate(parts)


def _run_of_tr(layouts: Sequence[_RunLayout]) -> np.ndarray:
    return np.concatenate([np.full(lay.n_trs, k) for k, lay in enumerate(layouts)])


def _detrend_kept(x: np.ndarray, run_of_tr: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Rows of ``x`` at kept TRs, linearly detrended within run (float64)."""
    x = np.asarray(x)
    out = []
    for k in np.unique(run_of_tr):
        rows = np.flatnonzero((run_of_tr == k) & kept)
        block = np.asarray(x[rows], dtype=float)
        t = np.linspace(-1.0, 1.0, len(rows))
        t = (t - t.mean()) / np.sqrt(((t - t.mean()) ** 2).sum())
        block -= block.mean(axis=0)
        block -= np.outer(t, t @ block)
        out.append(block)
    return np.concatenate(out, axis=0)
