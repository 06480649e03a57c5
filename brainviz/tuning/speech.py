"""Speech brain-tuning (``train --modality audio``): the audio-specific parts of a training job.

The job, the fits, the stages, the losses, LoRA, the resume state and the checkpoint are those
of text brain-tuning (:mod:`brainviz.tuning.train`); only the encoder and its inputs differ:

* the base model is a speech encoder (:func:`brainviz.models.speech.load_speech_encoder`:
  wav2vec2 / HuBERT / Whisper, hub id or local folder), wrapped so that its pooled output is
  the head input;
* an example (a kept TR ``t`` of a participant, after the same preprocessing as text) reads
  ``audio_chunks`` TR-long chunks of the run's audio ending at ``t`` (FIR delays on the raw
  audio, default 5); participants with the same run timing share examples, as text windows
  do;
* LoRA adapters go on the attention projections (``q_proj/k_proj/v_proj/out_proj``).

Variants: ``vanilla`` (heads on the frozen pretrained encoder), ``fine-tuned`` (one fit per
participant, or all participants with one shared head: the multi-participant setting of the
papers, ``--preset quick`` or ``--together --head-mode shared``), ``participant-transfer`` and
``joint --no-meg``; the MEG variants need text (MEG is recorded per written word) and are
refused.

``stimulus-tuned`` is the papers' control: the encoder is tuned with ``fine-tuned``'s stages,
epochs, loss and LoRA / full setting, but its targets are stimulus features on the same TR
grid (:func:`add_stimulus_targets`: the low-level word bands of
:func:`brainviz.features.tr.baseline_features` and the first K principal components of a
middle layer of the packaged MiniLM, :func:`brainviz.features.tr.lm_features`, both with FIR
delays 1..C TRs, i.e. the stimulus of the audio window, z-scored and PCA-fitted on each
fold's training runs only); the brain heads are then fitted on the tuned encoder exactly as
vanilla's (same stage, epochs, data order, zero start). ``compare fine-tuned stimulus-tuned``
then tests what brain data adds over tuning on the stimulus itself.
"""

from __future__ import annotations

import numpy as np

from brainviz.errors import BrainvizError

AUDIO_VARIANTS = ("vanilla", "fine-tuned", "participant-transfer", "joint", "stimulus-tuned")


class SpeechTrainError(BrainvizError, ValueError):
    """A speech training job cannot run as configured."""


def check_audio_job(job) -> None:
    """Checks of an audio job, before anything is written (called by ``TrainJob._check_inputs``)."""
    from brainviz.data.audio import check_track_covers_words

    cfg, ds = job.config, job.dataset
    if cfg.variant not in AUDIO_VARIANTS or (cfg.variant == "joint" and cfg.meg):
        raise SpeechTrainError(f"--modality audio supports the variants {AUDIO_VARIANTS} (joint with --no-meg); "
                               f"got {cfg.variant!r}{' with MEG' if cfg.variant == 'joint' else ''}")
    if not getattr(ds, "audio", None):
        raise SpeechTrainError(f"{cfg.dataset}: field 'audio': the dataset has no audio; --modality audio needs one "
                               "16 kHz audio file per run (python -m brainviz import generic ... --audio, or the "
                               "simulated listening dataset)")
    runs = {r.name for p in job.fmri_all for r in ds.fmri[p].runs}
    missing = sorted(runs - set(ds.audio))
    if missing:
        raise SpeechTrainError(f"{cfg.dataset}: field 'audio': no audio for run(s) {missing}")
    for run in sorted(runs):
        check_track_covers_words(ds.audio[run], ds.stimulus, file=ds.path)
    trs = {ds.fmri[p].tr for p in job.fmri_all}
    if len(trs) != 1:
        raise SpeechTrainError(f"--modality audio needs one TR for all participants (chunks are one TR long), got {sorted(trs)}")
    if int(cfg.audio_chunks) < 1:
        raise SpeechTrainError(f"--audio-chunks must be >= 1, got {cfg.audio_chunks}")
    if cfg.variant == "stimulus-tuned":
        stimulus_layer(cfg.stimulus_layer)  # a layer the stimulus model lacks: refused before any work


