"""Artificial neurons (ANs): one per (layer, head, query/key dimension) of a BERT-family encoder.

Liu et al. (2023) define an AN as one dimension ``i`` of the query/key vectors of one head of
one layer, so a model has ``n_layers x n_heads x head_dim`` ANs (BERT-base 9,216; the packaged
MiniLM 6 x 12 x 32 = 2,304). AN ``i``'s activation at fMRI time point ``j`` is the mean of the
element-wise products ``q_a[i] * k_b[i]`` over every pair of tokens ``(a, b)`` of ``T_j``, the
tokens whose word starts in TR ``j``; it is computed here in closed form,

    mean_{a, b in T_j} q_a[i] k_b[i] = (mean_{a in T_j} q_a[i]) * (mean_{b in T_j} k_b[i]),

which is one sparse matrix product for all ANs and TRs at once. TRs without tokens are 0.
Each AN time course is then convolved with SPM's canonical HRF (nilearn's implementation).

Pipeline: :func:`build_transcript` (story words -> TR of each word -> word pieces -> segments
of at most 512 tokens that end at sentence ends) -> :func:`extract_qk` (forward hooks on each
layer's ``attention.self.query`` / ``.key``) -> :func:`an_activations` -> :func:`convolve_hrf`.
:func:`compute_an_timecourses` runs all of it.

AN numbering: ``an = (layer * n_heads + head) * head_dim + dim``, all 0-based.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any, Sequence

import numpy as np

from brainviz.data.dataset import Dataset
from brainviz.errors import BrainvizError


class CouplingError(BrainvizError, ValueError):
    """Invalid input to the coupling analysis; the message names what is wrong."""


QUERY_SUFFIX = "attention.self.query"
KEY_SUFFIX = "attention.self.key"
# A word ends a sentence when it ends with . ! ? or an ellipsis, possibly followed by closing
# quotes or brackets ("dark." / "him?" / "over...'").
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")


# --------------------------------------------------------------------------------------
# Story -> TR grid
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class StoryGrid:
    """The fMRI time grid of one story: its runs (in order), the TRs kept of each, and the TR.

    The story's TRs are the kept TRs of its runs concatenated in run order: of run ``r``,
    ``n_trs_per_run[r]`` TRs starting at the run's TR ``first_trs[r]``; ``offsets[r]`` is the
    index of run ``r``'s first kept TR in that concatenation. With trimming (the default of
    :func:`story_grid`), the kept TRs run from the TR of the story's first word to the TR of
    its last word, as in Liu et al. (volumes before the onset and after the end of the story
    are discarded).
    """

    story: str
    runs: list[str]
    n_trs_per_run: list[int]
    starts: list[float]
    tr: float
    first_trs: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.first_trs:
            self.first_trs = [0] * len(self.runs)

    @property
    def n_trs(self) -> int:
        return int(sum(self.n_trs_per_run))

    @property
    def offsets(self) -> list[int]:
        return [int(x) for x in np.concatenate([[0], np.cumsum(self.n_trs_per_run)[:-1]])]

    def times(self) -> np.ndarray:
        """Acquisition time (s) of each kept TR on its run's clock."""
        return np.concatenate([s + self.tr * (f + np.arange(n))
                               for s, f, n in zip(self.starts, self.first_trs, self.n_trs_per_run)])


def _story_rows(dataset: Dataset, story: str):
    stories = dataset.stories
    if story not in stories:
        raise CouplingError(f"story {story!r} is not in dataset {dataset.name!r}; its stories are {stories}")
    stim = dataset.stimulus
    return stim.index[stim["story"].astype(str) == story]


