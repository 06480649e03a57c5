"""Downstream check of a speech encoder on the embedded data: a word-class probe.

Brain-tuning papers check what tuning did to a speech model's knowledge with downstream tasks.
Offline, the embedded listening experiment provides one: each spoken word's audio (from its
onset, ``window`` seconds, zero outside the recording) goes through the encoder, every hidden
state is mean-pooled over the frames, and a logistic regression tells content from function
words (POS as in Schwartz et al.: ``is_content`` of the stimulus table; class-balanced weights,
scored by balanced accuracy, chance 0.5). It is trained on one
story and tested on the other (leave-one-story-out: no token of the test story is seen), per
layer, next to a baseline that sees only the word's spoken duration — content words are longer,
so a model must beat that to show it encodes more than length. Significance: the test accuracy
against the fitted probe's predictions scored on permuted test labels (``n_permutations``;
p >= 1 / (n_permutations + 1)). Permuting the *training* labels instead has almost no power for
low-dimensional features (a refit on permuted labels gets the sign right half the time).

Real labelled audio tasks (:func:`keyword_probe`, default Speech Commands v0.02 keyword spotting)
are scored the same way from the same pooled features: clips of the task's train split train a
class-balanced logistic regression per layer, its validation split tests it (balanced accuracy,
chance 1 / number of classes), next to a baseline of low-level acoustic bands. The task is
loaded with the optional Hugging Face ``datasets`` library (online, or a local copy saved with
``save_to_disk``), or passed in memory; brainviz never downloads it at import time.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

Progress = Callable[[float, str], None] | None


@dataclasses.dataclass
class ProbeResult:
    """Per layer and test story: accuracy, the duration baseline, chance and p.

    ``table`` columns: ``layer`` (0 = after the stem; ``"duration"`` for the baseline),
    ``test_story``, ``accuracy`` (balanced accuracy), ``chance`` (0.5), ``p``
    (label-permutation test, None without permutations), ``n_test``; ``meta``: model, window,
    counts, task, simulated.
    """

    table: pd.DataFrame
    meta: dict[str, Any]

    def by_layer(self) -> pd.Series:
        """Mean test accuracy over the test stories / splits per layer (baselines, whose
        ``layer`` is a name such as ``"duration"``, excluded)."""
        t = self.table[[not isinstance(v, str) for v in self.table["layer"]]]
        return t.groupby("layer")["accuracy"].mean()


def word_layer_features(encoder, dataset, window: float = 0.6, batch_size: int = 32,
                        progress: Progress = None) -> tuple[np.ndarray, pd.DataFrame]:
    """``(features (n_hidden_states, n_words, H), words)``: each word's audio from its onset,
    ``window`` s, through ``encoder`` (a :class:`~brainviz.models.speech.SpeechEncoder`; one
    chunk per word), every hidden state mean-pooled over frames. ``words`` = the stimulus rows
    of the runs that have audio."""
    from brainviz.data.audio import SAMPLE_RATE, cut_window
    from brainviz.models.speech import dataset_signals

    signals = dataset_signals(dataset)
    stim = dataset.stimulus
    rows = stim[stim["run"].astype(str).isin(list(signals))].reset_index(drop=True)
    n = int(round(window * SAMPLE_RATE))
    clips = np.zeros((len(rows), n), dtype=np.float32)
    for i, (run, onset) in enumerate(zip(rows["run"].astype(str), rows["onset"].astype(float))):
        x, start = signals[run]
        clip = cut_window(x, start, onset, onset + window)[:n]
        clips[i, : len(clip)] = clip
    return _pooled_layer_features(encoder, clips, batch_size, progress, "words"), rows


def _pooled_layer_features(encoder, clips: np.ndarray, batch_size: int = 32, progress: Progress = None,
                           what: str = "clips") -> np.ndarray:
    """``(n_hidden_states, n_clips, H)``: every hidden state of ``encoder`` mean-pooled over the
    frames of each clip (``clips``: (n, samples) float32 at 16 kHz; one chunk per clip)."""
    import torch

    out = []
    encoder.eval()
    with torch.no_grad():
        for b in range(0, len(clips), batch_size):
            x = torch.as_tensor(clips[b: b + batch_size]).unsqueeze(1)  # (batch, 1 chunk, samples)
            out.append(encoder.layer_features(x).float().numpy())
            if progress:
                done = min(len(clips), b + batch_size)
                progress(done / len(clips), f"{what} {done}/{len(clips)}")
    return np.concatenate(out, axis=1)


def _load_encoder(model: str):
    """A :class:`~brainviz.models.speech.SpeechEncoder` (one chunk) from a hub id, a model folder or
    a speech brain-tuning checkpoint folder."""
    from brainviz.models.speech import load_speech_checkpoint, load_speech_encoder

    if (Path(str(model)) / "card.json").is_file():  # a speech brain-tuning checkpoint (CheckpointError otherwise)
        return load_speech_checkpoint(model)[0]
    return load_speech_encoder(model, n_chunks=1)


def _probe_rows(candidates: Sequence[tuple[Any, np.ndarray]], y: np.ndarray, tr: np.ndarray, te: np.ndarray,
                rng: np.random.Generator, n_permutations: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Fit a class-balanced probe on rows ``tr`` of every candidate feature matrix and score it on
    rows ``te``: balanced accuracy, chance (1 / classes in the test labels) and the permutation p
    of the fitted probe's predictions against permuted test labels (no refit)."""
    from sklearn.metrics import balanced_accuracy_score

    chance = 1.0 / len(np.unique(y[te]))  # balanced accuracy
    rows = []
    for layer, x in candidates:
        pred = _fit_predict(x[tr], y[tr], x[te])
        acc = float(balanced_accuracy_score(y[te], pred))
        p = None
        if n_permutations:
            null = [balanced_accuracy_score(rng.permutation(y[te]), pred) for _ in range(n_permutations)]
            p = (1 + sum(v >= acc for v in null)) / (n_permutations + 1)
        rows.append({"layer": layer, **extra, "accuracy": acc, "chance": chance, "p": p, "n_test": int(np.sum(te))})
    return rows


