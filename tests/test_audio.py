"""Audio stimuli (issue 15): reading/checking files, the dataset's audio entry, generic import
with --audio, and the simulated listening audio (espeak-ng or the formant fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from _speech_fixtures import listening_small, speech_page_app  # noqa: F401  (fixture)
from brainviz.cli import main
from brainviz.data import load_dataset
from brainviz.data.audio import SAMPLE_RATE, AudioTrack, load_audio_tracks, read_audio_file
from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space
from brainviz.errors import DatasetError

RNG = np.random.default_rng(0)


def tone(seconds: float, rate: int = SAMPLE_RATE, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.1 * RNG.standard_normal(t.size))
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def words(n: int = 20, run: str = "r1", start: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"onset": start + 0.4 * np.arange(n), "duration": 0.3, "word": [f"w{i}" for i in range(n)],
                         "run": run, "story": "s"})


def small_dataset(stim: pd.DataFrame, audio: dict | None) -> Dataset:
    rec = FMRIRecording("p1", RNG.standard_normal((12, 3)).astype(np.float32), 1.0, [Run("r1", 12)],
                        Space("rois", roi_names=["a", "b", "c"]))
    return Dataset(DatasetMeta("t", False, "listening"), stim, {"p1": rec}, audio=audio)


# -- files ---------------------------------------------------------------------------------


def test_read_wav_16k_mono_unchanged(tmp_path):
    x = tone(1.0)
    sf.write(tmp_path / "a.wav", x, SAMPLE_RATE, subtype="FLOAT")
    y, note = read_audio_file(tmp_path / "a.wav")
    assert note == "" and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_other_rate_and_stereo_are_converted_with_a_note(tmp_path):
    x = tone(2.0, rate=44100, channels=2)
    sf.write(tmp_path / "b.flac", x, 44100)
    y, note = read_audio_file(tmp_path / "b.flac")
    assert "resampled from 44100 Hz" in note and "averaged to mono" in note
    assert abs(len(y) - 2 * SAMPLE_RATE) <= 1
    # the 220 Hz tone survives resampling: the spectrum peaks there
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(y) - 220) < 2


@pytest.mark.parametrize("kind", ["missing", "clipped", "suffix", "garbage"])
def test_bad_audio_files_name_the_file(tmp_path, kind):
    p = tmp_path / ("x.mp4" if kind == "suffix" else "x.wav")
    if kind == "clipped":
        x = tone(1.0, amp=0.5)
        x[8000:8010] = 1.0
        sf.write(p, x, SAMPLE_RATE, subtype="FLOAT")
    elif kind == "suffix":
        p.write_bytes(b"\0" * 100)
    elif kind == "garbage":
        p.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DatasetError) as err:
        read_audio_file(p, field="audio.r1")
    msg = str(err.value)
    assert str(p) in msg and "audio.r1" in msg
    if kind == "clipped":
        assert "clipped" in msg and "0.500 s" in msg


def test_too_short_audio_for_its_words(tmp_path):
    sf.write(tmp_path / "r1.wav", tone(3.0), SAMPLE_RATE)
    stim = words(20)  # last word ends at 1.0 + 0.4 * 19 + 0.3 = 8.9 s
    with pytest.raises(DatasetError, match="too short for its words.*8.90 s"):
        load_audio_tracks({"r1": tmp_path / "r1.wav"}, stim)
    with pytest.raises(DatasetError, match="no audio for run"):
        load_audio_tracks({"r1": tmp_path / "r1.wav"}, pd.concat([words(3), words(3, "r2")]))


# -- the dataset model ---------------------------------------------------------------------


def test_dataset_audio_round_trip_and_old_datasets(tmp_path):
    stim = words(20)
    x = tone(12.0).astype(np.float32)
    ds = small_dataset(stim, {"r1": AudioTrack("r1", samples=x, n_samples=len(x), source="test")})
    ds.save(tmp_path / "d")
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert manifest["audio"]["runs"]["r1"]["file"] == "audio/r1.flac" and manifest["audio"]["sample_rate"] == SAMPLE_RATE
    back = load_dataset(tmp_path / "d")
    assert list(back.audio) == ["r1"] and back.audio["r1"].source == "test"
    np.testing.assert_allclose(back.audio["r1"].read(), x, atol=2 / 32768)  # 16-bit FLAC
    w = back.audio["r1"].window(-1.0, 1.0)
    assert len(w) == 2 * SAMPLE_RATE and not w[:SAMPLE_RATE].any() and w[SAMPLE_RATE:].any()
    # the audio is part of the content hash
    other = small_dataset(stim, {"r1": AudioTrack("r1", samples=-x, n_samples=len(x))})
    assert ds.content_hash() != other.content_hash()
    # a dataset without audio has no 'audio' entry and loads with an empty mapping
    small_dataset(stim, None).save(tmp_path / "old")
    assert "audio" not in json.loads((tmp_path / "old" / "dataset.json").read_text())
    assert load_dataset(tmp_path / "old").audio == {}


def test_saving_audio_shorter_than_its_words_writes_nothing(tmp_path):
    x = tone(2.0).astype(np.float32)
    ds = small_dataset(words(20), {"r1": AudioTrack("r1", samples=x, n_samples=len(x))})
    with pytest.raises(DatasetError, match="too short"):
        ds.save(tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_missing_audio_file_of_a_saved_dataset(tmp_path):
    x = tone(12.0).astype(np.float32)
    small_dataset(words(20), {"r1": AudioTrack("r1", samples=x, n_samples=len(x))}).save(tmp_path / "d")
    (tmp_path / "d" / "audio" / "r1.flac").unlink()
    with pytest.raises(DatasetError, match=r"r1.flac.*audio.runs.r1.file.*missing"):
        load_dataset(tmp_path / "d")


# -- generic import --------------------------------------------------------------------------


def _generic_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    words(20).drop(columns="story").to_csv(src / "words.tsv", sep="\t", index=False)
    np.save(src / "p1.npy", RNG.standard_normal((12, 3)))
    return src


def test_generic_import_with_audio_resamples_with_a_note(tmp_path, capsys):
    src = _generic_src(tmp_path)
    sf.write(tmp_path / "story.wav", tone(11.0, rate=22050), 22050)
    rc = main(["import", "generic", str(src), "--tr", "1.0", "--space", "rois", "--modality", "listening",
               "--audio", f"r1={tmp_path / 'story.wav'}", "--out", str(tmp_path / "out")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert any("resampled from 22050 Hz" in n for n in out["notes"])
    ds = load_dataset(tmp_path / "out")
    assert ds.audio["r1"].n_samples == pytest.approx(11 * SAMPLE_RATE, abs=2)
    assert "resampled" in ds.audio["r1"].note


def test_generic_import_with_clipped_audio_writes_nothing(tmp_path, capsys):
    src = _generic_src(tmp_path)
    x = tone(11.0, amp=0.9)
    x[1000:1100] = 1.0
    sf.write(tmp_path / "story.wav", x, SAMPLE_RATE, subtype="FLOAT")
    rc = main(["import", "generic", str(src), "--tr", "1.0", "--space", "rois",
               "--audio", str(tmp_path / "story.wav"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "story.wav" in err and "clipped" in err
    assert not (tmp_path / "out").exists()


# -- simulated audio ---------------------------------------------------------------------------


def _slot_energy(x: np.ndarray, stim: pd.DataFrame) -> tuple[float, float]:
    """Mean power inside the word slots and in the pauses between words."""
    inside = np.zeros(len(x), dtype=bool)
    for o, d in zip(stim["onset"], stim["duration"]):
        inside[int(o * SAMPLE_RATE) : int((o + d) * SAMPLE_RATE)] = True
    first, last = int(stim["onset"].min() * SAMPLE_RATE), int((stim["onset"] + stim["duration"]).max() * SAMPLE_RATE)
    span = np.zeros(len(x), dtype=bool)
    span[first:last] = True
    return float(np.mean(x[inside] ** 2)), float(np.mean(x[span & ~inside] ** 2))


def test_formant_fallback_puts_sound_in_the_word_slots():
    from brainviz.data.simulate.audio import formant_word, synthesize_run

    stim = words(15)
    x = synthesize_run(stim["word"].tolist(), stim["onset"].to_numpy(), stim["duration"].to_numpy(), 9.0, "formant",
                       np.random.default_rng(0))
    assert len(x) == 9 * SAMPLE_RATE and np.abs(x).max() <= 0.5 + 1e-3
    inside, pause = _slot_energy(x, stim)
    assert inside > 1000 * pause
    a, b = formant_word("garden", 4000), formant_word("window", 4000)
    assert len(a) == 4000 and not np.allclose(a, b)  # words differ
    np.testing.assert_array_equal(a, formant_word("garden", 4000))  # deterministic


def test_simulated_listening_dataset_has_aligned_audio(listening_small):  # noqa: F811
    from brainviz.data.simulate.audio import espeak_available

    ds = load_dataset(listening_small)
    assert sorted(ds.audio) == sorted(ds.runs) == ["listening_1", "listening_2"]
    gt = json.loads((listening_small / "ground_truth" / "ground_truth.json").read_text())
    synth = gt["audio"]["synthesizer"]
    assert synth == ("espeak-ng" if espeak_available() else "formant")
    for run, track in ds.audio.items():
        assert track.source.startswith("simulated") and track.onset == 0.0
        rec = ds.fmri["sub-01"]
        n_trs = next(r.n_trs for r in rec.runs if r.name == run)
        assert track.n_samples == pytest.approx(n_trs * rec.tr * SAMPLE_RATE, abs=1)
        stim = ds.stimulus[ds.stimulus["run"] == run]
        inside, pause = _slot_energy(track.read(), stim)
        assert inside > 50 * pause, (run, inside, pause)
        # the lead-in before the first word is (near) silent
        lead = track.window(0.0, float(stim["onset"].min()) - 0.1)
        assert np.sqrt(np.mean(lead**2)) < 1e-3


# -- the Speech page ---------------------------------------------------------------------------


def test_speech_page_plays_audio_and_computes(listening_small, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("streamlit.testing.v1")

    at = speech_page_app(listening_small, ["sub-01", "sub-02"], monkeypatch).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="sp_run").options == ["listening_1", "listening_2"]
    assert len(at.get("audio")) == 1
    at.multiselect(key="sp_minutes").set_value([1.0])
    at.button(key="sp_compute").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value
    assert set(table["group"]) == {"planted", "null"} and set(table["model"]) == {"A"}
    assert np.isfinite(table[["r_raw", "r_residual", "r_lowlevel", "se_r_raw", "p_r_raw"]].to_numpy()).all()
    bars = at.get("plotly_chart")[-1].proto.spec
    assert "error_y" in bars and "simulated" in bars.lower()  # SE across participants, simulated badge


def test_data_page_plays_the_audio_of_an_example(listening_small, tmp_path, monkeypatch):  # noqa: F811
    """Data → Stimulus ↔ TRs on a listening dataset with sound: one audio player for the chosen
    example's window, labelled simulated; the example choice goes into the URL."""
    pytest.importorskip("streamlit.testing.v1")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BV_TEST_DATASET", str(listening_small))
    monkeypatch.setenv("BV_TEST_PAGE", str(Path(__file__).resolve().parents[1] / "pages" / "data.py"))

    def script():
        import os
        import runpy

        import streamlit as st

        from brainviz.app_support import resources

        path = os.environ["BV_TEST_DATASET"]
        st.session_state["_in_router"] = True
        st.session_state["_ctx"] = {"summary": resources.summary(path), "dataset_path": path,
                                    "participants": ["sub-01"]}
        st.session_state.setdefault("data_tab", "Stimulus ↔ TRs")
        runpy.run_path(os.environ["BV_TEST_PAGE"])

    at = AppTest.from_function(script, default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("audio")) == 1
    options = at.selectbox(key="data_ex").options
    assert len(options) > 1
    at.selectbox(key="data_ex").set_value(options[1]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("audio")) == 1
    assert any("simulated" in c.value for c in at.caption)
