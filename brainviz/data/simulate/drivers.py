"""Drivers and haemodynamics: what the planted signal is a function of.

Step 2-3 of the generative model (``docs/simulation.md``). At time ``t`` the words with onset
in ``[t - window, t)`` count, weighted by recency ``r = exp(-(t - onset) / recency_tau)``.
Two components:

readable
    Linear in word-level features that pretrained token representations encode linearly:
    four *semantic* dimensions (``sem_*``; each word's value is a fixed weight of its
    lexicon category, :data:`SEMANTIC_DIMS`), content-word length and log frequency, and
    (listening) the word rate. Each is a recency-weighted *sum* over the window, so after
    the HRF it is a linear function of word-level features (what encoding models fit).
brain-specific
    Nonlinear functions of the same window: mean syntactic depth (ratio), a transitive clause
    (interaction), within-window repetition and semantic coherence (comparisons between
    words), rare and long words (thresholds). Each is made exactly orthogonal to a linear
    lexical basis -- the readable drivers plus recency-weighted counts of words, content
    words and every lexicon category -- over the analysed TRs, by subtracting its
    least-squares projection (one coefficient matrix per experiment, saved in the ground
    truth). They stay exact functions of the window's words (a model can learn them) but
    are not a linear function of word-level lexical features.

Listening adds the drivers its planted functional networks follow (component ``network``):
word-class and discourse composition of the last few seconds of speech -- sentence ends,
the share of proper nouns, the share of words spoken inside quotation marks -- computed
with a short window (:data:`NETWORK_WINDOW`, :data:`NETWORK_TAU`); plus the readable
``word_rate`` and ``log_frequency``. These are quantities that attention query-key products
of the packaged MiniLM were measured to carry in both stories (``docs/simulation.md``).
(The raw category presences of version 2.0 are still available by name.)

Neural drivers on a 0.25 s grid are convolved with nilearn's SPM HRF and scaled to unit
variance over the kept TRs (20 / 15 trim, per-run linear detrend).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Sequence

import numpy as np

from brainviz.data.simulate.config import GRID_DT
from brainviz.data.simulate.lexicon import CATEGORIES, MAX_DEPTH
from brainviz.data.simulate.stimulus import _detrend_kept, _kept_mask, _run_of_tr

READABLE, SPECIFIC = "readable", "specific"

# Word-level semantic space of the readable component: each dimension gives every lexicon
# category a fixed weight (categories not listed, "other" and function words: 0).
SEMANTIC_DIMS: dict[str, dict[str, float]] = {
    "sem_social": {"people": 1.0, "emotion": 0.6, "mental": 0.4, "body": 0.3},
    "sem_concrete": {"object": 1.0, "nature": 0.8, "body": 0.7, "place": 0.6},
    "sem_action": {"motion": 1.0, "perception": 0.6, "place": 0.3},
    "sem_abstract": {"mental": 1.0, "time_number": 0.8, "quality": 0.6, "emotion": 0.3},
}
LONG_WORD_LENGTH, LONG_WORD_WIDTH = 7.0, 1.0  # letters; sigmoid((length - 7) / 1)
# word-level nonlinear responses to lexical frequency (z-scored log frequency, frequent = high):
# a threshold for rare words and a bell around the middle of the frequency range
RARE_WORDS_Z, RARE_WORDS_WIDTH = -1.0, 0.3  # sigmoid((RARE_WORDS_Z - z) / width)
MID_FREQUENCY_WIDTH = 0.5  # exp(-z^2 / (2 width^2))

# (name, component, kind, description)
READABLE_DRIVERS: tuple[tuple[str, str, str, str], ...] = (
    *((d, READABLE, "linear", "sum over the window of recency x the word's semantic weight "
       + ", ".join(f"{c} {w}" for c, w in SEMANTIC_DIMS[d].items())) for d in SEMANTIC_DIMS),
    ("word_length", READABLE, "linear", "sum over content words of recency x z-scored length ((letters - 4.5) / 2.5)"),
    ("log_frequency", READABLE, "linear", "sum over content words of recency x z-scored log frequency ((ln p + 8.85) / 2.83)"),
)
LISTENING_READABLE = (("word_rate", READABLE, "linear", "recency-weighted word count / recency_tau (words per second)"),)
SPECIFIC_DRIVERS: tuple[tuple[str, str, str, str], ...] = (
    ("rare_words", SPECIFIC, "word nonlinearity",
     f"sum over content words of recency x sigmoid(({RARE_WORDS_Z:g} - z log frequency) / {RARE_WORDS_WIDTH:g}): "
     "a response to rare words only (thresholded surprisal)"),
    ("mid_frequency", SPECIFIC, "word nonlinearity",
     f"sum over content words of recency x exp(-(z log frequency)^2 / (2 x {MID_FREQUENCY_WIDTH:g}^2)): "
     "a response peaking at words of middling frequency"),
    ("syntactic_depth", SPECIFIC, "ratio", "recency-weighted mean depth in the dependency tree, capped at 8"),
    ("subject_object", SPECIFIC, "interaction", "(max recency x subject) * (max recency x object): a transitive clause"),
    ("repetition", SPECIFIC, "comparison",
     "max of recency x [the word's form (noun, verb, adjective, adverb) already occurred earlier in the window]"),
    ("semantic_coherence", SPECIFIC, "comparison",
     "recency-weighted share of the window's content words in the category of its latest content word"),
    ("rare_word", SPECIFIC, "threshold", "max of recency x thresholded unigram surprisal sigmoid((-ln p - 11.5) / 0.75)"),
    ("longest_word", SPECIFIC, "threshold", "max over content words of recency x sigmoid((letters - 7) / 1)"),
)
# Listening networks whose time course is a category: the raw presence of that category
# (max over the window of recency x [category]); not used by the language regions.
NETWORK, NETWORK_CATEGORIES = "network", ("people", "emotion", "place", "motion", "time_number", "body")
# Word-derived drivers of the listening networks: composition of the last few seconds of
# speech (short window, fast recency), which the packaged MiniLM's attention query-key
# products carry in both stories (measured before planting, see docs/simulation.md).
NETWORK_WINDOW, NETWORK_TAU = 3.0, 1.5  # s
NETWORK_WORD_DRIVERS: tuple[tuple[str, str, str, str], ...] = (
    ("sentence_end", NETWORK, "max",
     f"presence of a sentence end (word ending in . ! ? before closing quotes): max over the last {NETWORK_WINDOW:g} s "
     f"of exp(-lag / {NETWORK_TAU:g} s) x [sentence end]"),
    ("propn_share", NETWORK, "share",
     f"share of proper nouns among the words of the last {NETWORK_WINDOW:g} s (recency exp(-lag / {NETWORK_TAU:g} s)), "
     "minus the run's share (0 when no word is in the window)"),
    ("dialogue_share", NETWORK, "share",
     f"share of words spoken inside quotation marks (direct speech) among the words of the last {NETWORK_WINDOW:g} s "
     f"(recency exp(-lag / {NETWORK_TAU:g} s)), minus the run's share (0 when no word is in the window)"),
)
_SHORT = {"sentence_end": "sent_end", "propn_share": "propn", "dialogue_share": "dialogue"}


LEXICAL_BASIS = ["sum_words", "sum_content", *(f"sum_{c}" for c in CATEGORIES)]


def driver_specs(experiment: str, network_drivers: Sequence[str] = ()) -> list[tuple[str, str, str, str]]:
    """``(name, component, kind, description)`` of every driver of ``experiment``.

    Readable first, then brain-specific, then (listening) the category presences named in
    ``network_drivers`` that planted networks follow.
    """
    readable = list(READABLE_DRIVERS) + (list(LISTENING_READABLE) if experiment == "listening" else [])
    network = [(c, NETWORK, "max", f"presence of a word of category {c!r}: max over the window of recency x [category]")
               for c in network_drivers if c in NETWORK_CATEGORIES]
    network += [spec for spec in NETWORK_WORD_DRIVERS if spec[0] in network_drivers]
    return readable + list(SPECIFIC_DRIVERS) + network


_SENT_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")
_QUOTES = "\"\u201c\u201d"


def _dialogue(words: Sequence[str], runs: Sequence[str]) -> np.ndarray:
    """1 for words spoken inside quotation marks (the quote marks' own words included), per run."""
    out = np.zeros(len(words))
    inside, prev_run = False, None
    for i, (w, run) in enumerate(zip(words, runs)):
        if run != prev_run:
            inside, prev_run = False, run
        w = str(w)
        opens = w[:1] in _QUOTES
        if opens:
            inside = True
        out[i] = float(inside)
        core = w.rstrip(".,;:!?)\u2026")
        closes = w[-1:] in _QUOTES or core[-1:] in _QUOTES
        if closes and (not opens or len(w) > 1 and sum(w.count(q) for q in _QUOTES) >= 2):
            inside = False
    return out


def _word_arrays(wf) -> dict[str, np.ndarray]:
    """Per-word arrays the drivers are computed from (one entry per attribute)."""
    cat = wf["category"].to_numpy()
    content = wf["is_content"].to_numpy(dtype=float)
    out = {f"cat_{c}": (cat == c).astype(float) for c in CATEGORIES}
    out["cat_code"] = np.array([CATEGORIES.index(c) if c in CATEGORIES else -1 for c in cat], dtype=np.int64)
    for dim, weights in SEMANTIC_DIMS.items():
        out[dim] = sum(w * (cat == c) for c, w in weights.items()).astype(float)
    length = wf["z_length"].to_numpy(dtype=float) * 2.5 + 4.5
    out.update({
        "content": content,
        "zlen_content": content * wf["z_length"].to_numpy(dtype=float),
        "zfreq_content": content * wf["z_log_freq"].to_numpy(dtype=float),
        "long_word": content / (1.0 + np.exp(-(length - LONG_WORD_LENGTH) / LONG_WORD_WIDTH)),
        "rarity": wf["rarity"].to_numpy(dtype=float),
        "rare_words": content / (1.0 + np.exp(-(RARE_WORDS_Z - wf["z_log_freq"].to_numpy(dtype=float)) / RARE_WORDS_WIDTH)),
        "mid_frequency": content * np.exp(-0.5 * (wf["z_log_freq"].to_numpy(dtype=float) / MID_FREQUENCY_WIDTH) ** 2),
        "depth": np.minimum(wf["depth"].to_numpy(dtype=float), MAX_DEPTH),
        "subject": (wf["role"].to_numpy() == "subject").astype(float),
        "object": (wf["role"].to_numpy() == "object").astype(float),
        "repeat_back": wf["repeat_back"].to_numpy(dtype=np.int64),
    })
    words = wf["word"].astype(str).to_numpy()
    out["sent_end"] = np.array([bool(_SENT_END.search(w.strip())) for w in words], dtype=float)
    out["propn"] = (wf["pos"].astype(str).to_numpy() == "PROPN").astype(float)
    out["dialogue"] = _dialogue(words, wf["run"].astype(str).to_numpy() if "run" in wf else [""] * len(words))
    return out


def neural_drivers(
    times: np.ndarray, onsets: np.ndarray, arrays: dict[str, np.ndarray], names: Sequence[str],
    window: float, tau: float, orthogonalization: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Neural drivers (len(times) x len(names)) from the words of one run.

    At time ``t`` the words with onset in ``[t - window, t)`` count, weighted by
    ``exp(-(t - onset) / tau)``; with no word in the window every driver is 0.

    Parameters
    ----------
    times : array
        Seconds from the run start.
    onsets : array
        Onsets (s) of the run's words, sorted.
    arrays : dict
        Per-word arrays of the run's words (``_word_arrays`` of the word table, restricted to
        the run).
    names : sequence of str
        Drivers to compute (see :func:`driver_specs`).
    window, tau : float
        Window length and recency time constant (s). The networks' composition drivers
        (``sentence_end``, ``propn_share``, ``dialogue_share``) always use
        :data:`NETWORK_WINDOW` / :data:`NETWORK_TAU`; their shares are relative to the share
        over the words in ``arrays`` (one run).
    orthogonalization : mapping, optional
        ``ground_truth.json -> orthogonalization`` (``readable``, ``specific``,
        ``coefficients``): subtract the readable drivers' projection from the brain-specific
        ones, as the simulator does. Without it the raw nonlinear values are returned.
    """
    times = np.asarray(times, dtype=float)
    onsets = np.asarray(onsets, dtype=float)
    short = [j for j, n in enumerate(names) if n in _SHORT]
    if short and (window, tau) != (NETWORK_WINDOW, NETWORK_TAU):
        # the networks' composition drivers use their own short window
        out = np.zeros((len(times), len(names)))
        rest = [j for j in range(len(names)) if j not in short]
        if rest:
            out[:, rest] = neural_drivers(times, onsets, arrays, [names[j] for j in rest], window, tau, orthogonalization)
        out[:, short] = neural_drivers(times, onsets, arrays, [names[j] for j in short], NETWORK_WINDOW, NETWORK_TAU)
        return out
    lo = np.searchsorted(onsets, times - window, side="left")
    hi = np.searchsorted(onsets, times, side="left")
    width = int((hi - lo).max(initial=0))
    out = np.zeros((len(times), len(names)))
    if width == 0:
        return out
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = idx < hi[:, None]
    idx = np.where(valid, idx, 0)
    lag = times[:, None] - onsets[idx]
    r = np.where(valid, np.exp(-lag / tau), 0.0)
    rsum = r.sum(axis=1)
    safe = np.where(rsum > 0, rsum, 1.0)

    def wmax(a: np.ndarray) -> np.ndarray:
        return (r * a[idx]).max(axis=1)

    def wsum(a: np.ndarray) -> np.ndarray:
        return (r * a[idx]).sum(axis=1)

    cache: dict[str, np.ndarray] = {}

    def presence(c: str) -> np.ndarray:
        if c not in cache:
            cache[c] = wmax(arrays[f"cat_{c}"])
        return cache[c]

    for j, name in enumerate(names):
        if name in CATEGORIES:
            v = presence(name)
        elif name in SEMANTIC_DIMS:
            v = wsum(arrays[name])
        elif name == "word_length":
            v = wsum(arrays["zlen_content"])
        elif name == "log_frequency":
            v = wsum(arrays["zfreq_content"])
        elif name in ("rare_words", "mid_frequency"):
            v = wsum(arrays[name])
        elif name == "rare_word":
            v = wmax(arrays["rarity"])
        elif name == "longest_word":
            v = wmax(arrays["long_word"])
        elif name == "syntactic_depth":
            v = wsum(arrays["depth"]) / safe
        elif name == "subject_object":
            v = wmax(arrays["subject"]) * wmax(arrays["object"])
        elif name == "word_rate":
            v = rsum / tau
        elif name == "sentence_end":
            v = wmax(arrays["sent_end"])
        elif name in ("propn_share", "dialogue_share"):
            a = arrays[_SHORT[name]]
            base = float(a.mean()) if a.size else 0.0
            v = np.where(rsum > 0, wsum(a) / safe - base, 0.0)
        elif name == "semantic_coherence":
            v = _coherence(idx, valid, r, arrays)
        elif name.startswith("sum_"):  # linear lexical basis of the orthogonalization
            key = name[4:]
            v = rsum if key == "words" else wsum(arrays["content"] if key == "content" else arrays[f"cat_{key}"])
        elif name == "repetition":
            back = arrays["repeat_back"]
            n = len(onsets)
            prev_onset = np.where(back > 0, onsets[np.clip(np.arange(n) - back, 0, None)], -np.inf)
            inside = prev_onset[idx] >= (times - window)[:, None]
            v = (r * inside).max(axis=1)
        else:  # pragma: no cover - programming error
            raise KeyError(name)
        out[:, j] = v
    if orthogonalization is not None:
        basis = list(orthogonalization["basis"])
        extra = [b for b in basis if b not in names]
        full = np.concatenate([out, neural_drivers(times, onsets, arrays, extra, window, tau)], axis=1) if extra else out
        out = orthogonalize(full, list(names) + extra, orthogonalization)[:, : len(names)]
    return out


def _coherence(idx: np.ndarray, valid: np.ndarray, r: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Recency-weighted share of the window's content words in the category of its latest content word."""
    code = arrays["cat_code"][idx]  # -1 = function / other
    content = valid & (code >= 0)
    pos = np.where(content, np.arange(idx.shape[1])[None, :], -1)
    last = pos.max(axis=1)
    has = last >= 0
    last_code = np.where(has, code[np.arange(len(idx)), np.maximum(last, 0)], -2)
    w = r * content
    same = (w * (code == last_code[:, None])).sum(axis=1)
    tot = w.sum(axis=1)
    return np.where(tot > 0, same / np.where(tot > 0, tot, 1.0), 0.0)


def orthogonalize(values: np.ndarray, names: Sequence[str], orthogonalization: Mapping[str, Any]) -> np.ndarray:
    """Subtract ``basis @ coefficients`` from the brain-specific columns of ``values``.

    ``values`` must have a column for every name of ``orthogonalization["basis"]`` and
    ``orthogonalization["specific"]``.
    """
    names = list(names)
    basis = [names.index(n) for n in orthogonalization["basis"]]
    specific = [names.index(n) for n in orthogonalization["specific"]]
    coefs = np.asarray(orthogonalization["coefficients"], dtype=float)
    out = np.array(values, dtype=float, copy=True)
    out[:, specific] -= out[:, basis] @ coefs
    return out


@functools.lru_cache(maxsize=4)
def _hrf(dt: float) -> np.ndarray:
    from nilearn.glm.first_level.hemodynamic_models import spm_hrf

    return np.asarray(spm_hrf(dt, oversampling=1, time_length=32.0), dtype=float)


def _build_drivers(stim, wf, layouts, tr: float, names: Sequence[str], components: Sequence[str], config):
    """BOLD drivers, neural drivers at TR times, scales and the orthogonalization.

    Returns
    -------
    bold : (TRs, drivers) unit variance over the kept, detrended TRs
    neural_tr : (TRs, drivers) pre-HRF drivers at TR onsets (after orthogonalization)
    scales : (drivers,) the s.d. each BOLD column was divided by
    orth : dict with ``basis``, ``specific`` (names), ``coefficients`` (basis x specific) and
        ``nonlinear_share`` (variance share of each raw specific driver left after the projection)
    """
    arrays = _word_arrays(wf)
    onsets_all = stim["onset"].to_numpy(dtype=float)
    comp = np.asarray(components)
    ridx, sidx = np.flatnonzero(comp == READABLE), np.flatnonzero(comp == SPECIFIC)
    # the linear lexical basis the brain-specific drivers are made orthogonal to: the readable
    # drivers plus recency-weighted counts of words, content words and each category
    basis = [names[i] for i in ridx] + LEXICAL_BASIS
    all_names = list(names) + LEXICAL_BASIS
    h = _hrf(GRID_DT)
    step = int(round(tr / GRID_DT))
    bold_parts, neural_tr_parts = [], []
    for lay in layouts:
        rows = lay.rows
        arr = {k: v[rows] for k, v in arrays.items()}
        onsets = onsets_all[rows]
        n_grid = lay.n_trs * step
        grid = GRID_DT * np.arange(n_grid)
        neural = neural_drivers(grid, onsets, arr, all_names, config.window, config.recency_tau)
        bold = np.stack([np.convolve(neural[:, j], h)[:n_grid] for j in range(len(all_names))], axis=1) * GRID_DT
        bold_parts.append(bold[::step][: lay.n_trs])
        tr_times = tr * np.arange(lay.n_trs)
        neural_tr_parts.append(neural_drivers(tr_times, onsets, arr, all_names, config.window, config.recency_tau))
    bold = np.concatenate(bold_parts)
    neural_tr = np.concatenate(neural_tr_parts)
    kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
    # brain-specific drivers: remove their least-squares projection on the basis (over the
    # kept, detrended TRs; convolution is linear, so the same coefficients apply to the neural
    # drivers and the BOLD drivers stay exactly HRF * neural)
    xk = _detrend_kept(bold, run_of_tr, kept)
    bidx = [all_names.index(b) for b in basis]
    coefs = np.linalg.lstsq(xk[:, bidx], xk[:, sidx], rcond=None)[0]
    orth = {"basis": basis, "specific": [names[i] for i in sidx], "coefficients": coefs}
    raw_sd = xk[:, sidx].std(axis=0)
    bold = orthogonalize(bold, all_names, orth)[:, : len(names)]
    neural_tr = orthogonalize(neural_tr, all_names, orth)[:, : len(names)]
    sd = _detrend_kept(bold, run_of_tr, kept).std(axis=0)
    if np.any(sd < 1e-12):
        bad = [n for n, s in zip(names, sd) if s < 1e-12]
        raise RuntimeError(f"drivers {bad} do not vary over the kept TRs")
    orth["nonlinear_share"] = (sd[sidx] / np.where(raw_sd > 0, raw_sd, 1.0)) ** 2
    return bold / sd, neural_tr, sd, orth


def _control_neural(rng: np.random.Generator, n: int, tau: float) -> np.ndarray:
    """Loudness envelope of a background soundtrack on the neural grid: exp of a smooth AR(1) process.

    Random (seeded) and not a function of the words; ``tau`` (s) sets how slowly it changes.
    """
    rho = float(np.exp(-GRID_DT / max(tau, GRID_DT)))
    e = rng.standard_normal(n + 200) * np.sqrt(1.0 - rho ** 2)
    x = np.empty_like(e)
    x[0] = e[0]
    for i in range(1, len(e)):
        x[i] = rho * x[i - 1] + e[i]
    return np.exp(0.5 * x[200:])


def _network_timecourses(specs, names: Sequence[str], drivers: np.ndarray, neural: np.ndarray, layouts, tr: float,
                         config) -> tuple[np.ndarray, np.ndarray]:
    """BOLD (unit variance over the kept, detrended TRs) and neural time courses of the listening networks.

    A coupled network follows its driver column; a control network (``role == "control"``)
    follows a random soundtrack envelope (:func:`_control_neural`, stream keyed by the seed and
    the network's name and run), convolved with the same HRF and scaled the same way.
    """
    from brainviz.data.simulate._util import _rng

    kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
    h = _hrf(GRID_DT)
    step = int(round(tr / GRID_DT))
    bold = np.zeros((drivers.shape[0], len(specs)))
    neur = np.zeros((drivers.shape[0], len(specs)))
    for j, spec in enumerate(specs):
        if getattr(spec, "role", "coupled") != "control":
            bold[:, j] = drivers[:, list(names).index(spec.driver)]
            neur[:, j] = neural[:, list(names).index(spec.driver)]
            continue
        b_parts, n_parts = [], []
        for lay in layouts:
            n_grid = lay.n_trs * step
            x = _control_neural(_rng(config.seed, "listening", "control-network", spec.name, lay.name), n_grid,
                                spec.control_tau)
            b_parts.append((np.convolve(x, h)[:n_grid] * GRID_DT)[::step][: lay.n_trs])
            n_parts.append(x[::step][: lay.n_trs])
        b, nr = np.concatenate(b_parts), np.concatenate(n_parts)
        sd = float(_detrend_kept(b[:, None], run_of_tr, kept).std())
        bold[:, j], neur[:, j] = b / sd, nr / sd
    return bold, neur