def _fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # classes are unbalanced (about 2 content words for 1 function word): balanced weights and
    # balanced accuracy, so that always answering "content" scores 0.5, not the content share
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced"))
    clf.fit(x_tr, y_tr)
    return clf.predict(x_te)


def word_class_probe(model: str, dataset, *, window: float = 0.6, n_permutations: int = 1000, seed: int = 0,
                     layers: Sequence[int] | None = None, progress: Progress = None) -> ProbeResult:
    """Content- vs function-word probe of a speech model on a listening dataset with audio.

    Parameters
    ----------
    model : str
        A speech model (hub id or local folder) or a speech brain-tuning checkpoint folder.
    dataset : Dataset
        Listening dataset with audio and at least two stories.
    window : float
        Seconds of audio from each word's onset.
    n_permutations : int
        Permutations of the test story's labels against the fitted probe's predictions, per layer
        (0: no test). Words are treated as exchangeable within a story; neighbouring words'
        classes are not independent, so p is approximate.
    seed : int
        Seed of the permutations.
    layers : sequence of int, optional
        Hidden states to probe (default: all).
    progress : callable(fraction, message), optional
    """
    from brainviz.data.dataset import DatasetError

    stim = dataset.stimulus
    stories = list(dict.fromkeys(stim["story"].astype(str))) if "story" in stim else []
    if len(stories) < 2:
        raise DatasetError("the word-class probe trains on one story and tests on another: the dataset needs >= 2 "
                           "stories", file=dataset.path, field="stimulus.story")
    enc = _load_encoder(model)
    if "is_content" not in stim:
        from brainviz.data.features import annotate_stimulus

        dataset = type(dataset)(dataset.meta, annotate_stimulus(stim), dataset.fmri, dataset.meg, path=dataset.path,
                                audio=dataset.audio)
    feats, words = word_layer_features(enc, dataset, window=window, progress=progress)
    y = words["is_content"].astype(bool).to_numpy()
    story = words["story"].astype(str).to_numpy()
    candidates: list[tuple[Any, np.ndarray]] = [(int(k), feats[k]) for k in (range(feats.shape[0]) if layers is None
                                                                               else layers)]
    if "duration" in words:
        candidates.append(("duration", words["duration"].astype(float).to_numpy()[:, None]))
    rng = np.random.default_rng(seed)
    rows = []
    for test in stories:
        rows += _probe_rows(candidates, y, story != test, story == test, rng, n_permutations, {"test_story": test})
    meta = {"model": str(model), "window_s": window, "n_words": int(len(y)), "content_share": float(y.mean()),
            "stories": stories, "n_permutations": n_permutations, "simulated": bool(getattr(dataset, "simulated", False)),
            "task": "content vs function word (POS), leave-one-story-out"}
    return ProbeResult(pd.DataFrame(rows), meta)


