"""Simulated listening audio: the listening stories voiced offline, aligned with the stimulus.

Each word of a listening run is synthesized **on its own** and placed in the slot the
simulator planned for it (``onset`` to ``onset + duration`` in ``stimulus.tsv``), so the
audio, the word table and the planted drivers share one clock by construction: the word
timings of the audio *are* the stimulus timings (the synthesizer's natural word length is
fitted to the slot, see below). Pauses between words are silence with a faint noise floor
(-80 dBFS). Audio sample 0 is run-clock time 0 (the first TR), and the file covers the whole
run (lead-in silence, words, tail).

Synthesizers (``SimulationConfig.audio``):

``"espeak-ng"``
    Debian's ``espeak-ng`` (voice ``en-us``, 200 words/min) run as a subprocess. The distinct
    word forms of a story are spoken in batches of :data:`ESPEAK_BATCH` words separated by
    600 ms SSML breaks and cut at those silences (one process per batch instead of one per
    word; a batch whose cut does not give one piece per word is redone word by word). Each
    piece is trimmed, resampled from 22,050 to 16,000 Hz and time-fitted to its slot by FFT
    resampling (which also shifts pitch, by at most the fit factor, kept within
    [:data:`MIN_FIT`, :data:`MAX_FIT`]; beyond that the piece is cut or padded with
    silence).
``"formant"``
    A pure-Python fallback (no external program): every syllable is a short noise burst (the
    consonant, its band set by the word's letters) followed by a glottal pulse train at a
    declining 120 Hz pitch through two formant resonators chosen from the syllable's vowel
    letters. Speech-like in rhythm and spectrum only, not intelligible.
``"auto"`` (default)
    espeak-ng when the program is installed, else the formant synthesizer.
``"none"``
    no audio.

The audio is labelled as simulated in ``dataset.json`` (``audio.runs.<run>.source``).
Everything is deterministic given the config seed (and, for espeak-ng, its version).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
ESPEAK_RATE_WPM = 200
ESPEAK_VOICE = "en-us"
ESPEAK_BATCH = 250
ESPEAK_BREAK_MS = 600
MIN_FIT, MAX_FIT = 0.6, 1.7  # bounds of the time-fit factor (synthesized length / slot length)
NOISE_FLOOR = 1e-4  # s.d. of the background noise (-80 dBFS)
PEAK = 0.5  # the run's loudest sample after normalisation
AUDIO_CHOICES = ("auto", "espeak-ng", "formant", "none")


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"text-to-speech:\s*([\w.\-]+)", out)
    return m.group(1) if m else "unknown"


def resolve_synthesizer(choice: str) -> str:
    """``auto`` → ``espeak-ng`` when installed, else ``formant``; others unchanged."""
    if choice == "auto":
        return "espeak-ng" if espeak_available() else "formant"
    return choice


def spoken_form(word: str) -> str:
    """What is pronounced for a stimulus token: letters, digits and inner apostrophes, lower case."""
    return re.sub(r"[^\w']+", " ", str(word)).strip(" '").lower()


# --------------------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------------------


def _decode_wav(raw: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    x, rate = sf.read(io.BytesIO(raw), dtype="float32")
    return (x if x.ndim == 1 else x.mean(axis=1)), int(rate)


def _espeak(text: str, ssml: bool) -> tuple[np.ndarray, int]:
    cmd = ["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_RATE_WPM), "-z", "--stdout"] + (["-m"] if ssml else [])
    proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:200]}")
    return _decode_wav(proc.stdout)


def _trim(x: np.ndarray, level: float = 1e-3) -> np.ndarray:
    nz = np.flatnonzero(np.abs(x) > level)
    return x[nz[0] : nz[-1] + 1] if nz.size else x[:0]


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return x.astype(np.float32)
    from brainviz.data.audio import _resample

    return _resample(x, rate)


def _split_on_breaks(x: np.ndarray, rate: int, n: int) -> list[np.ndarray] | None:
    """Pieces of ``x`` between silences of >= 2/3 of the SSML break; None unless exactly ``n``."""
    sound = np.abs(x) > 1e-4
    # close the short gaps inside words (plosive closures) by dilating the sound mask
    gap = int(rate * ESPEAK_BREAK_MS / 1000 * 2 / 3)
    idx = np.flatnonzero(sound)
    if idx.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]] + 1
    if len(starts) != n:
        return None
    return [x[a:b] for a, b in zip(starts, ends)]


def espeak_words(forms: list[str]) -> dict[str, np.ndarray]:
    """16 kHz float32 audio of each distinct word form (trimmed of leading/trailing silence)."""
    from xml.sax.saxutils import escape

    out: dict[str, np.ndarray] = {}
    todo = [f for f in dict.fromkeys(forms) if f]
    for start in range(0, len(todo), ESPEAK_BATCH):
        batch = todo[start : start + ESPEAK_BATCH]
        ssml = "<speak>" + "".join(f'<s>{escape(f)}</s><break time="{ESPEAK_BREAK_MS}ms"/>' for f in batch) + "</speak>"
        x, rate = _espeak(ssml, ssml=True)
        pieces = _split_on_breaks(x, rate, len(batch))
        if pieces is None:  # one process per word for this batch
            pieces = [_trim(_espeak(f, ssml=False)[0]) for f in batch]
        for f, p in zip(batch, pieces):
            out[f] = _to_16k(p, rate)
    return out


# --------------------------------------------------------------------------------------
# formant fallback
# --------------------------------------------------------------------------------------

# (F1, F2) in Hz of the vowel letters (rough adult averages)
_VOWELS = {"a": (730, 1090), "e": (530, 1840), "i": (390, 1990), "o": (570, 840), "u": (440, 1020), "y": (390, 1990)}


def _resonator(x: np.ndarray, freq: float, bw: float) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bw / SAMPLE_RATE)
    theta = 2 * np.pi * freq / SAMPLE_RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1 - r], a, x)


def formant_word(form: str, n_samples: int) -> np.ndarray:
    """A speech-like rendering of one word, exactly ``n_samples`` long (deterministic per form)."""
    from brainviz.data.simulate.stimulus import _syllables

    if n_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    seed = int.from_bytes(hashlib.blake2b(form.encode("utf-8"), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    n_syl = max(1, _syllables(form) if form else 1)
    vowel_groups = re.findall(r"[aeiouy]+", form) or ["a"]
    bounds = np.linspace(0, n_samples, n_syl + 1).astype(int)
    out = np.zeros(n_samples, dtype=np.float64)
    for k in range(n_syl):
        a, b = bounds[k], bounds[k + 1]
        n = b - a
        if n < 8:
            continue
        n_c = int(n * 0.25)
        # consonant: band-limited noise burst
        band = 1500 + 3500 * ((sum(map(ord, form)) + 7 * k) % 11) / 10
        burst = _resonator(rng.standard_normal(n_c), band, 800) * np.hanning(n_c) * 0.6 if n_c > 4 else np.zeros(n_c)
        # vowel: glottal pulses through two formants
        n_v = n - n_c
        t = np.arange(n_v) / SAMPLE_RATE
        f0 = 125.0 - 15.0 * (a / max(n_samples, 1)) + 5.0 * rng.standard_normal()
        phase = np.cumsum(np.full(n_v, f0 / SAMPLE_RATE))
        pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(float)
        f1, f2 = _VOWELS.get(vowel_groups[k % len(vowel_groups)][0], _VOWELS["a"])
        voiced = _resonator(pulses, f1, 90) + 0.5 * _resonator(pulses, f2, 120)
        env = np.sin(np.pi * np.linspace(0, 1, n_v)) ** 0.5 if n_v > 1 else np.ones(n_v)
        out[a : a + n_c] += burst
        out[a + n_c : b] += voiced * env * (1.0 + 0.05 * np.sin(2 * np.pi * 5 * t))
    peak = np.abs(out).max()
    return (out / peak * 0.8).astype(np.float32) if peak > 0 else out.astype(np.float32)


# --------------------------------------------------------------------------------------
# assembling a run
# --------------------------------------------------------------------------------------


def fit_to_slot(piece: np.ndarray, n: int) -> np.ndarray:
    """Time-fit ``piece`` to exactly ``n`` samples: FFT resampling within the allowed factor,
    then cut (with a 5 ms fade) or zero-pad."""
    from scipy.signal import resample

    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    if len(piece) == 0:
        return np.zeros(n, dtype=np.float32)
    factor = float(np.clip(len(piece) / n, MIN_FIT, MAX_FIT))
    m = max(1, int(round(len(piece) / factor)))
    y = resample(piece.astype(np.float64), m) if m != len(piece) else piece.astype(np.float64)
    out = np.zeros(n, dtype=np.float64)
    k = min(n, m)
    out[:k] = y[:k]
    fade = min(k, int(0.005 * SAMPLE_RATE))
    if fade > 1:
        out[:fade] *= np.linspace(0, 1, fade)
        out[k - fade : k] *= np.linspace(1, 0, fade)
    return out.astype(np.float32)


def synthesize_run(words: list[str], onsets: np.ndarray, durations: np.ndarray, run_length_s: float,
                   synthesizer: str, rng: np.random.Generator, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The audio of one run: each word in its slot, silence (+ noise floor) elsewhere."""
    n_total = int(round(run_length_s * SAMPLE_RATE))
    x = rng.standard_normal(n_total).astype(np.float32) * NOISE_FLOOR
    forms = [spoken_form(w) for w in words]
    cache = {} if cache is None else cache
    if synthesizer == "espeak-ng":
        missing = [f for f in dict.fromkeys(forms) if f and f not in cache]
        if missing:
            cache.update(espeak_words(missing))
    speech = np.zeros(n_total, dtype=np.float32)
    for form, onset, dur in zip(forms, onsets, durations):
        if not form:
            continue
        a = int(round(onset * SAMPLE_RATE))
        n = int(round(dur * SAMPLE_RATE))
        a, b = max(a, 0), min(a + n, n_total)
        if b <= a:
            continue
        piece = cache[form] if synthesizer == "espeak-ng" else formant_word(form, n)
        speech[a:b] += fit_to_slot(piece, n)[: b - a]
    peak = float(np.abs(speech).max())
    if peak > 0:
        speech *= PEAK / peak
    return x + speech


