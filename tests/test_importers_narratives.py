"""Narratives importer: the real participants.tsv, events and sidecars from ../shared combined with
synthetic BOLD derivatives (fsaverage6 GIfTI, MNI NIfTI) and Gentle align.csv written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainviz.data import DatasetError, load_dataset
from brainviz.data.importers import import_dataset
from brainviz.data.importers.narratives import read_gentle

T = 16  # TRs per synthetic run (pieman has 300)
AFFINE = np.array([[-6.0, 0, 0, 90], [0, 6.0, 0, -126], [0, 0, 6.0, -72], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def meta_root() -> Path:
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "narratives_ds002345_metadata_only"
    if not (root / "participants.tsv").is_file():
        pytest.skip("../shared/data/narratives_ds002345_metadata_only is absent")
    return root


def write_gifti(path: Path, data: np.ndarray, per_tr: bool = False) -> None:
    """``data`` (TRs, vertices); one data array per TR (as fMRIPrep/AFNI write) or one 2-D array."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    if per_tr:
        darrays = [nib.gifti.GiftiDataArray(d.astype(np.float32), datatype="NIFTI_TYPE_FLOAT32") for d in data]
    else:
        darrays = [nib.gifti.GiftiDataArray(np.ascontiguousarray(data.T.astype(np.float32)), datatype="NIFTI_TYPE_FLOAT32")]
    nib.save(nib.gifti.GiftiImage(darrays=darrays), str(path))


def write_bold_fs6(deriv: Path, pid: str, story: str, run: str = "", seed: int = 0, per_tr: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for h in "LR":
        data = rng.standard_normal((T, 40962))
        write_gifti(deriv / "afni-smooth" / pid / "func" / f"{pid}_task-{story}{run}_space-fsaverage6_hemi-{h}_desc-sm6.func.gii", data, per_tr)
        out[h] = data
    return out


def write_bold_mni(deriv: Path, pid: str, story: str, run: str = "", seed: int = 1) -> np.ndarray:
    import nibabel as nib

    vol = np.random.default_rng(seed).standard_normal((31, 37, 31, T)).astype(np.float32)
    p = deriv / "afni-smooth" / pid / "func" / f"{pid}_task-{story}{run}_space-MNI152NLin2009cAsym_res-native_desc-sm6_bold.nii.gz"
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, AFFINE), str(p))
    return vol


