"""Speech encoders (wav2vec2, HuBERT, Whisper's encoder) behind the same brain-model interface.

The method of the speech brain-tuning papers (Moussa, Klakow & Toneva 2025; Moussa & Toneva
2025), as described in the issue and the authors' code:

* the input of TR ``t`` is the audio of ``[t - C * chunk, t)`` (default ``C = 5`` chunks of
  one TR each), i.e. FIR delays done on the raw audio: every chunk is encoded **on its own**;
* the last hidden state of each chunk is mean-pooled over time — over the frames of real
  audio only for Whisper, whose encoder always reads 30 s (its padding frames are left out);
* the ``C`` pooled vectors are concatenated (oldest first) into the head input, so the linear
  head has one weight block per delay (``hidden = C * encoder hidden size``).

:class:`SpeechEncoder` wraps any Hugging Face ``Wav2Vec2Model``, ``HubertModel`` or
``WhisperModel`` (encoder only) so that the training loop treats it like a text encoder: its
input is ``{"input_values": (B, C, S), "attention_mask": (B, 1)}`` (from
:class:`AudioWindows`), its ``last_hidden_state`` is the pooled ``(B, 1, C * H)`` head input,
and ``config.hidden_size`` is ``C * H``. The convolutional feature encoder (wav2vec2 / HuBERT)
or stem (Whisper ``conv1``/``conv2``) stays frozen, as is usual when fine-tuning these models.
LoRA adapters go on the attention projections ``q_proj, k_proj, v_proj, out_proj``
(:data:`LORA_TARGETS`).

Models: a hub id (needs internet once; e.g. ``facebook/wav2vec2-base``,
``facebook/hubert-base-ls960``, ``openai/whisper-base``) or a local Hugging Face folder with
``config.json`` + ``model.safetensors`` (pickled ``pytorch_model.bin`` weights are refused, see
:mod:`brainviz.models.encoder`). Tests build tiny random configs with :func:`tiny_speech_model`.

Examples
--------
>>> from brainviz.models.speech import load_speech_encoder, AudioWindows     # doctest: +SKIP
>>> enc = load_speech_encoder("/models/wav2vec2-base", n_chunks=5)         # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import types
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from brainviz.errors import ModelNotFoundError

SAMPLE_RATE = 16000
SPEECH_FAMILIES = ("wav2vec2", "hubert", "whisper")
LORA_TARGETS = r".*\.(q_proj|k_proj|v_proj|out_proj)$"
DEFAULT_CHUNKS = 5


class SpeechEncoder(nn.Module):
    """A speech encoder reading ``C`` audio chunks per example (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        ``Wav2Vec2Model``, ``HubertModel`` or ``WhisperEncoder``.
    family : str
        ``wav2vec2``, ``hubert`` or ``whisper``.
    n_chunks : int
        Chunks per example (FIR delays).
    do_normalize : bool
        Zero-mean, unit-variance normalisation of each chunk (wav2vec2's feature extractor;
        ignored for Whisper, which uses log-mel features).
    """

    lora_targets = LORA_TARGETS

    def __init__(self, model: nn.Module, family: str, n_chunks: int = DEFAULT_CHUNKS, do_normalize: bool = True):
        super().__init__()
        if family not in SPEECH_FAMILIES:
            raise ValueError(f"unknown speech model family {family!r}; expected one of {SPEECH_FAMILIES}")
        if int(n_chunks) < 1:
            raise ValueError(f"n_chunks must be >= 1, got {n_chunks}")
        from transformers import PretrainedConfig

        self.model = model
        self.family = family
        self.n_chunks = int(n_chunks)
        self.do_normalize = bool(do_normalize)
        self.hidden = int(getattr(model.config, "hidden_size", None) or model.config.d_model)
        self.n_layers = int(getattr(model.config, "num_hidden_layers", None) or model.config.encoder_layers)
        # what the training loop reads (head size); a real PretrainedConfig so PEFT can wrap the module
        self.config = PretrainedConfig(hidden_size=self.hidden * self.n_chunks, speech_family=family,
                                       n_chunks=self.n_chunks)
        self._mel = None
        if family == "whisper":
            from transformers import WhisperFeatureExtractor

            n_frames = int(model.config.max_source_positions) * 2
            self._mel = WhisperFeatureExtractor(feature_size=int(model.config.num_mel_bins), sampling_rate=SAMPLE_RATE,
                                                hop_length=160, chunk_length=max(1, math.ceil(n_frames * 160 / SAMPLE_RATE)),
                                                n_fft=400)
            self._mel.n_samples = n_frames * 160
            self._mel.nb_max_frames = n_frames
        self.freeze_stem()

    # -- frozen convolutional stem ------------------------------------------------------
    def stem_parameters(self) -> list[nn.Parameter]:
        if self.family == "whisper":
            return list(self.model.conv1.parameters()) + list(self.model.conv2.parameters()) + \
                list(self.model.embed_positions.parameters())
        return list(self.model.feature_extractor.parameters())

    def freeze_stem(self) -> None:
        for p in self.stem_parameters():
            p.requires_grad_(False)

    def requires_grad_(self, requires_grad: bool = True) -> "SpeechEncoder":
        super().requires_grad_(requires_grad)
        self.freeze_stem()
        return self

    def get_input_embeddings(self) -> nn.Module:
        """The first convolution of the stem: what text encoders' word embeddings are to the
        training loop (``freeze_embeddings``, PEFT hooks); frozen anyway."""
        if self.family == "whisper":
            return self.model.conv1
        return self.model.feature_extractor.conv_layers[0].conv

    # -- forward ------------------------------------------------------------------------
    @property
    def max_chunk_samples(self) -> int | None:
        return None if self._mel is None else int(self._mel.n_samples)

    def _whisper_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        n = x.shape[-1]
        if n > self.max_chunk_samples:
            raise ValueError(f"chunks of {n / SAMPLE_RATE:.2f} s exceed this Whisper encoder's "
                             f"{self.max_chunk_samples / SAMPLE_RATE:.2f} s input")
        feats = self._mel([row for row in x.detach().float().cpu().numpy()], sampling_rate=SAMPLE_RATE,
                          return_tensors="pt", padding="max_length")["input_features"]
        real_frames = math.ceil(math.ceil(n / 160) / 2)  # conv2 has stride 2
        dtype = next(self.model.parameters()).dtype
        return feats.to(device=x.device, dtype=dtype), max(1, real_frames)

    def chunk_hidden(self, x: torch.Tensor, output_hidden_states: bool = False):
        """Hidden states of chunks ``x`` (N, S): ``(last (N, T, H), all or None, n_real_frames)``."""
        if self.family == "whisper":
            feats, n_real = self._whisper_inputs(x)
            out = self.model(feats, output_hidden_states=output_hidden_states)
        else:
            if self.do_normalize:
                x = (x - x.mean(dim=-1, keepdim=True)) / torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + 1e-7)
            out = self.model(x, output_hidden_states=output_hidden_states)
            n_real = None
        return out.last_hidden_state, (out.hidden_states if output_hidden_states else None), n_real

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any):
        b, c, s = input_values.shape
        if c != self.n_chunks:
            raise ValueError(f"expected {self.n_chunks} chunks per example, got {c}")
        last, _, n_real = self.chunk_hidden(input_values.reshape(b * c, s))
        pooled = (last[:, :n_real] if n_real else last).mean(dim=1)  # masked mean: real-audio frames only
        return types.SimpleNamespace(last_hidden_state=pooled.reshape(b, 1, c * self.hidden))

    @torch.no_grad()
    def layer_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """Pooled features of every hidden state (0 = after the stem / embeddings):
        ``(n_layers + 1, B, C * H)``."""
        b, c, s = input_values.shape
        _, hidden, n_real = self.chunk_hidden(input_values.reshape(b * c, s), output_hidden_states=True)
        return torch.stack([(h[:, :n_real] if n_real else h).mean(dim=1).reshape(b, c * self.hidden) for h in hidden])


# --------------------------------------------------------------------------------------
# audio windows per TR
# --------------------------------------------------------------------------------------


class AudioWindows:
    """Audio inputs of a list of examples: ``n_chunks`` chunks of ``chunk_s`` ending at each
    example's time, cut from the run's audio (zero outside the file).

    Plays the part of the text pipeline's tokenised windows: ``batch(index, device)`` gives
    the encoder's inputs.

    Parameters
    ----------
    signals : mapping run -> (samples float32 at 16 kHz, onset s on the run clock)
    runs : sequence of str
        Run of each example.
    ends : sequence of float
        Run-clock time at which each example's window ends (the TR onset).
    n_chunks, chunk_s :
        Chunks per example and their length in seconds.
    """

    def __init__(self, signals: Mapping[str, tuple[np.ndarray, float]], runs: Sequence[str], ends: Sequence[float],
                 n_chunks: int, chunk_s: float):
        self.signals = dict(signals)
        self.runs = [str(r) for r in runs]
        self.ends = np.asarray(ends, dtype=float)
        self.n_chunks = int(n_chunks)
        self.chunk_s = float(chunk_s)
        self.chunk_samples = int(round(self.chunk_s * SAMPLE_RATE))
        missing = sorted(set(self.runs) - set(self.signals))
        if missing:
            raise ValueError(f"no audio for run(s) {missing}")

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def window_s(self) -> float:
        return self.n_chunks * self.chunk_s

    def samples(self, i: int) -> np.ndarray:
        """``(n_chunks, chunk_samples)`` float32 of example ``i`` (oldest chunk first)."""
        from brainviz.data.audio import cut_window

        x, onset = self.signals[self.runs[i]]
        end = self.ends[i]
        n = self.n_chunks * self.chunk_samples
        w = cut_window(x, onset, end - n / SAMPLE_RATE, end)
        return w[:n].reshape(self.n_chunks, self.chunk_samples)

    def batch(self, index: Sequence[int], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        index = list(index)
        x = np.stack([self.samples(i) for i in index]) if index else np.zeros((0, self.n_chunks, self.chunk_samples), np.float32)
        return {"input_values": torch.as_tensor(x, device=device),
                "attention_mask": torch.ones((len(index), 1), dtype=torch.long, device=device)}


def dataset_signals(dataset, runs: Sequence[str] | None = None) -> dict[str, tuple[np.ndarray, float]]:
    """``{run: (samples, onset)}`` of a dataset's audio (read once)."""
    from brainviz.errors import DatasetError

    if not getattr(dataset, "audio", None):
        raise DatasetError("this dataset has no audio (dataset.json 'audio'); speech models need the sound the "
                           "participants heard (import with --audio, or simulate a listening dataset)",
                           file=dataset.path, field="audio")
    runs = list(runs) if runs is not None else list(dataset.audio)
    missing = [r for r in runs if r not in dataset.audio]
    if missing:
        raise DatasetError(f"no audio for run(s) {missing}; audio runs are {sorted(dataset.audio)}",
                           file=dataset.path, field="audio")
    return {r: (dataset.audio[r].read(), float(dataset.audio[r].onset)) for r in runs}


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


def speech_family(config: Any) -> str:
    """``wav2vec2`` / ``hubert`` / ``whisper`` from a Hugging Face config, else ModelNotFoundError."""
    kind = str(getattr(config, "model_type", ""))
    if kind in SPEECH_FAMILIES:
        return kind
    raise ModelNotFoundError(f"model type {kind!r} is not a supported speech encoder; expected one of {SPEECH_FAMILIES} "
                             "(e.g. facebook/wav2vec2-base, facebook/hubert-base-ls960, openai/whisper-base)",
                             field="base")


def is_speech_model(name: str | os.PathLike) -> bool:
    """Whether a local model folder holds a wav2vec2 / HuBERT / Whisper config (no network)."""
    import json

    p = Path(str(name)) / "config.json"
    try:
        return json.loads(p.read_text()).get("model_type") in SPEECH_FAMILIES
    except (OSError, ValueError, AttributeError):
        return False


def load_speech_encoder(name: str | os.PathLike, n_chunks: int = DEFAULT_CHUNKS, device: str = "cpu") -> SpeechEncoder:
    """Load a Hugging Face speech model (hub id or local folder) as a :class:`SpeechEncoder`.

    Only safetensors weights are read from local folders. Whisper checkpoints keep only their
    encoder.
    """
    from transformers import AutoConfig

    from brainviz.models.encoder import _check_weights, resolve_model

    where = resolve_model(name)
    folder = Path(where)
    local = folder.is_dir()
    if local:
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError("not a Hugging Face model folder (no config.json)", file=folder, field="base")
        _check_weights(folder)
    try:
        config = AutoConfig.from_pretrained(where)
        family = speech_family(config)
        if family == "wav2vec2":
            from transformers import Wav2Vec2Model as cls
        elif family == "hubert":
            from transformers import HubertModel as cls
        else:
            from transformers import WhisperModel as cls
        model = cls.from_pretrained(where, use_safetensors=True)
    except OSError as exc:
        if not local:
            raise ModelNotFoundError(f"{name}: could not download from the Hugging Face hub (offline?). Download it on a "
                                     "machine with internet and pass the local folder instead.") from exc
        raise ModelNotFoundError(f"not a loadable Hugging Face model folder ({exc})", file=folder) from exc
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelNotFoundError(f"not a loadable speech model ({type(exc).__name__}: {exc})", file=folder) from None
    if family == "whisper":
        model = model.get_encoder()
    do_norm = family == "wav2vec2"
    pre = folder / "preprocessor_config.json" if local else None
    if pre is not None and pre.is_file():
        import json

        try:
            do_norm = bool(json.loads(pre.read_text()).get("do_normalize", do_norm))
        except (OSError, ValueError):
            pass
    enc = SpeechEncoder(model, family, n_chunks=n_chunks, do_normalize=do_norm)
    enc.to(device)
    enc.eval()
    return enc


def tiny_speech_model(folder: str | os.PathLike, family: str = "wav2vec2", hidden: int = 32, layers: int = 2,
                      seed: int = 0) -> Path:
    """Write a tiny random speech model (``family``) in Hugging Face format to ``folder`` (tests
    and demos: no pretrained speech weights ship with brainviz)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    common = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
                  conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=8)
    if family == "wav2vec2":
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        model = Wav2Vec2Model(Wav2Vec2Config(**common))
    elif family == "hubert":
        from transformers import HubertConfig, HubertModel

        model = HubertModel(HubertConfig(**common))
    elif family == "whisper":
        from transformers import WhisperConfig, WhisperModel

        model = WhisperModel(WhisperConfig(d_model=hidden, encoder_layers=layers, decoder_layers=1,
                                           encoder_attention_heads=2, decoder_attention_heads=2,
                                           encoder_ffn_dim=2 * hidden, decoder_ffn_dim=2 * hidden, num_mel_bins=16,
                                           max_source_positions=200, max_target_positions=16, vocab_size=64,
                                           pad_token_id=1, bos_token_id=1, eos_token_id=2,
                                           decoder_start_token_id=1))
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {SPEECH_FAMILIES}")
    from brainviz._io import atomic_dir

    with atomic_dir(folder, overwrite=True) as tmp:  # complete or absent
        model.save_pretrained(tmp, safe_serialization=True)
    return folder


def is_speech_checkpoint(card: Mapping[str, Any]) -> bool:
    """Whether a checkpoint card was trained with ``--modality audio``."""
    return (card.get("train_config") or {}).get("modality") == "audio"


def load_speech_checkpoint(name: str | os.PathLike, fit: Mapping[str, Any] | None = None, device: str = "cpu"):
    """``(SpeechEncoder, BrainHeads)`` of one fit (default: the first) of a speech checkpoint.

    The encoder is the card's ``base`` plus the fit's stored delta (when the fit tuned it).
    """
    from safetensors import SafetensorError

    from brainviz.errors import CheckpointError
    from brainviz.models.store import BASE_ENCODER, check_base, check_safetensors, load_checkpoint
    from brainviz.models.weights import WeightsError, load_encoder_weights

    ckpt = load_checkpoint(name)
    card = ckpt.card
    card_path = Path(ckpt.path) / "card.json"
    if not is_speech_checkpoint(card):
        raise CheckpointError("not a speech checkpoint (train_config.modality is not 'audio')", file=card_path,
                              field="train_config.modality")
    n_chunks = int(card["train_config"].get("audio_chunks", DEFAULT_CHUNKS))
    enc = load_speech_encoder(check_base(card["base"], card_path), n_chunks=n_chunks, device="cpu")
    fit = dict(fit or ckpt.fits[0])
    if fit.get("encoder") is None:
        raise CheckpointError("the weights of this fit were not kept (keep_weights = 'first')", file=card_path,
                              field="fits.encoder")
    if fit["encoder"] != BASE_ENCODER and fit["encoder"] != card["base"]:
        path = Path(ckpt.path) / fit["encoder"] / "model.safetensors"
        check_safetensors(path, "encoder")
        try:
            load_encoder_weights(enc, path)
        except (WeightsError, RuntimeError, KeyError, SafetensorError) as exc:
            raise CheckpointError(f"cannot apply the encoder weights ({exc})", file=path, field="encoder") from None
    heads = ckpt.heads(fit)
    enc.to(device).eval()
    heads.to(device).eval()
    return enc, heads