# --------------------------------------------------------------------------------------
# Real labelled audio tasks (Speech Commands keyword spotting by default)
# --------------------------------------------------------------------------------------

_DATASETS_HINT = ("keyword_probe loads its task with the Hugging Face `datasets` library: pip install datasets. "
                  "It downloads the task from the Hugging Face Hub, so it needs internet; offline, pass dataset= a "
                  "folder saved with datasets.DatasetDict.save_to_disk or an in-memory mapping {split: {column: list}}.")


def _load_task(dataset: Any, name: str, config: str | None, splits: Sequence[str]) -> tuple[Mapping[str, Any], str]:
    """The task's splits (a mapping split -> rows) and a description of where they came from."""
    from brainviz.data.dataset import DatasetError

    if isinstance(dataset, Mapping):
        return dataset, "in-memory mapping"
    try:
        import datasets as hf_datasets
    except ImportError:
        raise ImportError(_DATASETS_HINT) from None
    if dataset is not None:
        path = Path(dataset)
        if not path.exists():
            raise DatasetError("saved task dataset not found", file=path)
        try:
            data = hf_datasets.load_from_disk(str(path))
        except Exception as exc:  # datasets raises several types on a folder it cannot read
            raise DatasetError(f"not a datasets folder saved with save_to_disk ({type(exc).__name__}: {exc})", file=path) from None
        if not isinstance(data, Mapping):
            raise DatasetError(f"holds one split; save a DatasetDict with the splits {list(splits)}", file=path)
        return data, str(path)
    try:
        data = hf_datasets.load_dataset(name, config)
    except Exception as exc:  # offline, unknown name, gated dataset ...
        raise DatasetError(f"could not load {name!r} ({config}) with datasets.load_dataset: {type(exc).__name__}: {exc}. "
                           + _DATASETS_HINT, field="dataset") from None
    return data, f"Hugging Face datasets: {name} ({config})"


def _column(rows: Any, column: str, split: str, where: str) -> Any:
    from brainviz.data.dataset import DatasetError

    names = list(rows.keys()) if isinstance(rows, Mapping) else list(getattr(rows, "column_names", []) or [])
    if column not in names:
        raise DatasetError(f"split {split!r} has no column {column!r} (columns: {names})", file=where, field=column)
    return rows[column]


def _clip(item: Any, seconds: float, where: str, field: str) -> np.ndarray:
    """One example's audio as ``seconds`` of float32 16 kHz mono (cut or zero-padded)."""
    from brainviz.data.audio import SAMPLE_RATE, _resample
    from brainviz.data.dataset import DatasetError

    if isinstance(item, Mapping) and "array" in item:  # datasets' Audio feature (decoded)
        x, rate = np.asarray(item["array"], dtype=np.float32), int(item.get("sampling_rate", SAMPLE_RATE))
    elif hasattr(item, "get_all_samples"):  # datasets >= 4 decodes to a torchcodec AudioDecoder
        smp = item.get_all_samples()
        x, rate = np.asarray(smp.data, dtype=np.float32), int(smp.sample_rate)
    elif isinstance(item, (np.ndarray, list, tuple)):  # raw samples, taken to be 16 kHz
        x, rate = np.asarray(item, dtype=np.float32), SAMPLE_RATE
    else:
        raise DatasetError(f"cannot read audio from a {type(item).__name__} (expected {{'array', 'sampling_rate'}} or "
                           "samples)", file=where, field=field)
    if x.ndim == 2:  # (channels, samples) or (samples, channels)
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise DatasetError(f"audio must be non-empty finite mono samples, got shape {x.shape}", file=where, field=field)
    if rate != SAMPLE_RATE:
        x = _resample(x, rate)
    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, x.size)] = x[:n]
    return out


