"""Features on the TR grid of a participant: language-model layers, low-level bands, trend.

Everything is computed on the *full* TR grid of every run (so a delayed feature of a kept TR
sees the stimulus of trimmed TRs), delayed within run, then the rows of the preprocessed
examples (``FMRIExamples.tr_index``) are taken. Word states and window states are cached in
:class:`brainviz.cache.Cache` per (model weights, layers, stimulus, settings); the TR-level
matrices are cheap products of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from brainviz.features.config import FeatureConfig
from brainviz.features.lowlevel import LOWLEVEL_COLUMNS, trend_features, word_lowlevel
from brainviz.features.resample import delay_by_run, lanczos_matrix

Progress = Callable[[str], None] | None


def model_key(name: str) -> str:
    """Content key of a model: its resolved location and the hashes of its config and weights."""
    from brainviz._io import content_hash
    from brainviz.cache import cached_file_hash
    from brainviz.models.encoder import resolve_model

    where = resolve_model(name)
    folder = Path(where)
    if not folder.is_dir():
        return content_hash("hub", where)
    if (folder / "encoder").is_dir():
        folder = folder / "encoder"
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin", ".txt") and p.is_file())
    return content_hash("folder", [(p.name, cached_file_hash(p)) for p in files])


def _stimulus_key(dataset) -> str:
    from brainviz._io import content_hash

    stim = dataset.stimulus
    return content_hash("stimulus", stim["word"].astype(str).tolist(), stim["run"].astype(str).tolist(),
                        np.round(stim["onset"].to_numpy(dtype=float), 6))


_MODELS: dict[str, tuple] = {}


def _load(config: FeatureConfig):
    if config.model not in _MODELS:
        from brainviz.models.encoder import load_encoder

        _MODELS.clear()
        _MODELS[config.model] = load_encoder(config.model, device=config.device)
    return _MODELS[config.model]


def n_hidden_states(config: FeatureConfig) -> int:
    """Number of hidden-state outputs of the configured model (embeddings + layers)."""
    from brainviz.models.encoder import resolve_model

    where = resolve_model(config.model)
    folder = Path(where)
    if (folder / "encoder").is_dir():
        folder = folder / "encoder"
    if (folder / "config.json").is_file():
        import json

        n = json.loads((folder / "config.json").read_text()).get("num_hidden_layers")
        if isinstance(n, int):
            return n + 1
    if not folder.exists():
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(where).num_hidden_layers) + 1
    model, _ = _load(config)
    return int(model.config.num_hidden_layers) + 1


def selected_layers(config: FeatureConfig) -> list[int]:
    """Layer indices the config asks for (all hidden states when ``layers`` is empty)."""
    n = n_hidden_states(config)
    layers = list(config.layers) or list(range(n))
    bad = [x for x in layers if x >= n]
    if bad:
        raise ValueError(f"layers {bad}: model {config.model!r} has hidden states 0..{n - 1} (0 = embeddings)")
    return layers


def word_state_matrix(dataset, config: FeatureConfig, cache=None, progress: Progress = None) -> tuple[list[int], np.ndarray]:
    """Cached word states ``(layers, float32 (n_layers, n_words, hidden))`` of the dataset's stimulus."""
    from brainviz._io import content_hash
    from brainviz.cache import Cache
    from brainviz.features.lm import word_states

    layers = selected_layers(config)
    key = content_hash("word-states", model_key(config.model), layers, _stimulus_key(dataset), config.context,
                       config.word_piece, config.max_length)

    def compute():
        model, tok = _load(config)
        if progress:
            progress(f"language-model states of {len(dataset.stimulus)} words ({len(layers)} layers, context {config.context} words)")
        states = word_states(model, tok, dataset.stimulus["word"].astype(str).tolist(),
                             dataset.stimulus["run"].astype(str).to_numpy(), context=config.context, layers=layers,
                             word_piece=config.word_piece, batch_size=config.batch_size,
                             max_length=config.max_length, device=config.device)
        return {"states": states}

    if cache is False:
        return layers, compute()["states"]
    return layers, (cache or Cache()).arrays("word-states", key, compute)["states"]


def _full_grid(rec):
    """Run label and mid-TR time of every TR of a recording."""
    return rec.run_labels.astype(str), rec.times + rec.tr / 2.0


def word_values_on_trs(dataset, participant: str, values: np.ndarray, *, window: int = 3) -> np.ndarray:
    """Lanczos sums of per-word ``values`` (n_words, k) at every TR of the participant (full grid)."""
    rec = dataset.fmri_of(participant)
    tr_runs, tr_times = _full_grid(rec)
    stim = dataset.stimulus
    w_runs = stim["run"].astype(str).to_numpy()
    onsets = stim["onset"].to_numpy(dtype=float)
    v = np.asarray(values, dtype=np.float32).reshape(len(stim), -1)
    out = np.zeros((len(tr_runs), v.shape[1]), dtype=np.float32)
    for r in dict.fromkeys(tr_runs.tolist()):
        ti = np.flatnonzero(tr_runs == r)
        wi = np.flatnonzero(w_runs == r)
        if wi.size == 0 or ti.size < 2:
            continue
        m = lanczos_matrix(onsets[wi], tr_times[ti], window=window).astype(np.float32)
        out[ti] = m @ v[wi]
    return out