def _story_onsets(dataset: Dataset, story: str) -> np.ndarray:
    """Onsets of the story's words; a clear error when a word has none."""
    import pandas as pd

    rows = _story_rows(dataset, story)
    onsets = pd.to_numeric(dataset.stimulus.loc[rows, "onset"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(onsets)
    if bad.any():
        first = [int(r) + 1 for r in rows[bad][:5]]
        raise CouplingError(
            f"story {story!r}: {int(bad.sum())} word(s) without timings (no onset) in stimulus rows {first}"
            f"{'...' if bad.sum() > 5 else ''}; every word needs an onset to be placed in a TR"
        )
    return onsets


def story_grid(dataset: Dataset, story: str, trim: bool = True) -> StoryGrid:
    """TR grid of ``story`` from the dataset's fMRI recordings.

    ``trim``: keep only the TRs from the story's first word to its last word in each run.

    Raises
    ------
    CouplingError
        The story is not in the stimulus, a word has no onset, the dataset has no fMRI,
        participants disagree on the TR or on the TRs of the story's runs, or a run has no fMRI.
    """
    rows = _story_rows(dataset, story)
    onsets = _story_onsets(dataset, story)
    if not dataset.fmri:
        raise CouplingError(f"dataset {dataset.name!r} has no fMRI recordings; AN-BN coupling needs fMRI")
    tr = dataset.tr
    if tr is None:
        raise CouplingError(f"dataset {dataset.name!r}: participants have different TRs; coupling needs one TR")
    run_of = dataset.stimulus.loc[rows, "run"].astype(str).to_numpy()
    runs = list(dict.fromkeys(run_of))
    n_trs, starts, firsts = [], [], []
    for run in runs:
        found = {}
        for pid, rec in dataset.fmri.items():
            for r in rec.runs:
                if r.name == run:
                    found[pid] = (r.n_trs, r.start)
        if not found:
            raise CouplingError(f"story {story!r}: run {run!r} has no fMRI in any participant")
        if len(set(found.values())) > 1:
            raise CouplingError(f"story {story!r}: participants disagree on the TRs of run {run!r}: {found}")
        n, start = next(iter(found.values()))
        first, last = 0, int(n) - 1
        if trim:
            j = np.floor((onsets[run_of == run] - start) / float(tr) + 1e-9).astype(np.int64)
            j = j[(j >= 0) & (j < n)]
            if j.size == 0:
                raise CouplingError(f"story {story!r}: no word of run {run!r} falls within its {n} TRs")
            first, last = int(j.min()), int(j.max())
        n_trs.append(last - first + 1)
        starts.append(float(start))
        firsts.append(first)
    return StoryGrid(story, runs, n_trs, starts, float(tr), firsts)


def story_words(dataset: Dataset, story: str, grid: StoryGrid | None = None) -> tuple[list[str], np.ndarray]:
    """Words of ``story`` in order and the story-TR index in which each word starts.

    Words starting outside the kept TRs get TR ``-1`` (they are tokenised and feed the model's
    context but belong to no time point).

    Raises
    ------
    CouplingError
        A word of the story has no (finite) onset.
    """
    grid = grid or story_grid(dataset, story)
    rows = _story_rows(dataset, story)
    onsets = _story_onsets(dataset, story)
    sub = dataset.stimulus.loc[rows]
    word_tr = np.full(len(sub), -1, dtype=np.int64)
    run_of = sub["run"].astype(str).to_numpy()
    for run, n, start, first, off in zip(grid.runs, grid.n_trs_per_run, grid.starts, grid.first_trs, grid.offsets):
        sel = run_of == run
        j = np.floor((onsets[sel] - start) / grid.tr + 1e-9).astype(np.int64) - first
        j[(j < 0) | (j >= n)] = -1 - off  # becomes -1 after the offset below
        word_tr[sel] = j + off
    words = [str(w) for w in sub["word"].tolist()]
    return words, word_tr


# --------------------------------------------------------------------------------------
# Tokenisation and segments
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Transcript:
    """A story tokenised into model segments.

    Token arrays are concatenated over segments (``segment`` gives each token's segment).

    Attributes
    ----------
    words : list of str
        The story's words in order.
    word_tr : int array (n_words,)
        Story-TR index of each word (-1: outside the fMRI runs).
    input_ids : int array (n_tokens,)
    tokens : list of str
        Token strings (word pieces, ``[CLS]``, ``[SEP]``).
    word_index : int array (n_tokens,)
        Word of each token (-1 for special tokens).
    special : bool array (n_tokens,)
    segment : int array (n_tokens,)
    segment_bounds : list of (start, stop)
        Token ranges of the segments.
    token_tr : int array (n_tokens,)
        TR of each token's word (-1 for special tokens and words outside the runs).
    """

    story: str
    grid: StoryGrid
    words: list[str]
    word_tr: np.ndarray
    input_ids: np.ndarray
    tokens: list[str]
    word_index: np.ndarray
    special: np.ndarray
    segment: np.ndarray
    segment_bounds: list[tuple[int, int]]

    @property
    def token_tr(self) -> np.ndarray:
        out = np.full(len(self.input_ids), -1, dtype=np.int64)
        ok = self.word_index >= 0
        out[ok] = self.word_tr[self.word_index[ok]]
        return out

    @property
    def n_tokens(self) -> int:
        return int(len(self.input_ids))

    @property
    def n_segments(self) -> int:
        return len(self.segment_bounds)

    def segment_lengths(self) -> list[int]:
        return [b - a for a, b in self.segment_bounds]


def sentence_ends(words: Sequence[str]) -> np.ndarray:
    """True on words that end a sentence (final . ! ? or ellipsis, maybe then quotes)."""
    return np.array([bool(_SENTENCE_END.search(str(w).strip())) for w in words], dtype=bool)


def pack_segments(n_pieces: Sequence[int], ends: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Greedy word ranges of at most ``budget`` word pieces that end at sentence ends.

    Whole sentences are added to a segment while they fit; a sentence longer than ``budget``
    on its own is cut at word boundaries. Returns ``[(first_word, stop_word), ...]``.
    """
    n_pieces = np.asarray(n_pieces, dtype=np.int64)
    n = len(n_pieces)
    if (n_pieces > budget).any():
        w = int(np.flatnonzero(n_pieces > budget)[0])
        raise CouplingError(f"word {w} has {int(n_pieces[w])} word pieces, more than a segment holds ({budget})")
    # sentences as word ranges
    stops = list(np.flatnonzero(ends) + 1)
    if not stops or stops[-1] != n:
        stops.append(n)
    sentences, start = [], 0
    for stop in stops:
        if stop > start:
            sentences.append((start, int(stop)))
        start = int(stop)
    # cut over-long sentences at word boundaries
    pieces: list[tuple[int, int]] = []
    for a, b in sentences:
        if n_pieces[a:b].sum() <= budget:
            pieces.append((a, b))
            continue
        s, total = a, 0
        for w in range(a, b):
            if total + n_pieces[w] > budget:
                pieces.append((s, w))
                s, total = w, 0
            total += n_pieces[w]
        pieces.append((s, b))
    segments: list[tuple[int, int]] = []
    cur_start, cur_len = None, 0
    for a, b in pieces:
        size = int(n_pieces[a:b].sum())
        if cur_start is not None and cur_len + size > budget:
            segments.append((cur_start, a))
            cur_start, cur_len = None, 0
        if cur_start is None:
            cur_start = a
        cur_len += size
    if cur_start is not None:
        segments.append((cur_start, n))
    return segments


def build_transcript(
    dataset: Dataset,
    story: str,
    tokenizer: Any,
    max_tokens: int = 512,
    shuffle_seed: int | None = None,
    trim: bool = True,
) -> Transcript:
    """Tokenise ``story`` into segments of at most ``max_tokens`` tokens (special tokens included).

    Parameters
    ----------
    shuffle_seed : int, optional
        Null control: shuffle the order of the story's words (onsets stay in place, so every
        TR gets a random set of the story's words) with this seed before tokenising.
    """
    grid = story_grid(dataset, story, trim)
    words, word_tr = story_words(dataset, story, grid)
    if shuffle_seed is not None:
        perm = np.random.default_rng(shuffle_seed).permutation(len(words))
        words = [words[i] for i in perm]
    prefix = [tokenizer.cls_token_id] if getattr(tokenizer, "cls_token_id", None) is not None else (
        [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else [])
    suffix = [tokenizer.sep_token_id] if getattr(tokenizer, "sep_token_id", None) is not None else (
        [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else [])
    budget = int(max_tokens) - len(prefix) - len(suffix)
    if budget < 1:
        raise CouplingError(f"max_tokens={max_tokens} leaves no room for words")
    pieces = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    n_pieces = [len(p) for p in pieces]
    if sum(n_pieces) == 0:
        raise CouplingError(f"story {story!r}: the tokenizer produced no tokens from its {len(words)} words")
    segs = pack_segments(n_pieces, sentence_ends(words), budget)
    ids: list[int] = []
    widx: list[int] = []
    special: list[bool] = []
    seg_id: list[int] = []
    bounds = []
    for s, (a, b) in enumerate(segs):
        start = len(ids)
        body = [(t, w) for w in range(a, b) for t in pieces[w]]
        for t in prefix:
            ids.append(t); widx.append(-1); special.append(True)
        for t, w in body:
            ids.append(t); widx.append(w); special.append(False)
        for t in suffix:
            ids.append(t); widx.append(-1); special.append(True)
        seg_id.extend([s] * (len(ids) - start))
        bounds.append((start, len(ids)))
    input_ids = np.asarray(ids, dtype=np.int64)
    return Transcript(
        story=story,
        grid=grid,
        words=list(words),
        word_tr=word_tr,
        input_ids=input_ids,
        tokens=list(tokenizer.convert_ids_to_tokens(input_ids.tolist())),
        word_index=np.asarray(widx, dtype=np.int64),
        special=np.asarray(special, dtype=bool),
        segment=np.asarray(seg_id, dtype=np.int64),
        segment_bounds=bounds,
    )


# --------------------------------------------------------------------------------------
# Queries and keys
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class AttentionShape:
    n_layers: int
    n_heads: int
    head_dim: int

    @property
    def n_ans(self) -> int:
        return self.n_layers * self.n_heads * self.head_dim


def attention_modules(model: Any) -> list[tuple[Any, Any]]:
    """``[(query_linear, key_linear), ...]`` per layer, in layer order.

    Raises
    ------
    CouplingError
        The model has no BERT-style ``attention.self.query`` / ``attention.self.key`` modules.
    """
    queries, keys = {}, {}
    for name, mod in model.named_modules():
        if name.endswith(QUERY_SUFFIX):
            queries[name[: -len(QUERY_SUFFIX)]] = mod
        elif name.endswith(KEY_SUFFIX):
            keys[name[: -len(KEY_SUFFIX)]] = mod
    prefixes = [p for p in queries if p in keys]
    if not prefixes:
        raise CouplingError(
            f"model {type(model).__name__} has no attention query/key modules (BERT-style "
            f"'...{QUERY_SUFFIX}' and '...{KEY_SUFFIX}' layers); artificial neurons are "
            "dimensions of attention queries/keys, so coupling needs a BERT-family encoder"
        )

    def layer_number(prefix: str) -> tuple:
        nums = re.findall(r"\d+", prefix)
        return tuple(int(x) for x in nums) if nums else (0,)

    prefixes.sort(key=layer_number)
    return [(queries[p], keys[p]) for p in prefixes]


def attention_shape(model: Any) -> AttentionShape:
    """Layers, heads and head dimension of a BERT-family model."""
    mods = attention_modules(model)
    cfg = getattr(model, "config", None)
    n_heads = getattr(cfg, "num_attention_heads", None)
    q = mods[0][0]
    out = getattr(q, "out_features", None)
    if n_heads is None or out is None or out % n_heads:
        raise CouplingError(
            f"model {type(model).__name__}: cannot tell heads x head dimension of the attention "
            f"queries (num_attention_heads={n_heads}, query width={out})"
        )
    return AttentionShape(len(mods), int(n_heads), int(out // n_heads))


def extract_qk(model: Any, transcript: Transcript, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Queries and keys of every token: two float32 arrays ``(n_tokens, n_ans)``.

    Each segment is run through the model on its own (attention stays within a segment); the
    outputs of every layer's query and key ``Linear`` are recorded with forward hooks.
    Column ``an`` is (layer, head, dim) in the order of the module docstring.
    """
    import torch

    mods = attention_modules(model)
    shape = attention_shape(model)
    if device is None:
        try:
            device = str(next(model.parameters()).device)
        except StopIteration:
            device = "cpu"
    captured: dict[tuple[int, str], Any] = {}
    handles = []

    def hook(layer: int, kind: str):
        def fn(_module, _inputs, output):
            captured[(layer, kind)] = output.detach()
        return fn

    for i, (qm, km) in enumerate(mods):
        handles.append(qm.register_forward_hook(hook(i, "q")))
        handles.append(km.register_forward_hook(hook(i, "k")))
    n_tok = transcript.n_tokens
    q_all = np.empty((n_tok, shape.n_ans), dtype=np.float32)
    k_all = np.empty((n_tok, shape.n_ans), dtype=np.float32)
    width = shape.n_heads * shape.head_dim
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for a, b in transcript.segment_bounds:
                captured.clear()
                ids = torch.as_tensor(transcript.input_ids[a:b], device=device)[None, :]
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
                for layer in range(shape.n_layers):
                    q_all[a:b, layer * width:(layer + 1) * width] = captured[(layer, "q")][0].float().cpu().numpy()
                    k_all[a:b, layer * width:(layer + 1) * width] = captured[(layer, "k")][0].float().cpu().numpy()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return q_all, k_all


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def tr_assignment(token_tr: np.ndarray, n_trs: int):
    """Sparse ``(n_trs, n_tokens)`` matrix averaging the tokens of each TR (rows of empty TRs are 0)."""
    from scipy import sparse

    token_tr = np.asarray(token_tr, dtype=np.int64)
    ok = (token_tr >= 0) & (token_tr < n_trs)
    counts = np.bincount(token_tr[ok], minlength=n_trs)
    cols = np.flatnonzero(ok)
    rows = token_tr[ok]
    vals = 1.0 / counts[rows]
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_trs, len(token_tr)))


def an_activations(q: np.ndarray, k: np.ndarray, token_tr: np.ndarray, n_trs: int) -> np.ndarray:
    """AN activations ``(n_trs, n_ans)`` in closed form: mean_a q_a * mean_b k_b over each TR's tokens.

    Tokens with ``token_tr`` outside ``[0, n_trs)`` are ignored; TRs without tokens are 0.
    """
    q = np.asarray(q)
    k = np.asarray(k)
    if q.shape != k.shape or q.ndim != 2:
        raise CouplingError(f"queries {q.shape} and keys {k.shape} must be equal-shaped (n_tokens, n_ans) arrays")
    if len(token_tr) != q.shape[0]:
        raise CouplingError(f"{len(token_tr)} token TRs for {q.shape[0]} tokens")
    dtype = np.result_type(q.dtype, k.dtype, np.float32)  # float32 stays float32 (means of a few tokens)
    m = tr_assignment(token_tr, n_trs).astype(dtype)
    mq = np.asarray(m @ q.astype(dtype, copy=False))
    mk = np.asarray(m @ k.astype(dtype, copy=False))
    return mq * mk


def an_activations_naive(q: np.ndarray, k: np.ndarray, token_tr: np.ndarray, n_trs: int) -> np.ndarray:
    """The definition, literally: for every TR ``j`` and AN ``i`` the mean of the ``m x m`` matrix
    ``EP = outer(q[T_j, i], k[T_j, i])`` (Liu et al. 2023, Fig. 2). Slow; for tests and benchmarks."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    token_tr = np.asarray(token_tr)
    out = np.zeros((n_trs, q.shape[1]))
    for j in range(n_trs):
        idx = np.flatnonzero(token_tr == j)
        if idx.size == 0:
            continue
        qj, kj = q[idx], k[idx]
        for i in range(q.shape[1]):
            out[j, i] = np.outer(qj[:, i], kj[:, i]).mean()
    return out


def an_activations_pairwise(q: np.ndarray, k: np.ndarray, token_tr: np.ndarray, n_trs: int) -> np.ndarray:
    """Naive, vectorised over ANs: per TR, the ``m x m x n_ans`` product tensor and its mean."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    token_tr = np.asarray(token_tr)
    out = np.zeros((n_trs, q.shape[1]))
    for j in range(n_trs):
        idx = np.flatnonzero(token_tr == j)
        if idx.size:
            out[j] = (q[idx][:, None, :] * k[idx][None, :, :]).mean(axis=(0, 1))
    return out


def hrf_kernel(tr: float, oversampling: int = 16) -> np.ndarray:
    """SPM's canonical HRF (nilearn's ``spm_hrf``) sampled every ``tr / oversampling`` s."""
    from nilearn.glm.first_level import spm_hrf

    return np.asarray(spm_hrf(float(tr), oversampling=int(oversampling)), dtype=np.float64)


def convolve_hrf(x: np.ndarray, tr: float, oversampling: int = 16) -> np.ndarray:
    """Convolve time courses sampled every ``tr`` (axis 0) with SPM's canonical HRF.

    Value ``x[j]`` is held over ``[j tr, (j + 1) tr)`` (a block of one TR; with
    ``oversampling=1`` an impulse at ``j tr``), convolved with the HRF at ``tr / oversampling``
    resolution and read back at the TR onsets. This equals nilearn's
    ``compute_regressor(([j tr], [tr], [x_j]), 'spm', frame_times, oversampling, min_onset=0)``.
    """
    from scipy.signal import lfilter

    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    os_ = int(oversampling)
    if os_ < 1:
        raise CouplingError(f"oversampling must be >= 1, got {oversampling}")
    h = hrf_kernel(tr, os_)
    hi = np.repeat(x, os_, axis=0)
    y = lfilter(h, [1.0], hi, axis=0)[::os_]
    return y[:, 0] if squeeze else y


# --------------------------------------------------------------------------------------
# All together
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ANTimecourses:
    """AN time courses of one story.

    Attributes
    ----------
    activations : float32 (n_trs, n_ans)
        Raw activations (before HRF convolution).
    timecourses : float32 (n_trs, n_ans)
        HRF-convolved activations (what is coupled to BNs).
    shape : AttentionShape
    transcript : Transcript
    tokens_per_tr : int array (n_trs,)
    """

    activations: np.ndarray
    timecourses: np.ndarray
    shape: AttentionShape
    transcript: Transcript
    tokens_per_tr: np.ndarray
    q: np.ndarray | None = None
    k: np.ndarray | None = None


def an_index(shape: AttentionShape) -> dict[str, np.ndarray]:
    """Layer, head and dim of every AN (0-based), as int arrays of length ``n_ans``."""
    layer, head, dim = np.unravel_index(np.arange(shape.n_ans), (shape.n_layers, shape.n_heads, shape.head_dim))
    return {"layer": layer.astype(np.int64), "head": head.astype(np.int64), "dim": dim.astype(np.int64)}


def an_number(shape: AttentionShape, layer: int, head: int, dim: int) -> int:
    """AN index of (layer, head, dim), 0-based."""
    for v, n, what in ((layer, shape.n_layers, "layer"), (head, shape.n_heads, "head"), (dim, shape.head_dim, "dim")):
        if not 0 <= int(v) < n:
            raise CouplingError(f"{what} {v} out of range [0, {n})")
    return int((int(layer) * shape.n_heads + int(head)) * shape.head_dim + int(dim))


def compute_an_timecourses(
    dataset: Dataset,
    story: str,
    model: Any,
    tokenizer: Any,
    *,
    max_tokens: int = 512,
    hrf_oversampling: int = 16,
    include_special: bool = False,
    shuffle_seed: int | None = None,
    keep_qk: bool = False,
    trim: bool = True,
) -> ANTimecourses:
    """AN time courses of ``story``: tokenise, run the model, average per TR, convolve with the HRF.

    Parameters
    ----------
    include_special : bool
        Also count ``[CLS]`` / ``[SEP]`` in the TR of the segment's first / last word. Off by
        default: special tokens are not stimulus and have no timing.
    shuffle_seed : int, optional
        Shuffle the story's words (null control), see :func:`build_transcript`.
    keep_qk : bool
        Keep the per-token queries and keys on the result (needed for POS tags).
    trim : bool
        Keep only the TRs from the story's first to its last word (see :func:`story_grid`).
    """
    attention_modules(model)  # clear error before any work
    shape = attention_shape(model)
    limit = int(getattr(getattr(model, "config", None), "max_position_embeddings", max_tokens) or max_tokens)
    transcript = build_transcript(dataset, story, tokenizer, min(int(max_tokens), limit), shuffle_seed, trim)
    q, k = extract_qk(model, transcript)
    token_tr = transcript.token_tr
    if include_special:
        for s, (a, b) in enumerate(transcript.segment_bounds):
            words = token_tr[a:b][~transcript.special[a:b]]
            valid = words[words >= 0]
            if valid.size:
                seg_special = np.flatnonzero(transcript.special[a:b]) + a
                for t in seg_special:
                    token_tr[t] = valid[0] if t - a < (b - a) / 2 else valid[-1]
    n_trs = transcript.grid.n_trs
    n_outside = int(((transcript.word_tr < 0)).sum())
    if n_outside:
        warnings.warn(
            f"story {story!r}: {n_outside} word(s) start outside the fMRI runs and belong to no TR",
            stacklevel=2,
        )
    act = an_activations(q, k, token_tr, n_trs)
    # convolve run by run so that the HRF never leaks across runs
    tc = np.empty_like(act)
    for off, n in zip(transcript.grid.offsets, transcript.grid.n_trs_per_run):
        tc[off:off + n] = convolve_hrf(act[off:off + n], transcript.grid.tr, hrf_oversampling)
    counts = np.bincount(token_tr[(token_tr >= 0) & (token_tr < n_trs)], minlength=n_trs)
    return ANTimecourses(
        activations=act.astype(np.float32),
        timecourses=tc.astype(np.float32),
        shape=shape,
        transcript=transcript,
        tokens_per_tr=counts,
        q=q if keep_qk else None,
        k=k if keep_qk else None,
    )
