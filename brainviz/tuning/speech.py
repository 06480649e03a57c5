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
refused. The stimulus-tuned control of the papers (a text / acoustic target instead of brain
data) is not implemented yet.
"""

from __future__ import annotations

import numpy as np

from brainviz.errors import BrainvizError

AUDIO_VARIANTS = ("vanilla", "fine-tuned", "participant-transfer", "joint")


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