def audio_band_features(clips: np.ndarray) -> np.ndarray:
    """Low-level baseline of each clip: log RMS and log energy in the 8 mel-spaced bands of
    :func:`brainviz.features.speech.lowlevel_audio_features` (100 Hz - 7.6 kHz, 25 ms frames).

    Parameters
    ----------
    clips : numpy.ndarray
        ``(n, samples)`` float32 at 16 kHz.

    Returns
    -------
    numpy.ndarray
        ``(n, 9)`` float32.
    """
    from brainviz.features.speech import _band_edges, band_energies

    n_fft = 400
    edges, window = _band_edges(n_fft), np.hanning(n_fft)
    rows = [band_energies(c, n_fft, edges=edges, window=window) for c in np.asarray(clips)]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


def keyword_probe(model: str, dataset: str | os.PathLike | Mapping[str, Any] | None = None, *,
                  name: str = "speech_commands", config: str | None = "v0.02", train_split: str = "train",
                  test_split: str = "validation", audio_column: str = "audio", label_column: str = "label",
                  classes: Sequence[Any] | None = None, max_per_class: int = 50, clip_seconds: float = 1.0,
                  n_permutations: int = 1000, seed: int = 0, layers: Sequence[int] | None = None,
                  source: str | None = None, batch_size: int = 32, progress: Progress = None) -> ProbeResult:
    """Downstream check of a speech model on a real labelled audio task (keyword spotting).

    Every hidden state, mean-pooled over the frames of each clip, feeds a class-balanced logistic
    regression trained on ``train_split`` and tested on ``test_split`` (balanced accuracy, chance
    1 / number of classes, permutation p as in :func:`word_class_probe`), next to a baseline
    ``"bands"`` that sees only the clip's log RMS and 8 mel-band energies
    (:func:`audio_band_features`).

    Parameters
    ----------
    model : str
        A speech model (hub id or local folder) or a speech brain-tuning checkpoint folder.
    dataset : None, path or mapping
        None: ``datasets.load_dataset(name, config)`` (needs ``pip install datasets`` and
        internet, or the Hugging Face cache). A folder: ``datasets.load_from_disk`` of a
        ``DatasetDict`` with the splits. A mapping ``{split: rows}`` where ``rows`` is a
        ``datasets.Dataset`` or a dict of lists with ``audio_column`` and ``label_column``
        (audio items: ``{"array", "sampling_rate"}`` as decoded by ``datasets``, or raw 16 kHz
        samples). Other sample rates are resampled to 16 kHz.
    name, config : str
        Hub dataset and configuration (default Speech Commands v0.02).
    train_split, test_split : str
        Splits to train and test on.
    audio_column, label_column : str
        Columns of the audio and of the class label.
    classes : sequence, optional
        Labels to keep (default: every label of the training split).
    max_per_class : int
        At most this many clips per class and split, drawn with ``seed`` (keeps it small).
    clip_seconds : float
        Clips are cut or zero-padded to this length (Speech Commands clips are <= 1 s).
    n_permutations : int
        Permutations of the test labels (0: no test).
    seed : int
        Seed of the sampling and of the permutations.
    layers : sequence of int, optional
        Hidden states to probe (default: all).
    source : str, optional
        What the data is (kept in ``meta``; start it with "simulated" for simulated clips).
    batch_size : int
        Clips per forward pass.
    progress : callable(fraction, message), optional

    Returns
    -------
    ProbeResult
        ``table``: ``layer`` (int, or ``"bands"``), ``test_split``, ``accuracy``, ``chance``,
        ``p``, ``n_test``; ``meta``: model, task, data source, classes, counts, simulated.

    Raises
    ------
    ImportError
        ``dataset`` is not a mapping and ``datasets`` is not installed (the message says
        ``pip install datasets``).
    DatasetError
        Missing split / column, unreadable audio, fewer than two classes.
    ValueError
        ``max_per_class`` < 1 or ``clip_seconds`` <= 0.
    """
    from brainviz.data.dataset import DatasetError

    if int(max_per_class) < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    if not clip_seconds > 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    data, where = _load_task(dataset, name, config, (train_split, test_split))
    rng = np.random.default_rng(seed)
    picked: dict[str, tuple[Any, np.ndarray, np.ndarray]] = {}
    label_names: list[str] | None = None
    for split in (train_split, test_split):
        if split not in data:
            raise DatasetError(f"no split {split!r} (splits: {list(data.keys())})", file=where, field=split)
        rows = data[split]
        labels = np.asarray(list(_column(rows, label_column, split, where)))
        _column(rows, audio_column, split, where)
        feats = getattr(rows, "features", None)
        if label_names is None and feats is not None and hasattr(feats.get(label_column), "names"):
            label_names = list(feats[label_column].names)
        keep = sorted(set(labels.tolist())) if split == train_split else sorted(picked[train_split][2].tolist())
        if split == train_split and classes is not None:
            want = set(classes)
            if label_names is not None:  # class names given for integer labels
                want |= {label_names.index(c) for c in classes if isinstance(c, str) and c in label_names}
            keep = [c for c in keep if c in want]
        idx = []
        for c in keep:
            hit = np.flatnonzero(labels == c)
            if hit.size > max_per_class:
                hit = np.sort(rng.choice(hit, int(max_per_class), replace=False))
            idx.append(hit)
        idx = np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=int)
        present = np.unique(labels[idx]) if idx.size else np.zeros(0)
        if present.size < 2:
            raise DatasetError(f"split {split!r} has {present.size} of the probed classes; a probe needs >= 2",
                               file=where, field=label_column)
        picked[split] = (rows, idx, present if split == train_split else picked[train_split][2])
    clips, ys = [], []
    for split in (train_split, test_split):
        rows, idx, _ = picked[split]
        labels = np.asarray(list(rows[label_column]))
        audio = rows[audio_column] if isinstance(rows, Mapping) else None
        for i in idx:
            item = audio[int(i)] if audio is not None else rows[int(i)][audio_column]
            clips.append(_clip(item, clip_seconds, where, f"{split}[{int(i)}].{audio_column}"))
            ys.append(labels[int(i)])
    clips_arr = np.stack(clips)
    y = np.asarray(ys)
    n_tr = len(picked[train_split][1])
    tr = np.arange(len(y)) < n_tr
    te = ~tr
    enc = _load_encoder(model)
    feats = _pooled_layer_features(enc, clips_arr, batch_size, progress, "clips")
    candidates: list[tuple[Any, np.ndarray]] = [(int(k), feats[k]) for k in (range(feats.shape[0]) if layers is None
                                                                               else layers)]
    candidates.append(("bands", audio_band_features(clips_arr)))
    table = pd.DataFrame(_probe_rows(candidates, y, tr, te, rng, n_permutations, {"test_split": test_split}))
    class_list = [label_names[int(c)] if label_names is not None else c for c in picked[train_split][2].tolist()]
    src = source or where
    meta = {"model": str(model), "task": f"{name} ({config}) keyword classification" if dataset is None else
            "audio classification", "data": src, "splits": [train_split, test_split], "classes": class_list,
            "n_train": int(n_tr), "n_test": int(te.sum()), "max_per_class": int(max_per_class), "clip_s": float(clip_seconds),
            "n_permutations": n_permutations, "simulated": str(src).lower().startswith("simulated")}
    return ProbeResult(table, meta)