def stimulus_layer(layer: int | None) -> int:
    """The hidden state of the packaged MiniLM that gives the stimulus components (None: the
    middle one); :class:`SpeechTrainError` when the model has no such state."""
    from brainviz.features.config import FeatureConfig
    from brainviz.features.tr import n_hidden_states

    base = FeatureConfig()
    n_states = n_hidden_states(base)
    out = n_states // 2 if layer is None else int(layer)
    if not 0 <= out < n_states:
        raise SpeechTrainError(f"--stimulus-layer {layer}: the stimulus model ({base.model}) has hidden states "
                               f"0..{n_states - 1} (0 = embeddings)")
    return out


def load_speech_base(config):
    """The job's base encoder: a :class:`~brainviz.models.speech.SpeechEncoder` on the CPU."""
    from brainviz.models.speech import load_speech_encoder

    return load_speech_encoder(config.base, n_chunks=int(config.audio_chunks), device="cpu")


def build_audio_corpus(dataset, fmri_participants: list[str], preprocess, n_chunks: int,
                       units: np.ndarray | None = None, shuffle_seed: int | None = None):
    """A :class:`~brainviz.tuning.data.Corpus` whose ``tokens`` are :class:`AudioWindows`.

    Examples are the kept TRs of :func:`brainviz.data.preprocess.fmri_examples` (same trims,
    detrending, z-scoring and dropped empty windows as text, so text and speech models are
    scored on the same TRs); the audio window of TR ``t`` is ``[t - n_chunks * TR, t)``.
    """
    from brainviz.data.preprocess import fmri_examples
    from brainviz.models.speech import AudioWindows, dataset_signals
    from brainviz.tuning.data import Corpus, fmri_targets

    key_to_seq: dict[tuple[str, int], int] = {}
    rows, seq_runs, ends = [], [], []
    examples = {}
    for pid in fmri_participants:
        ex = fmri_examples(dataset, pid, preprocess)
        seq = np.empty(len(ex), dtype=np.int64)
        for i, (w, run, t) in enumerate(zip(ex.windows, ex.runs, ex.times)):
            key = (str(run), int(round(float(t) * 1000)))
            if key not in key_to_seq:
                key_to_seq[key] = len(rows)
                rows.append(np.asarray(w, dtype=np.int64))
                seq_runs.append(str(run))
                ends.append(float(t))
            seq[i] = key_to_seq[key]
        examples[pid] = (ex, seq)
    tr = float(dataset.fmri[fmri_participants[0]].tr)
    signals = dataset_signals(dataset, sorted(set(seq_runs)))
    windows = AudioWindows(signals, seq_runs, ends, n_chunks, tr)
    n_seq = len(rows)
    fmri = fmri_targets(examples, n_seq, units, shuffle_seed)
    empty = [np.zeros(0, dtype=np.int64) for _ in range(n_seq)]
    return Corpus(rows, np.asarray(seq_runs), windows, empty, list(empty), np.zeros(n_seq + 1, dtype=np.int64), fmri, {},
                  None, np.zeros(0, dtype=np.int64), units)


STIMULUS_TARGETS = "lowlevel+lm-pcs"


