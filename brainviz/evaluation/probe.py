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

With network access, real tasks (e.g. Speech Commands, SLURP intents) can be loaded with the
``datasets`` library and scored the same way from :func:`word_layer_features`-style pooled
features; brainviz does not download them at run time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

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
        """Mean test accuracy over the test stories per layer (the duration baseline excluded)."""
        t = self.table[self.table["layer"] != "duration"]
        return t.groupby("layer")["accuracy"].mean()


def word_layer_features(encoder, dataset, window: float = 0.6, batch_size: int = 32,
                        progress: Progress = None) -> tuple[np.ndarray, pd.DataFrame]:
    """``(features (n_hidden_states, n_words, H), words)``: each word's audio from its onset,
    ``window`` s, through ``encoder`` (a :class:`~brainviz.models.speech.SpeechEncoder`; one
    chunk per word), every hidden state mean-pooled over frames. ``words`` = the stimulus rows
    of the runs that have audio."""
    import torch

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
    out = []
    encoder.eval()
    with torch.no_grad():
        for b in range(0, len(clips), batch_size):
            x = torch.as_tensor(clips[b: b + batch_size]).unsqueeze(1)  # (batch, 1 chunk, samples)
            out.append(encoder.layer_features(x).float().numpy())
            if progress:
                done = min(len(clips), b + batch_size)
                progress(done / len(clips), f"words {done}/{len(clips)}")
    return np.concatenate(out, axis=1), rows


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
    from sklearn.metrics import balanced_accuracy_score

    from brainviz.data.dataset import DatasetError
    from brainviz.models.speech import load_speech_checkpoint, load_speech_encoder

    stim = dataset.stimulus
    stories = list(dict.fromkeys(stim["story"].astype(str))) if "story" in stim else []
    if len(stories) < 2:
        raise DatasetError("the word-class probe trains on one story and tests on another: the dataset needs >= 2 "
                           "stories", file=dataset.path, field="stimulus.story")
    if (Path(str(model)) / "card.json").is_file():  # a speech brain-tuning checkpoint (CheckpointError otherwise)
        enc = load_speech_checkpoint(model)[0]
    else:
        enc = load_speech_encoder(model, n_chunks=1)
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
        tr, te = story != test, story == test
        chance = 0.5  # balanced accuracy
        for layer, x in candidates:
            pred = _fit_predict(x[tr], y[tr], x[te])
            acc = float(balanced_accuracy_score(y[te], pred))
            p = None
            if n_permutations:  # the fitted probe's predictions against permuted test labels (no refit)
                null = [balanced_accuracy_score(rng.permutation(y[te]), pred) for _ in range(n_permutations)]
                p = (1 + sum(v >= acc for v in null)) / (n_permutations + 1)
            rows.append({"layer": layer, "test_story": test, "accuracy": acc, "chance": chance, "p": p,
                         "n_test": int(te.sum())})
    meta = {"model": str(model), "window_s": window, "n_words": int(len(y)), "content_share": float(y.mean()),
            "stories": stories, "n_permutations": n_permutations, "simulated": bool(getattr(dataset, "simulated", False)),
            "task": "content vs function word (POS), leave-one-story-out"}
    return ProbeResult(pd.DataFrame(rows), meta)
