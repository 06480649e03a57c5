"""LeBel et al. 2023 (ds003020) importer against a fixture in the real layout: HDF5 responses
(dataset ``data``), Praat TextGrids written with praatio (phone + word tiers, with the dataset's
non-word tokens), ``respdict.json`` and a pycortex ``mask_thick.nii.gz``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainviz.data import DatasetError, load_dataset
from brainviz.data.importers import import_dataset

STORIES = {"alternateithicatom": 34, "souls": 30}  # story -> rows in the .hf5
LABELS = ["sp", "I", "{LG}", "reached", "sentence_start", "over", "{BR}", "the", "ns", "fence"]


def write_textgrid(path: Path, n: int = 40) -> list[tuple[float, float, str]]:
    from praatio import textgrid
    from praatio.data_classes.interval_tier import IntervalTier

    words, t = [], 0.0
    for i in range(n):
        words.append((round(t, 3), round(t + 0.3, 3), LABELS[i % len(LABELS)]))
        t += 0.35
    tg = textgrid.Textgrid()
    tg.addTier(IntervalTier("phone", [(a, b, "AH0") for a, b, _ in words], 0, t + 1))
    tg.addTier(IntervalTier("word", words, 0, t + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return words


@pytest.fixture()
def ds003020(tmp_path) -> dict:
    import h5py
    import nibabel as nib

    root = tmp_path / "ds003020"
    deriv = root / "derivative"
    rng = np.random.default_rng(0)
    mask = np.zeros((7, 8, 6), dtype=bool)
    mask[1:5, 2:6, 1:4] = True
    mask[1, 2, 1] = False
    n_vox = int(mask.sum())
    data = {}
    for subj in ("UTS01", "UTS02"):
        for story, rows in STORIES.items():
            arr = rng.standard_normal((rows, n_vox)).astype(np.float32)
            p = deriv / "preprocessed_data" / subj / f"{story}.hf5"
            p.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(p, "w") as f:
                f["data"] = arr
            data[subj, story] = arr
        m = deriv / "pycortex-db" / subj / "transforms" / f"{subj}_auto"
        m.mkdir(parents=True)
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.diag([2.5, 2.5, 2.5, 1.0])), str(m / "mask_thick.nii.gz"))
    words = {s: write_textgrid(deriv / "TextGrids" / f"{s}.TextGrid") for s in STORIES}
    (deriv / "respdict.json").write_text(json.dumps({s: n + 20 for s, n in STORIES.items()}))
    return {"root": root, "deriv": deriv, "data": data, "mask": mask, "words": words}


def test_round_trip(ds003020, tmp_path):
    res = import_dataset("lebel", ds003020["root"], tmp_path / "out")
    assert res.layout == "per-participant" and set(res.datasets) == {"UTS01", "UTS02"}
    ds = load_dataset(tmp_path / "out/UTS02")
    assert ds.simulated is False and ds.meta.licence == "CC0" and "LeBel" in ds.meta.citation
    rec = ds.fmri["UTS02"]
    assert [(r.name, r.n_trs, r.start) for r in rec.runs] == [("alternateithicatom", 34, 10.0), ("souls", 30, 10.0)]
    assert rec.tr == 2.0
    np.testing.assert_array_equal(rec.data[:34], ds003020["data"]["UTS02", "alternateithicatom"])
    np.testing.assert_array_equal(rec.data[34:], ds003020["data"]["UTS02", "souls"])
    # voxel order is pycortex's: C order over the (z, y, x) volume
    zyx = np.argwhere(ds003020["mask"].T)
    np.testing.assert_array_equal(rec.space.coords, zyx[:, ::-1])
    assert rec.space.template == "native" and rec.space.shape == ds003020["mask"].shape


def test_textgrid_words_and_timing(ds003020, tmp_path):
    import_dataset("lebel", ds003020["deriv"], tmp_path / "out", participants=["1"], stories=["souls"])
    ds = load_dataset(tmp_path / "out/UTS01")
    assert ds.runs == ["souls"]
    expected = [(a, b - a, w) for a, b, w in ds003020["words"]["souls"] if w.lower().strip("{}") not in
                {"sp", "lg", "br", "ns", "sentence_start"}]
    got = list(ds.stimulus[["onset", "duration", "word"]].itertuples(index=False, name=None))
    assert [w for *_, w in got] == [w for *_, w in expected] == ["I", "reached", "over", "the", "fence"] * 4
    np.testing.assert_allclose([o for o, *_ in got], [o for o, *_ in expected], atol=1e-6)
    # row j of the response = TR starting 10 + 2 j s after the audio onset (TextGrid clock)
    assert ds.fmri["UTS01"].times[:3].tolist() == [10.0, 12.0, 14.0]


def test_no_mask_gives_anonymous_voxels(ds003020, tmp_path):
    import shutil

    shutil.rmtree(ds003020["deriv"] / "pycortex-db")
    with pytest.raises(DatasetError, match=r"field 'mask'.*--mask"):
        import_dataset("lebel", ds003020["root"], tmp_path / "out")
    import_dataset("lebel", ds003020["root"], tmp_path / "out", mask="none", participants=["UTS01"])
    assert load_dataset(tmp_path / "out/UTS01").fmri["UTS01"].space.kind == "rois"


def test_malformed(ds003020, tmp_path):
    import h5py

    deriv = ds003020["deriv"]
    # respdict disagrees with the number of rows (named: the respdict field of the story)
    (deriv / "respdict.json").write_text(json.dumps({"souls": 99, "alternateithicatom": 54}))
    with pytest.raises(DatasetError, match=r"respdict.json: field 'souls'"):
        import_dataset("lebel", ds003020["root"], tmp_path / "out")
    import_dataset("lebel", ds003020["root"], tmp_path / "out", check_respdict=False, participants=["UTS01"])
    (deriv / "respdict.json").write_text(json.dumps({s: n + 20 for s, n in STORIES.items()}))
    # missing TextGrid
    (deriv / "TextGrids" / "souls.TextGrid").unlink()
    with pytest.raises(DatasetError, match=r"souls.TextGrid: TextGrid not found"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2")
    (deriv / "TextGrids" / "souls.TextGrid").write_text("not a textgrid")
    with pytest.raises(DatasetError, match=r"souls.TextGrid: unreadable TextGrid"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2")
    write_textgrid(deriv / "TextGrids" / "souls.TextGrid")
    # wrong key, voxel count mismatch with the mask, unknown story
    with h5py.File(deriv / "preprocessed_data/UTS02/souls.hf5", "w") as f:
        f["resp"] = np.zeros((30, 5), np.float32)
    with pytest.raises(DatasetError, match=r"souls.hf5: field 'data': dataset missing"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2", participants=["UTS02"])
    with h5py.File(deriv / "preprocessed_data/UTS02/souls.hf5", "w") as f:
        f["data"] = np.zeros((30, 5), np.float32)
    with pytest.raises(DatasetError, match="has 5 voxels"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2", participants=["UTS02"])
    with pytest.raises(DatasetError, match=r"field 'stories'"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2", stories=["nostory"])
    with pytest.raises(DatasetError, match=r"not a ds003020 folder"):
        import_dataset("lebel", tmp_path, tmp_path / "o2")
    assert not (tmp_path / "o2").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o2.")]


# --------------------------------------------------------------------------------------
# Stimulus audio (issue 15): stimuli/{story}.wav, onset 0.0 on the TextGrid clock
# --------------------------------------------------------------------------------------


def write_tone_wav(path: Path, seconds: float, tone_at: float, rate: int = 16000) -> None:
    """A quiet noise floor with a 0.5-s 440 Hz tone starting ``tone_at`` s into the file."""
    import soundfile as sf

    x = 1e-4 * np.random.default_rng(4).standard_normal(int(seconds * rate))
    i0 = int(tone_at * rate)
    t = np.arange(int(0.5 * rate)) / rate
    x[i0:i0 + t.size] += 0.5 * np.sin(2 * np.pi * 440.0 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def test_audio_attached_when_present(ds003020, tmp_path):
    # the TextGrids' last word ends at 13.95 s; souls.wav (15 s) has a tone at 5 s, alternateithicatom has no audio
    write_tone_wav(ds003020["root"] / "stimuli" / "souls.wav", 15.0, 5.0)
    res = import_dataset("lebel", ds003020["root"], tmp_path / "out")
    note = next(n for n in res.notes if "no stimulus audio" in n)
    assert "alternateithicatom" in note and "stimuli" in note and "souls" not in note.split("(")[0]
    for subj in ("UTS01", "UTS02"):
        ds = load_dataset(tmp_path / f"out/{subj}")
        assert set(ds.audio) == {"souls"}
        track = ds.audio["souls"]
        assert track.onset == 0.0 and track.duration == pytest.approx(15.0) and "souls.wav" in track.source
        x = track.read()
        assert _rms(track.window(5.1, 5.4, x)) > 0.3
        assert _rms(track.window(4.5, 4.9, x)) < 1e-3 and _rms(track.window(5.6, 6.0, x)) < 1e-3
    # SRC = the derivative/ folder finds the same stimuli/ beside it; audio=False skips it without a note
    res = import_dataset("lebel", ds003020["deriv"], tmp_path / "o2", participants=["1"], stories=["souls"], audio=False)
    assert load_dataset(tmp_path / "o2/UTS01").audio == {} and not any("audio" in n for n in res.notes)
    import_dataset("lebel", ds003020["deriv"], tmp_path / "o3", participants=["1"], stories=["souls"])
    assert set(load_dataset(tmp_path / "o3/UTS01").audio) == {"souls"}


def test_no_audio_note_and_bad_audio(ds003020, tmp_path, capsys):
    from brainviz.cli import main

    res = import_dataset("lebel", ds003020["root"], tmp_path / "o1", participants=["1"])
    assert load_dataset(tmp_path / "o1/UTS01").audio == {}
    assert any("no stimulus audio" in n and "alternateithicatom" in n and "souls" in n for n in res.notes)
    # too short for its words (10 s < 13.95 s): error naming the file, nothing written
    write_tone_wav(ds003020["root"] / "stimuli" / "souls.wav", 10.0, 5.0)
    with pytest.raises(DatasetError, match=r"souls.wav.*audio too short for its words"):
        import_dataset("lebel", ds003020["root"], tmp_path / "o2")
    rc = main(["import", "lebel", str(ds003020["root"]), "--out", str(tmp_path / "o2")])
    assert rc != 0 and "souls.wav" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o2.")]
    # --no-audio imports the rest
    rc = main(["import", "lebel", str(ds003020["root"]), "--participants", "1", "--no-audio", "--out", str(tmp_path / "o3")])
    assert rc == 0 and load_dataset(tmp_path / "o3/UTS01").audio == {}