def stimulus_feature_matrix(dataset, fmri_participants: list[str], preprocess, corpus, n_chunks: int,
                            layer: int | None = None, cache=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stimulus features of every corpus sequence (TR): ``(lowlevel, lm, info)``.

    ``lowlevel`` (n_seq, 4 C): the four low-level word bands of
    :func:`brainviz.features.tr.baseline_features`; ``lm`` (n_seq, H C): hidden state
    ``layer`` (None: the middle one) of the packaged MiniLM through
    :func:`brainviz.features.tr.lm_features` (word states, Lanczos-resampled); both with FIR
    delays 1..C TRs, i.e. the words of the audio window ``[t - C TR, t)`` the encoder hears.
    Participants with the same TR grid share sequences, so their rows are computed once.
    """
    from brainviz.data.preprocess import fmri_examples
    from brainviz.features.config import FeatureConfig
    from brainviz.features.tr import baseline_features, lm_features

    base = FeatureConfig()
    layer = stimulus_layer(layer)
    config = base.replace(layers=(layer,), delays=tuple(range(1, int(n_chunks) + 1)))
    n_seq = len(corpus)
    low = lm = None
    done = np.zeros(n_seq, dtype=bool)
    for pid in fmri_participants:
        seq = corpus.fmri[pid].seq
        if done[seq].all():
            continue
        ex = fmri_examples(dataset, pid, preprocess)
        if len(ex) != len(seq):
            raise SpeechTrainError(f"participant {pid!r}: {len(ex)} examples but {len(seq)} corpus rows")
        b = baseline_features(dataset, ex, config, cache=cache)["lowlevel"]
        f = lm_features(dataset, ex, config, cache=cache)[layer]
        if low is None:
            low = np.zeros((n_seq, b.shape[1]), dtype=np.float64)
            lm = np.zeros((n_seq, f.shape[1]), dtype=np.float64)
        low[seq], lm[seq] = b, f
        done[seq] = True
    info = {"model": base.model, "layer": layer, "delays_tr": list(config.delays), "pooling": base.pooling,
            "lowlevel_columns": ["word_rate", "letters", "unigram_surprisal", "content_words"]}
    return low, lm, info


def _zscore(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    mu = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    sd[sd < 1e-8] = np.inf  # a constant column on the training runs becomes 0
    return (x - mu) / sd


def stimulus_targets(low: np.ndarray, lm: np.ndarray, train: np.ndarray, k: int) -> tuple[np.ndarray, dict]:
    """Targets of one fold: z-scored low-level bands + the first ``k`` principal components of
    the z-scored LM features, each component z-scored; every mean, scale and component is
    fitted on the ``train`` rows only. Returns ``(float32 (n, 4 C + k), info)``."""
    parts = [_zscore(low, train)]
    info: dict = {"n_lowlevel": int(low.shape[1]), "n_pcs": 0, "pc_variance_explained": 0.0}
    if k > 0:
        z = _zscore(lm, train)
        _, sv, vt = np.linalg.svd(z[train], full_matrices=False)
        k_eff = min(int(k), vt.shape[0])
        scores = z @ vt[:k_eff].T
        parts.append(_zscore(scores, train))
        info.update(n_pcs=k_eff, pc_variance_explained=float((sv[:k_eff] ** 2).sum() / max((sv ** 2).sum(), 1e-12)))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32), info


def add_stimulus_targets(job) -> dict:
    """``stimulus-tuned``: put one stimulus target per fold into ``job.corpus.fmri`` (named
    :func:`brainviz.tuning.variants.stimulus_target`, covering every sequence) and return what
    the checkpoint card records (``job.stimulus_info``)."""
    from brainviz.tuning.data import FMRITargets
    from brainviz.tuning.variants import stimulus_target

    cfg, c = job.config, job.corpus
    low, lm, info = stimulus_feature_matrix(job.dataset, job.fmri_all, job.pre, c, int(cfg.audio_chunks),
                                            cfg.stimulus_layer)
    n_seq = len(c)
    rows = np.arange(n_seq, dtype=np.int64)
    folds = {}
    for fold in job.folds:
        train, _ = job.fold_masks(fold)
        data, fold_info = stimulus_targets(low, lm, train, int(cfg.stimulus_pcs))
        name = stimulus_target(fold)
        c.fmri[name] = FMRITargets(name, rows, data, data, rows, np.asarray(c.runs), rows)
        folds[fold] = {**fold_info, "n_train_trs": int(train.sum())}
    k = int(cfg.stimulus_pcs)
    return {
        "kind": STIMULUS_TARGETS,
        "description": (f"the encoder was tuned on stimulus features, not fMRI: {low.shape[1]} "
                        f"low-level word bands (word rate, letters, unigram surprisal, content words x delays "
                        f"{info['delays_tr']} TRs) + the first {k} principal components of hidden state {info['layer']} "
                        f"of {info['model']} (word states, same delays); z-scored and PCA-fitted on each fold's "
                        "training runs only; brain heads then fitted on the tuned encoder as vanilla's"),
        "n_pcs": k, **info, "n_lowlevel": int(low.shape[1]),
        "n_targets": int(low.shape[1]) + max(f["n_pcs"] for f in folds.values()), "folds": folds,
    }