def attach_simulated_audio(dataset, config) -> dict[str, Any]:
    """Voice the listening stories of ``dataset`` (in place: ``dataset.audio``); return a summary.

    Called by :func:`brainviz.data.simulate.build._build_listening` just before saving. The
    run lengths are those of the fMRI runs (sample 0 = the run's first TR).
    """
    from brainviz.data.audio import AudioTrack
    from brainviz.data.simulate._util import _rng

    choice = getattr(config, "audio", "auto")
    synth = resolve_synthesizer(choice)
    if synth == "none":
        return {"synthesizer": "none"}
    if synth == "espeak-ng" and not espeak_available():
        from brainviz.config import ConfigError

        raise ConfigError("SimulationConfig.audio is 'espeak-ng' but the espeak-ng program is not installed "
                          "(apt-get install espeak-ng), use 'auto' or 'formant'")
    label = (f"simulated: espeak-ng {espeak_version()} ({ESPEAK_VOICE}, {ESPEAK_RATE_WPM} wpm)" if synth == "espeak-ng"
             else "simulated: brainviz formant synthesizer (speech-like, not intelligible)")
    label += "; words synthesized one by one and time-fitted to the simulator's planned word slots"
    rec = next(iter(dataset.fmri.values()))
    stim = dataset.stimulus
    runs = stim["run"].astype(str).to_numpy()
    cache: dict[str, np.ndarray] = {}
    for r in rec.runs:
        rows = runs == r.name
        length = r.start + r.n_trs * rec.tr
        x = synthesize_run(stim["word"].astype(str).to_numpy()[rows].tolist(), stim["onset"].to_numpy(float)[rows],
                           stim["duration"].to_numpy(float)[rows], length, synth,
                           _rng(config.seed, "listening", "audio", r.name), cache)
        dataset.audio[r.name] = AudioTrack(run=r.name, samples=x, onset=0.0, n_samples=len(x), source=label)
    return {"synthesizer": synth, "source": label, "runs": sorted(dataset.audio)}