def _window_matrix(dataset, participant: str, config: FeatureConfig, cache=None, progress: Progress = None):
    from brainviz._io import content_hash
    from brainviz.cache import Cache
    from brainviz.data.preprocess import word_windows
    from brainviz.features.lm import window_states

    rec = dataset.fmri_of(participant)
    runs, _ = _full_grid(rec)
    windows = word_windows(dataset, runs, rec.times, config.window)
    layers = selected_layers(config)
    key = content_hash("window-states", model_key(config.model), layers, _stimulus_key(dataset),
                       [w.tolist() for w in windows], config.window_pool, config.max_length)
    words = dataset.stimulus["word"].astype(str).to_numpy()

    def compute():
        model, tok = _load(config)
        if progress:
            progress(f"language-model states of {len(windows)} windows of {config.window} s ({len(layers)} layers, {config.window_pool} pooling)")
        return {"states": window_states(model, tok, [words[w].tolist() for w in windows], pool=config.window_pool,
                                        layers=layers, batch_size=max(1, config.batch_size // 2),
                                        max_length=config.max_length, device=config.device)}

    if cache is False:
        return layers, compute()["states"]
    return layers, (cache or Cache()).arrays("window-states", key, compute)["states"]


def lm_features(dataset, examples, config: FeatureConfig | None = None, *, cache=None,
                progress: Progress = None) -> dict[int, np.ndarray]:
    """Language-model features of every requested layer at the examples' TRs.

    Parameters
    ----------
    dataset : Dataset
    examples : FMRIExamples
        Preprocessed examples of one participant (their ``tr_index`` selects rows).
    config : FeatureConfig
    cache : Cache, False or None
        ``None`` = the default cache folder; ``False`` = no caching.

    Returns
    -------
    dict layer -> float32 array (n_examples, hidden x n_delays)
    """
    config = config or FeatureConfig()
    rec = dataset.fmri_of(examples.participant)
    runs, _ = _full_grid(rec)
    delays = config.effective_delays
    out = {}
    if config.pooling == "words":
        layers, states = word_state_matrix(dataset, config, cache, progress)
        for i, layer in enumerate(layers):
            full = word_values_on_trs(dataset, examples.participant, states[i], window=config.lanczos_window)
            out[layer] = delay_by_run(full, runs, delays)[examples.tr_index]
    else:
        layers, states = _window_matrix(dataset, examples.participant, config, cache, progress)
        for i, layer in enumerate(layers):
            out[layer] = delay_by_run(states[i], runs, delays)[examples.tr_index]
    return out


def lowlevel_word_values(dataset, cache=None) -> np.ndarray:
    """Cached (n_words, 4) low-level values per word (:data:`LOWLEVEL_COLUMNS`)."""
    from brainviz._io import content_hash
    from brainviz.cache import Cache

    key = content_hash("lowlevel-words", _stimulus_key(dataset), list(LOWLEVEL_COLUMNS))
    if cache is False:
        return word_lowlevel(dataset.stimulus)
    return (cache or Cache()).arrays("lowlevel-words", key, lambda: {"v": word_lowlevel(dataset.stimulus)})["v"]


def baseline_features(dataset, examples, config: FeatureConfig | None = None, *, cache=None) -> dict[str, np.ndarray]:
    """Baseline bands at the examples' TRs.

    Returns ``{"word_rate": (n, D), "lowlevel": (n, 4 D), "trend": (n, 4)}``: word rate alone,
    all four low-level features (word rate, letters, unigram surprisal, content words), each
    Lanczos-summed and delayed with the LM features' delays (``(1, 2, 3, 4)`` when the LM uses
    window pooling), and the undelayed time-in-run trend.
    """
    config = config or FeatureConfig()
    rec = dataset.fmri_of(examples.participant)
    runs, _ = _full_grid(rec)
    delays = config.delays if config.delays is not None else (1, 2, 3, 4)
    full = word_values_on_trs(dataset, examples.participant, lowlevel_word_values(dataset, cache),
                              window=config.lanczos_window)
    low = delay_by_run(full, runs, tuple(int(d) for d in delays))[examples.tr_index]
    n_d = len(delays)
    # delay_by_run lays out [delay0: f0..f3, delay1: f0..f3, ...]: word rate is column 0 of each delay block
    rate = low[:, [d * 4 for d in range(n_d)]]
    return {"word_rate": rate, "lowlevel": low, "trend": trend_features(examples.runs, examples.tr_index)}
