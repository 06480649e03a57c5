"""Dataset model: manifest round-trip and clear errors on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.data import Dataset, DatasetError, DatasetMeta, FMRIRecording, MEGRecording, Run, Space, load_dataset


def make_dataset(n_units: int = 12, space: Space | None = None, runs=(("r1", 30), ("r2", 30)), meg=True) -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for name, n_trs in runs:
        n_words = int(n_trs * 2 * 2 * 0.8)  # 2 words/s over 80 % of the run
        for i in range(n_words):
            rows.append({"onset": 0.5 * i, "duration": 0.5, "word": f"w{i}", "run": name, "story": "s"})
    stim = pd.DataFrame(rows)
    space = space or Space("rois", roi_names=[f"roi{i}" for i in range(n_units)])
    total = sum(n for _, n in runs)
    fmri = {
        p: FMRIRecording(p, rng.standard_normal((total, n_units)).astype(np.float32), 2.0, [Run(n, k) for n, k in runs], space)
        for p in ("sub-01", "sub-02")
    }
    megs = {}
    if meg:
        megs["sub-01"] = MEGRecording(
            "sub-01", rng.standard_normal((len(stim), 3, 4)).astype(np.float32), 0.025, ["MEG1", "MEG2", "MEG3"], np.arange(len(stim))
        )
    return Dataset(DatasetMeta(name="toy", simulated=True, modality="reading"), stim, fmri, megs)


@pytest.fixture()
def saved(tmp_path) -> Path:
    return make_dataset().save(tmp_path / "toy")


def test_round_trip(saved):
    ds = load_dataset(saved)
    again = load_dataset(ds.save(saved.parent / "copy"))
    s = again.summary()
    assert s["participants"] == ["sub-01", "sub-02"]
    assert s["meg_participants"] == ["sub-01"]
    assert (s["n_fmri_participants"], s["n_meg_participants"], s["n_runs"], s["tr"]) == (2, 1, 2, 2.0)
    assert s["space"] == "rois" and s["n_units"] == 12 and s["simulated"] is True
    assert s["stories"] == ["s"] and s["n_words"] == len(ds.stimulus)
    np.testing.assert_array_equal(np.asarray(again.fmri["sub-02"].data), np.asarray(ds.fmri["sub-02"].data))
    np.testing.assert_array_equal(np.asarray(again.meg["sub-01"].data), np.asarray(ds.meg["sub-01"].data))
    pd.testing.assert_frame_equal(again.stimulus, ds.stimulus)
    assert (saved / "dataset.json").read_bytes() == (saved.parent / "copy" / "dataset.json").read_bytes()


def test_volume_space_round_trip(tmp_path):
    coords = np.array([[0, 0, 0], [1, 2, 3], [4, 4, 4]])
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    ds = make_dataset(n_units=3, space=Space("volume", template="MNI", affine=affine, shape=(5, 5, 5), coords=coords), meg=False)
    loaded = load_dataset(ds.save(tmp_path / "vol"))
    sp = loaded.fmri["sub-01"].space
    np.testing.assert_allclose(sp.mni_coordinates()[1], [-87, -120, -63])
    assert loaded.summary()["space"] == "volume"


def test_save_refuses_to_overwrite_and_leaves_no_temp(saved):
    with pytest.raises(FileExistsError):
        make_dataset().save(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["toy"]


def test_invalid_dataset_is_not_written(tmp_path):
    ds = make_dataset()
    ds.fmri["sub-01"].data[3, 2] = np.nan
    with pytest.raises(DatasetError, match="non-finite"):
        ds.save(tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bad inputs


def _manifest(path: Path) -> dict:
    return json.loads((path / "dataset.json").read_text())


def _write_manifest(path: Path, m: dict) -> None:
    (path / "dataset.json").write_text(json.dumps(m))


def _edit_manifest(fn):
    def apply(path: Path) -> None:
        m = _manifest(path)
        fn(m)
        _write_manifest(path, m)

    return apply


def _missing_array(path):
    (path / "fmri" / "sub-02.npy").unlink()


def _nan_values(path):
    a = np.load(path / "fmri" / "sub-01.npy")
    a[5, 1] = np.nan
    np.save(path / "fmri" / "sub-01.npy", a)


def _shape_mismatch(path):
    a = np.load(path / "fmri" / "sub-01.npy")
    np.save(path / "fmri" / "sub-01.npy", a[:-3])


def _wrong_dtype(path):
    a = np.load(path / "fmri" / "sub-01.npy")
    np.save(path / "fmri" / "sub-01.npy", a.astype(np.float64))


def _truncated(path):
    f = path / "fmri" / "sub-01.npy"
    f.write_bytes(f.read_bytes()[:-100])


def _words_out_of_order(path):
    stim = pd.read_csv(path / "stimulus.tsv", sep="\t")
    stim.loc[10, "onset"] = 0.1
    stim.to_csv(path / "stimulus.tsv", sep="\t", index=False)


def _missing_column(path):
    stim = pd.read_csv(path / "stimulus.tsv", sep="\t")
    stim.drop(columns=["onset"]).to_csv(path / "stimulus.tsv", sep="\t", index=False)


def _meg_wrong_sensors(path):
    m = _manifest(path)
    m["participants"]["meg"]["sub-01"]["sensors"] = ["only-one"]
    _write_manifest(path, m)


def _object_array(path):
    np.save(path / "fmri" / "sub-01.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


BAD_INPUTS = {
    "missing file": (_missing_array, "sub-02.npy", "array file missing"),
    "missing manifest": (lambda p: (p / "dataset.json").unlink(), "dataset.json", "manifest missing"),
    "broken json": (lambda p: (p / "dataset.json").write_text("{"), "dataset.json", "not valid JSON"),
    "NaN values": (_nan_values, "sub-01.npy", "non-finite"),
    "shape mismatch": (_shape_mismatch, "sub-01.npy", "runs add up to"),
    "unknown space": (_edit_manifest(lambda m: m["space"].update(kind="fsaverage7")), "space.kind", "unknown space"),
    "TR <= 0": (_edit_manifest(lambda m: m["participants"]["fmri"]["sub-01"].update(tr=0)), "participants.fmri.sub-01.tr", "TR must be"),
    "words out of time order": (_words_out_of_order, "stimulus.tsv", "out of time order"),
    "missing column": (_missing_column, "field 'onset'", "missing column"),
    "truncated array": (_truncated, "sub-01.npy", "unreadable"),
    "wrong dtype": (_wrong_dtype, "field 'dtype'", "float32"),
    "empty run": (_edit_manifest(lambda m: m["participants"]["fmri"]["sub-01"]["runs"].append({"name": "r3", "n_trs": 0})), "runs", "empty"),
    "run without words": (_edit_manifest(lambda m: m["participants"]["fmri"]["sub-01"]["runs"][1].update(name="rX")), "runs", "no words"),
    "schema version": (_edit_manifest(lambda m: m.update(schema_version=99)), "schema_version", "unsupported"),
    "simulated not bool": (_edit_manifest(lambda m: m.update(simulated="yes")), "simulated", "true or false"),
    "meg sensors": (_meg_wrong_sensors, "sensors", "sensor names"),
    "pickled object array": (_object_array, "sub-01.npy", "unreadable"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error(saved, case):
    corrupt, where, what = BAD_INPUTS[case]
    corrupt(saved)
    with pytest.raises(DatasetError) as info:
        load_dataset(saved)
    msg = str(info.value)
    assert where in msg, msg
    assert what in msg, msg


def test_unknown_participant(saved):
    ds = load_dataset(saved)
    with pytest.raises(DatasetError, match="unknown participant 'sub-99'.*sub-01"):
        ds.fmri_of("sub-99")
    with pytest.raises(DatasetError, match="MEG participant"):
        ds.meg_of("sub-02")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")


def test_cli_info(saved, capsys):
    from brainviz.cli import main

    assert main(["info", str(saved)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_fmri_participants"] == 2
    shutil.rmtree(saved / "fmri")
    assert main(["info", str(saved)]) == 2
    assert "array file missing" in capsys.readouterr().err


def test_content_hash(saved, tmp_path):
    ds = load_dataset(saved)
    h = ds.content_hash()
    assert h == load_dataset(saved).content_hash()
    in_memory = make_dataset()
    assert in_memory.content_hash() == make_dataset().content_hash()
    a = np.load(saved / "fmri" / "sub-01.npy")
    a[0, 0] += 1
    np.save(saved / "fmri" / "sub-01.npy", a)
    assert load_dataset(saved).content_hash() != h