def write_align_csv(path: Path, n: int = 40, start: float = 15.2, unk_every: int = 9) -> list[str]:
    """Gentle's align.csv: word, aligned word (or <unk>), onset, offset; no header; words not
    found in the audio have empty times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, words, t = [], [], start
    for i in range(n):
        w = f"Word{i}," if i % 5 == 4 else f"word{i}"
        words.append(w)
        if i % unk_every == 3:
            rows.append(f'"{w}",,,')
        elif i % 7 == 2:
            rows.append(f'"{w}",<unk>,{t:.2f},{t + 0.25:.2f}')
        else:
            rows.append(f'"{w}",{w.strip(",").lower()},{t:.2f},{t + 0.3:.2f}')
        t += 0.4
    path.write_text("\n".join(rows) + "\n")
    return words


@pytest.fixture(scope="module")
def narratives(meta_root, tmp_path_factory):
    """sub-001 heard pieman twice (run-1/run-2, per-TR GIfTI arrays), sub-007 once (fsaverage6),
    sub-009 once (MNI volume)."""
    work = tmp_path_factory.mktemp("narr")
    deriv, gentle = work / "derivatives", work / "gentle"
    bold = {
        ("sub-001", "_run-1"): write_bold_fs6(deriv, "sub-001", "pieman", "_run-1", 0, per_tr=True),
        ("sub-001", "_run-2"): write_bold_fs6(deriv, "sub-001", "pieman", "_run-2", 1),
        ("sub-007", ""): write_bold_fs6(deriv, "sub-007", "pieman", "", 2),
    }
    vol = write_bold_mni(deriv, "sub-009", "pieman")
    words = write_align_csv(gentle / "pieman" / "align.csv")
    out = work / "out"
    res = import_dataset("narratives", meta_root, out, stories=["pieman"], participants=["sub-001", "sub-007", "sub-009"],
                         derivatives_dir=str(deriv), transcripts_dir=str(gentle))
    return {"work": work, "deriv": deriv, "gentle": gentle, "bold": bold, "vol": vol, "words": words, "out": out, "result": res}


def test_round_trip_fsaverage6_to_fsaverage5(narratives):
    ds = load_dataset(narratives["out"])
    assert ds.simulated is False and ds.meta.modality == "listening" and "Nastase" in ds.meta.citation and ds.meta.licence == "CC0"
    assert ds.participants == ["sub-001", "sub-007", "sub-009"]
    assert ds.tr == 1.5  # RepetitionTime from the real sidecars
    rec = ds.fmri["sub-001"]
    assert [r.name for r in rec.runs] == ["pieman_run-1", "pieman_run-2"] and rec.space.kind == "fsaverage5"
    b = narratives["bold"][("sub-001", "_run-2")]
    # icosahedral nesting: fsaverage5 = first 10,242 vertices of each fsaverage6 hemisphere
    np.testing.assert_array_equal(rec.data[T:, :10242], b["L"][:, :10242].astype(np.float32))
    np.testing.assert_array_equal(rec.data[T:, 10242:], b["R"][:, :10242].astype(np.float32))
    b1 = narratives["bold"][("sub-001", "_run-1")]
    np.testing.assert_array_equal(rec.data[:T, 10242:], b1["R"][:, :10242].astype(np.float32))


def test_word_timing_uses_real_events(narratives, meta_root):
    ds = load_dataset(narratives["out"])
    stim = ds.stimulus
    assert set(stim["run"]) == {"pieman_run-1", "pieman_run-2", "pieman"} and set(stim["story"]) == {"pieman"}
    one = stim[stim["run"] == "pieman"].reset_index(drop=True)
    assert list(one["word"]) == narratives["words"]
    # words Gentle did not find keep their place, interpolated between neighbours
    assert not one["aligned"].iloc[3] and one["aligned"].iloc[2]
    assert one["onset"].iloc[2] < one["onset"].iloc[3] < one["onset"].iloc[4] and one["duration"].iloc[3] == 0
    assert one["onset"].iloc[0] == pytest.approx(15.2)
    # pieman's audio file starts with the scan (events: music at 0 s, story at 15 s): TR 0 is at 0 s
    events = (meta_root / "sub-007/func/sub-007_task-pieman_events.tsv").read_text()
    assert "music" in events and "15.0" in events
    assert ds.fmri["sub-007"].runs[0].start == 0.0
    assert ds.fmri["sub-007"].times[:3].tolist() == [0.0, 1.5, 3.0]


def test_story_clock_shifts_runs(narratives, meta_root, tmp_path):
    import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-007"], word_clock="story",
                   derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(narratives["gentle"]))
    rec = load_dataset(tmp_path / "o").fmri["sub-007"]
    assert rec.runs[0].start == -15.0  # transcript zero = story onset at 15 s into the scan


def test_mni_volume_is_projected(narratives):
    from brainviz.data.atlases import SurfaceProjector

    ds = load_dataset(narratives["out"])
    data = np.asarray(ds.fmri["sub-009"].data)
    vol = narratives["vol"]
    proj = SurfaceProjector(AFFINE, vol.shape[:3])
    expected = np.nan_to_num(proj.project(vol[..., :2].reshape(-1, 2).T), nan=0.0)
    np.testing.assert_allclose(data[:2], expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(data).all() and (data != 0).mean() > 0.5


def test_unselected_participants_without_bold_are_skipped(narratives, meta_root, tmp_path):
    res = import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"],
                         derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(narratives["gentle"]))
    assert load_dataset(tmp_path / "o", check_values=False).participants == ["sub-001", "sub-007", "sub-009"]
    assert any("skipped" in n for n in res.notes)


def test_malformed_inputs(narratives, meta_root, tmp_path):
    kw = dict(derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(narratives["gentle"]))
    # a requested participant whose BOLD is missing
    with pytest.raises(DatasetError, match=r"field 'bold'.*sub-002 / pieman"):
        import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-002"], **kw)
    # unknown story / participant (checked against the real participants.tsv)
    with pytest.raises(DatasetError, match=r"participants.tsv: field 'task': unknown stories \['nostory'\]"):
        import_dataset("narratives", meta_root, tmp_path / "o", stories=["nostory"], **kw)
    with pytest.raises(DatasetError, match="field 'participant_id'"):
        import_dataset("narratives", meta_root, tmp_path / "o", participants=["sub-999"], **kw)
    # missing transcript
    with pytest.raises(DatasetError, match=r"align.csv: field 'transcript'"):
        import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-007"],
                       derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(tmp_path / "nothing"))
    # a hemisphere missing
    deriv = tmp_path / "deriv"
    shutil.copytree(narratives["deriv"] / "afni-smooth" / "sub-007", deriv / "afni-smooth" / "sub-007")
    next((deriv / "afni-smooth/sub-007/func").glob("*hemi-R*")).unlink()
    with pytest.raises(DatasetError, match="hemisphere R missing"):
        import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-007"],
                       derivatives_dir=str(deriv), transcripts_dir=str(narratives["gentle"]))
    # GIfTI that is not an fsaverage mesh
    write_gifti(deriv / "afni-smooth/sub-007/func/sub-007_task-pieman_space-fsaverage6_hemi-R_desc-sm6.func.gii",
                np.zeros((T, 5000)))
    with pytest.raises(DatasetError, match="5000 vertices is not an fsaverage hemisphere"):
        import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-007"],
                       derivatives_dir=str(deriv), transcripts_dir=str(narratives["gentle"]))
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_bids_metadata_errors(narratives, meta_root, tmp_path):
    """Copy the real metadata of one participant, then break the sidecar and the events."""
    root = tmp_path / "bids"
    (root / "sub-007/func").mkdir(parents=True)
    shutil.copy(meta_root / "participants.tsv", root / "participants.tsv")
    for suffix in ("events.tsv", "bold.json"):
        shutil.copy(meta_root / f"sub-007/func/sub-007_task-pieman_{suffix}", root / f"sub-007/func/sub-007_task-pieman_{suffix}")
    kw = dict(stories=["pieman"], participants=["sub-007"], derivatives_dir=str(narratives["deriv"]),
              transcripts_dir=str(narratives["gentle"]))
    import_dataset("narratives", root, tmp_path / "ok", **kw)
    side = root / "sub-007/func/sub-007_task-pieman_bold.json"
    obj = json.loads(side.read_text())
    obj.pop("RepetitionTime")
    side.write_text(json.dumps(obj))
    with pytest.raises(DatasetError, match=r"sub-007_task-pieman_bold.json: field 'RepetitionTime'"):
        import_dataset("narratives", root, tmp_path / "o", **kw)
    shutil.copy(meta_root / "sub-007/func/sub-007_task-pieman_bold.json", side)
    ev = root / "sub-007/func/sub-007_task-pieman_events.tsv"
    ev.write_text(ev.read_text().replace("story", "speech"))
    with pytest.raises(DatasetError, match=r"events.tsv: field 'trial_type'"):
        import_dataset("narratives", root, tmp_path / "o", **kw)
    (root / "participants.tsv").write_text("participant_id\tage\nsub-007\t22\n")
    with pytest.raises(DatasetError, match=r"participants.tsv: field 'task'"):
        import_dataset("narratives", root, tmp_path / "o", **kw)


def test_read_gentle_json_and_bad_csv(tmp_path):
    f = tmp_path / "align.json"
    f.write_text(json.dumps({"transcript": "a b c", "words": [
        {"word": "a", "alignedWord": "a", "case": "success", "start": 1.0, "end": 1.2},
        {"word": "b", "case": "not-found-in-audio"},
        {"word": "c", "alignedWord": "<unk>", "case": "success", "start": 2.0, "end": 2.5},
    ]}))
    df = read_gentle(f)
    assert list(df["word"]) == ["a", "b", "c"] and df["onset"].tolist() == [1.0, 1.5, 2.0] and df["aligned"].tolist() == [True, False, True]
    bad = tmp_path / "align.csv"
    bad.write_text("a,a,1.0,1.2\nb,b,0.5,0.7\n")
    with pytest.raises(DatasetError, match="out of time order"):
        read_gentle(bad)
    bad.write_text("a,a,1.0\n")
    with pytest.raises(DatasetError, match="expected 4 columns"):
        read_gentle(bad)


# --------------------------------------------------------------------------------------
# Stimulus audio (issue 15)
# --------------------------------------------------------------------------------------

SR = 16000


def write_tone_wav(path: Path, seconds: float, tone_at: float, rate: int = SR, freq: float = 440.0) -> None:
    """A quiet noise floor with a 0.5-s tone starting ``tone_at`` s into the file."""
    import soundfile as sf

    rng = np.random.default_rng(3)
    x = 1e-4 * rng.standard_normal(int(seconds * rate))
    i0 = int(tone_at * rate)
    t = np.arange(int(0.5 * rate)) / rate
    x[i0:i0 + t.size] += 0.5 * np.sin(2 * np.pi * freq * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def test_no_audio_gives_a_note(narratives):
    ds = load_dataset(narratives["out"])
    assert ds.audio == {}
    note = next(n for n in narratives["result"].notes if "no stimulus audio" in n)
    assert "pieman_audio.wav" in note and "stimuli" in note  # says where it looked


@pytest.mark.parametrize("clock, tone_on_run_clock", [("audio", 20.0), ("story", 5.0)])
def test_audio_attached_on_the_transcript_clock(narratives, meta_root, tmp_path, clock, tone_on_run_clock):
    # pieman_audio.wav (named by events.tsv's stim_file) starts with the scan; the tone is 20 s into it:
    # transcript clock 'audio' -> onset 0, tone at 20 s; clock 'story' (zero = story event at 15 s) -> onset -15, tone at 5 s
    # (with 'story' the transcript's last word, 30.7 s, is 45.7 s into the file: the file must be that long)
    write_tone_wav(tmp_path / "stim" / "pieman_audio.wav", 46.0, 20.0, rate=22050)
    res = import_dataset("narratives", meta_root, tmp_path / "o", stories=["pieman"], participants=["sub-007"], word_clock=clock,
                         derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(narratives["gentle"]),
                         audio_dir=str(tmp_path / "stim"))
    assert any("resampled from 22050 Hz" in n for n in res.notes) and not any("no stimulus audio" in n for n in res.notes)
    ds = load_dataset(tmp_path / "o")
    track = ds.audio["pieman"]
    assert track.onset == pytest.approx(0.0 if clock == "audio" else -15.0)
    assert track.duration == pytest.approx(46.0, abs=1e-3) and "pieman_audio.wav" in track.source
    x = track.read()
    tone = track.window(tone_on_run_clock + 0.1, tone_on_run_clock + 0.4, x)
    assert _rms(tone) > 0.3 and _rms(track.window(tone_on_run_clock - 0.5, tone_on_run_clock - 0.1, x)) < 1e-3
    assert _rms(track.window(tone_on_run_clock + 0.6, tone_on_run_clock + 1.0, x)) < 1e-3
    # no_audio: same import without the sound and without a note about it
    res = import_dataset("narratives", meta_root, tmp_path / "o2", stories=["pieman"], participants=["sub-007"],
                         derivatives_dir=str(narratives["deriv"]), transcripts_dir=str(narratives["gentle"]),
                         audio_dir=str(tmp_path / "stim"), audio=False)
    assert load_dataset(tmp_path / "o2").audio == {} and not any("audio" in n for n in res.notes)


def test_bad_audio_writes_nothing(narratives, meta_root, tmp_path, capsys):
    from brainviz.cli import main

    # the last transcript word ends at 15.2 + 39 * 0.4 + 0.3 = 31.1 s: a 20-s file is too short for its words
    write_tone_wav(tmp_path / "stim" / "pieman_audio.wav", 20.0, 5.0)
    kw = dict(stories=["pieman"], participants=["sub-007"], derivatives_dir=str(narratives["deriv"]),
              transcripts_dir=str(narratives["gentle"]), audio_dir=str(tmp_path / "stim"))
    with pytest.raises(DatasetError, match=r"pieman_audio.wav.*audio too short for its words"):
        import_dataset("narratives", meta_root, tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]
    (tmp_path / "stim" / "pieman_audio.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(DatasetError, match=r"pieman_audio.wav.*unreadable audio"):
        import_dataset("narratives", meta_root, tmp_path / "o", **kw)
    # required but absent -> error; the CLI's --no-audio imports without it
    with pytest.raises(DatasetError, match=r"nothing/pieman_audio.wav: field 'audio'.*not found"):
        import_dataset("narratives", meta_root, tmp_path / "o", **{**kw, "audio_dir": str(tmp_path / "nothing")}, audio=True)
    assert not (tmp_path / "o").exists()
    rc = main(["import", "narratives", str(meta_root), "--stories", "pieman", "--participants", "sub-007", "--no-audio",
               "--derivatives-dir", str(narratives["deriv"]), "--transcripts-dir", str(narratives["gentle"]),
               "--audio-dir", str(tmp_path / "stim"), "--out", str(tmp_path / "cli")])
    assert rc == 0 and load_dataset(tmp_path / "cli").audio == {}
    assert not any("audio" in n for n in json.loads(capsys.readouterr().out)["notes"])
