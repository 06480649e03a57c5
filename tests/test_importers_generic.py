"""Generic importer (words TSV + one array per participant) and the ``import`` command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.cli import main
from brainviz.data import DatasetError, load_dataset
from brainviz.data.importers import ImportConfig, import_dataset
from brainviz.config import ConfigError

N_TRS = {"r1": 30, "r2": 26}


def write_words(path: Path, runs=("r1", "r2"), with_run: bool = True) -> pd.DataFrame:
    rows = []
    for r in runs:
        for i in range(40):
            rows.append({"onset": 2.0 + 0.5 * i, "duration": 0.4, "word": f"w{i}", "run": r})
    df = pd.DataFrame(rows)
    if not with_run:
        df = df[df["run"] == runs[0]].drop(columns="run")
    df.to_csv(path, sep="\t", index=False)
    return df


def test_npy_fsaverage5_per_run_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv")
    rng = np.random.default_rng(0)
    arrays = {}
    for p in ("p1", "p2"):
        for r, n in N_TRS.items():
            arrays[p, r] = rng.standard_normal((n, 20484))
            np.save(src / f"{p}_run-{r}.npy", arrays[p, r])
    res = import_dataset("generic", src, tmp_path / "out", tr=2.0)
    ds = load_dataset(tmp_path / "out")
    assert res.layout == "dataset" and ds.participants == ["p1", "p2"] and ds.simulated is False
    rec = ds.fmri["p2"]
    assert rec.space.kind == "fsaverage5" and [(r.name, r.n_trs) for r in rec.runs] == [("r1", 30), ("r2", 26)]
    np.testing.assert_array_equal(rec.data[30:], arrays["p2", "r2"].astype(np.float32))


def test_csv_rois_with_runs_table(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv")
    pd.DataFrame({"run": ["r1", "r2"], "n_trs": [30, 26], "start": [0.0, 1.0]}).to_csv(src / "runs.tsv", sep="\t", index=False)
    data = np.random.default_rng(1).standard_normal((56, 3))
    pd.DataFrame(data, columns=["L_44", "L_45", "R_44"]).to_csv(src / "subj.csv", index=False)
    import_dataset("generic", src / "words.tsv", tmp_path / "out", tr=1.5, modality="listening")
    ds = load_dataset(tmp_path / "out")
    rec = ds.fmri["subj"]
    assert rec.space.kind == "rois" and rec.space.roi_names == ["L_44", "L_45", "R_44"] and ds.meta.modality == "listening"
    assert rec.runs[1].start == 1.0 and rec.tr == 1.5
    np.testing.assert_allclose(rec.data, data.astype(np.float32))


def test_fsaverage6_columns_and_gifti(tmp_path):
    import nibabel as nib

    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv", with_run=False)
    d6 = np.random.default_rng(2).standard_normal((20, 2 * 40962))
    np.save(src / "a.npy", d6)
    for h, sl in (("L", slice(0, 40962)), ("R", slice(40962, None))):
        img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.ascontiguousarray(d6[:, sl].T).astype(np.float32))])
        nib.save(img, str(tmp_path / f"b_hemi-{h}.func.gii"))
    import_dataset("generic", src / "words.tsv", tmp_path / "o1", tr=2.0, space="fsaverage6", fmri={"a": src / "a.npy"})
    a = load_dataset(tmp_path / "o1").fmri["a"].data
    np.testing.assert_allclose(a[:, :10242], d6[:, :10242].astype(np.float32))
    np.testing.assert_allclose(a[:, 10242:], d6[:, 40962:40962 + 10242].astype(np.float32))
    import_dataset("generic", src / "words.tsv", tmp_path / "o2", tr=2.0,
                   fmri=[f"b={tmp_path / 'b_hemi-L.func.gii'}", f"b={tmp_path / 'b_hemi-R.func.gii'}"])
    np.testing.assert_allclose(load_dataset(tmp_path / "o2").fmri["b"].data, a)


def test_nifti_volume_and_projection(tmp_path):
    import nibabel as nib

    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv", with_run=False)
    aff = np.array([[-8.0, 0, 0, 90], [0, 8.0, 0, -126], [0, 0, 8.0, -72], [0, 0, 0, 1]])
    rng = np.random.default_rng(3)
    vols = {}
    for p in ("x", "y"):
        v = rng.standard_normal((23, 28, 23, 8)).astype(np.float32)
        v[:5] = 0  # outside the "brain": dropped from the volume space
        vols[p] = v
        nib.save(nib.Nifti1Image(v, aff), str(src / f"{p}.nii.gz"))
    import_dataset("generic", src, tmp_path / "vol", tr=2.0)
    ds = load_dataset(tmp_path / "vol")
    sp = ds.fmri["x"].space
    assert sp.kind == "volume" and sp.template == "MNI" and sp.coords[:, 0].min() == 5
    c = sp.coords
    np.testing.assert_array_equal(ds.fmri["y"].data, vols["y"][c[:, 0], c[:, 1], c[:, 2]].T)
    np.testing.assert_allclose(sp.mni_coordinates()[0], aff[:3, :3] @ c[0] + aff[:3, 3])
    import_dataset("generic", src, tmp_path / "surf", tr=2.0, space="fsaverage5")
    assert load_dataset(tmp_path / "surf").fmri["x"].space.kind == "fsaverage5"


@pytest.mark.parametrize(
    "setup, kwargs, match",
    [
        (lambda s: (s / "words.tsv").write_text("onset\tword\n1\ta\n"), {}, r"words.tsv: field 'duration': missing column"),
        (lambda s: (s / "words.tsv").write_text("onset\tduration\tword\nx\t1\ta\n"), {}, r"field 'onset': non-numeric"),
        (lambda s: (s / "words.tsv").write_text("onset\tduration\tword\n2\t1\ta\n1\t1\tb\n"), {}, r"field 'onset': words out of time order"),
        (lambda s: np.save(s / "p.npy", np.zeros((5, 7))), {}, r"p.npy: field 'space': 7 columns"),
        (lambda s: np.save(s / "p.npy", np.zeros((5, 7))), {"space": "fsaverage5"}, r"p.npy: field 'data': has 7 columns"),
        (lambda s: np.save(s / "p.npy", np.full((5, 20484), np.nan)), {}, r"p.npy: field 'data': non-finite"),
        (lambda s: np.save(s / "p.npy", np.zeros(5)), {}, r"p.npy: field 'data': must be 2-D"),
        (lambda s: (s / "p.npy").write_bytes(b"\x93NUMPY garbage"), {}, r"p.npy: field 'data': not a readable .npy"),
        (lambda s: None, {"tr": None}, r"field 'tr'"),
        (lambda s: None, {"space": "mni"}, r"field 'space': unknown space"),
    ],
)
def test_malformed(tmp_path, setup, kwargs, match):
    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv", with_run=False)
    np.save(src / "p.npy", np.zeros((5, 20484)))
    setup(src)
    args = {"tr": 2.0, **kwargs}
    with pytest.raises(DatasetError, match=match):
        import_dataset("generic", src, tmp_path / "out", **args)
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_multi_run_file_needs_lengths(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv")
    np.save(src / "p.npy", np.zeros((56, 20484)))
    with pytest.raises(DatasetError, match=r"field 'run'.*runs.tsv"):
        import_dataset("generic", src, tmp_path / "out", tr=2.0)
    with pytest.raises(DatasetError, match="add up to 50"):
        import_dataset("generic", src, tmp_path / "out", tr=2.0, run_lengths={"r1": 30, "r2": 20})
    import_dataset("generic", src, tmp_path / "out", tr=2.0, run_lengths={"r1": 30, "r2": 26})
    assert [r.n_trs for r in load_dataset(tmp_path / "out").fmri["p"].runs] == [30, 26]


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown format"):
        ImportConfig(format="nope", src="a", out="b")
    with pytest.raises(ConfigError, match="unknown option"):
        ImportConfig(format="lebel", src="a", out="b", options={"colour": 1})
    c = ImportConfig(format="lebel", src="a", out="b", participants=("UTS01",))
    assert ImportConfig.from_dict(json.loads(c.to_json())) == c and len(c.key()) == 16


def test_cli_import_and_errors(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    write_words(src / "words.tsv")
    for r, n in N_TRS.items():
        np.save(src / f"p1_run-{r}.npy", np.random.default_rng(0).standard_normal((n, 20484)))
    assert main(["import", "generic", str(src), "--tr", "2", "--out", str(tmp_path / "d"), "--name", "demo"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "dataset" and load_dataset(tmp_path / "d").name == "demo"
    assert main(["import", "generic", str(src), "--tr", "2", "--out", str(tmp_path / "d")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import", "lebel", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "not a ds003020 folder" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "d"), "--quick"]) == 0
