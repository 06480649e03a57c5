"""Speech features at the TRs: every layer of a speech encoder, and low-level acoustic bands.

For each kept TR ``t`` of a participant (same preprocessing as text and as ``train``), the
audio of ``[t - C * TR, t)`` is cut into ``C`` TR-long chunks (default 5). Each chunk goes
through the encoder on its own and every hidden state is mean-pooled over the chunk's frames,
so chunk ``k`` is the TR that lies ``C - k`` TRs before ``t``: pooling within a TR is a boxcar
down-sampling of the frame rate to the TR, and the ``C`` chunks are FIR delays 1..C (the
text pipeline's Lanczos resampling + ``--delays 1 2 3 4`` play the same part). The result of
one layer is ``(n_TRs, C * H)``.

Low-level bands (:func:`lowlevel_audio_features`), per chunk: log RMS envelope, log energy in
8 mel-spaced bands (100 Hz - 7.6 kHz) and the number of word onsets (word rate, from the
stimulus table). They are what residual alignment (:mod:`brainviz.evaluation.speech`)
regresses out of a model's features.

Examples
--------
>>> from brainviz.features.speech import speech_layer_features               # doctest: +SKIP
>>> feats = speech_layer_features("/models/wav2vec2-base", dataset, ["sub-01"])   # doctest: +SKIP
>>> feats.layers.shape   # (n_layers + 1, n_examples, 5 * 768)                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

SAMPLE_RATE = 16000
N_BANDS = 8
LOWLEVEL_NAMES = ("log_rms",) + tuple(f"log_band{k}" for k in range(N_BANDS)) + ("word_onsets",)

Progress = Callable[[float, str], None] | None


@dataclasses.dataclass
class SpeechFeatures:
    """Features of the distinct examples (sequences) of some participants.

    ``layers``: float32 (n_hidden_states, n_seq, C * H), 0 = after the stem / embeddings;
    ``corpus``: the :class:`~brainviz.tuning.data.Corpus` (per participant: ``seq`` of each
    kept TR, its targets, runs and ``tr_index``).
    """

    layers: np.ndarray | None
    corpus: Any
    model: str

    def of(self, participant: str, layer: int) -> np.ndarray:
        """``(n_examples, C * H)`` features of one participant's kept TRs at one layer."""
        return self.layers[layer][self.corpus.fmri[participant].seq]


def audio_corpus(dataset, participants: Sequence[str], preprocess=None, n_chunks: int = 5, units=None):
    """Audio windows + preprocessed targets (see :func:`brainviz.tuning.speech.build_audio_corpus`)."""
    from brainviz.data.preprocess import PreprocessConfig
    from brainviz.tuning.speech import build_audio_corpus

    return build_audio_corpus(dataset, list(participants), preprocess or PreprocessConfig(), int(n_chunks), units=units)


def speech_layer_features(model, dataset, participants: Sequence[str], preprocess=None, n_chunks: int = 5,
                          batch_size: int = 8, units=None, device: str = "cpu", progress: Progress = None,
                          corpus=None) -> SpeechFeatures:
    """Pooled features of every hidden state of a speech encoder at the participants' kept TRs.

    Parameters
    ----------
    model : str, path or SpeechEncoder
        A wav2vec2 / HuBERT / Whisper folder or hub id, a speech checkpoint trained with
        ``--modality audio`` (its first fit's encoder), or a loaded encoder.
    """
    import torch

    from brainviz.models.speech import SpeechEncoder, load_speech_checkpoint, load_speech_encoder

    name = getattr(model, "name_or_path", None) or str(model)
    if isinstance(model, SpeechEncoder):
        enc = model
    else:
        from pathlib import Path

        if (Path(str(model)) / "card.json").is_file():
            enc, _ = load_speech_checkpoint(model)
        else:
            enc = load_speech_encoder(model, n_chunks=n_chunks)
    if enc.n_chunks != n_chunks:
        enc.n_chunks = int(n_chunks)
    enc.to(device).eval()
    corpus = corpus if corpus is not None else audio_corpus(dataset, participants, preprocess, n_chunks, units)
    n = len(corpus)
    chunks = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = corpus.tokens.batch(range(start, min(start + batch_size, n)), device)
            chunks.append(enc.layer_features(batch["input_values"]).float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, n) / n, f"speech features {min(start + batch_size, n)}/{n}")
    layers = np.concatenate(chunks, axis=1).astype(np.float32)
    return SpeechFeatures(layers, corpus, name)


def _band_edges(n_fft: int) -> list[tuple[int, int]]:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(100), mel(7600), N_BANDS + 1))
    bins = np.round(edges / SAMPLE_RATE * n_fft).astype(int)
    return [(int(a), max(int(b), int(a) + 1)) for a, b in zip(bins[:-1], bins[1:])]


def band_energies(clip: np.ndarray, n_fft: int = 400, *, edges: list[tuple[int, int]] | None = None,
                  window: np.ndarray | None = None) -> np.ndarray:
    """Log RMS and the log energy of :data:`N_BANDS` mel-spaced bands (100 Hz - 7.6 kHz, Welch-style
    average of ``n_fft``-sample frames) of one 16 kHz clip: ``(1 + N_BANDS,)`` float64 (bands 0
    when the clip is shorter than a frame). ``edges`` / ``window`` can be passed precomputed."""
    edges = _band_edges(n_fft) if edges is None else edges
    window = np.hanning(n_fft) if window is None else window
    c = np.asarray(clip, dtype=np.float64)
    out = np.zeros(1 + N_BANDS)
    out[0] = np.log(np.sqrt(np.mean(c ** 2)) + 1e-5)
    n_frames = len(c) // n_fft
    if n_frames:
        power = (np.abs(np.fft.rfft(c[: n_frames * n_fft].reshape(n_frames, n_fft) * window, axis=1)) ** 2).mean(axis=0)
        out[1:] = [np.log(power[a:b].sum() + 1e-8) for a, b in edges]
    return out


def lowlevel_audio_features(corpus, dataset=None) -> np.ndarray:
    """Low-level acoustic bands of every sequence: ``(n_seq, C * 10)`` float32.

    Per chunk: log RMS, log energy of :data:`N_BANDS` mel-spaced bands (Welch-style average of
    25 ms frames) and, with ``dataset``, the number of word onsets in the chunk.
    """
    win: Any = corpus.tokens
    n_fft = 400
    edges = _band_edges(n_fft)
    onsets_by_run: dict[str, np.ndarray] = {}
    if dataset is not None:
        stim = dataset.stimulus
        for run, g in stim.groupby(stim["run"].astype(str)):
            onsets_by_run[run] = np.sort(g["onset"].to_numpy(dtype=float))
    window = np.hanning(n_fft)
    out = np.zeros((len(win), win.n_chunks, len(LOWLEVEL_NAMES)), dtype=np.float32)
    for i in range(len(win)):
        x = win.samples(i)
        for k in range(win.n_chunks):
            out[i, k, : 1 + N_BANDS] = band_energies(x[k], n_fft, edges=edges, window=window)
            if onsets_by_run:
                on = onsets_by_run.get(win.runs[i], np.zeros(0))
                end = win.ends[i] - (win.n_chunks - 1 - k) * win.chunk_s
                out[i, k, -1] = np.searchsorted(on, end) - np.searchsorted(on, end - win.chunk_s)
    return out.reshape(len(win), -1)
