"""Harry Potter importers (.mat release, .npy layout, MEG .npz) against format-faithful fixtures.

The fixtures mirror the real files: ``subject_N.mat`` written with ``scipy.io.savemat`` with the
same variables and struct fields as the Wehbe et al. 2014 release (``data``, ``time``, ``words``
struct array ``text/start/length``, ``meta`` struct with ``colToCoord`` (1-based), ``matrix``
...), the ``fMRI/*.npy`` layout (``time_fmri`` 0, 2, 4 ... on one clock, ``runs_fmri`` 1-4,
``words_fmri`` with ``+`` fixations and ``@`` italics markers, data without the 20 + 15 edge
TRs) and the MEG ``.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from brainviz.data import DatasetError, load_dataset
from brainviz.data.importers import import_dataset, load_collection
from brainviz.data.importers._common import load_npy

RUNS = (40, 38, 41, 37)  # TRs per run (the release has ~330; small here)
TR = 2.0
M = np.array([[-3.0, 0, 0, 81], [0, 3.0, 0, -115], [0, 0, 3.0, -53], [0, 0, 0, 1]])  # voxel (1-based) -> MNI
DIMS = (10, 12, 9)
TOKENS = "Harry + looked at the @owl , and the owl looked back . +".split()


def _words(n_trs: int) -> list[tuple[str, float, float]]:
    """Words at 0.5 s on the experiment clock, starting 20 s into each run (rest before/after)."""
    out, k = [], 0
    t0 = 0.0
    for n in RUNS:
        t = t0 + 20.0
        while t < t0 + n * TR - 12.0:
            out.append((TOKENS[k % len(TOKENS)], t, 0.5))
            t += 0.5
            k += 1
        t0 += n * TR
    return out


def write_mat(path: Path, subject: int, *, n_vox: int = 60, compress: bool = True, seed: int = 0, **override) -> dict:
    rng = np.random.default_rng(seed + subject)
    n = sum(RUNS)
    time = np.c_[np.arange(n) * TR, np.concatenate([[r + 1] * k for r, k in enumerate(RUNS)])]
    grid = np.argwhere(np.ones(DIMS)) + 1
    coords = grid[np.sort(rng.choice(len(grid), n_vox, replace=False))].astype(float)
    data = rng.standard_normal((n, n_vox))
    words = _words(n)
    w = np.zeros((1, len(words)), dtype=[("text", "O"), ("start", "O"), ("length", "O")])
    for i, (a, b, c) in enumerate(words):
        w[0, i] = (np.array([a]), np.array([[b]]), np.array([[c]]))
    coord_to_col = np.zeros(DIMS)
    for j, (x, y, z) in enumerate(coords.astype(int)):
        coord_to_col[x - 1, y - 1, z - 1] = j + 1
    meta = {
        "subject": float(subject), "nTRs": float(n), "nvoxels": float(n_vox), "dimx": float(DIMS[0]),
        "dimy": float(DIMS[1]), "dimz": float(DIMS[2]), "colToCoord": coords, "coordToCol": coord_to_col,
        "colToROInum": rng.integers(0, 117, (1, n_vox)).astype(float),  # AAL; 0 = not labelled
        "ROInumToName": np.array([[f"AAL_{i}" for i in range(1, 117)] + ["Not_labelled"]], dtype=object),
        "voxel_size": np.array([[3.0, 3, 3]]),
        "matrix": M,
    }
    vars_ = {"data": data, "time": time, "words": w, "meta": meta}
    for k, v in override.items():
        if k.startswith("meta."):
            if v is None:
                meta.pop(k[5:])
            else:
                meta[k[5:]] = v
        elif v is None:
            vars_.pop(k)
        else:
            vars_[k] = v
    sio.savemat(path, vars_, do_compression=compress)
    return {"data": data, "coords": coords, "time": time, "words": words}


@pytest.fixture()
def hp_mat(tmp_path) -> tuple[Path, dict]:
    src = tmp_path / "hp"
    src.mkdir()
    info = {s: write_mat(src / f"subject_{s}.mat", s, compress=(s == 1)) for s in (1, 2)}
    return src, info


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")], list(parent.iterdir())


# --------------------------------------------------------------------------------------
# .mat
# --------------------------------------------------------------------------------------


def test_mat_round_trip_per_participant(hp_mat, tmp_path):
    src, info = hp_mat
    res = import_dataset("harry-potter-mat", src, tmp_path / "out")
    assert res.layout == "per-participant"
    assert load_collection(tmp_path / "out") == {"subject_1": tmp_path / "out/subject_1", "subject_2": tmp_path / "out/subject_2"}
    assert "own voxel set" in (tmp_path / "out/README.md").read_text()
    for s in (1, 2):
        ds = load_dataset(tmp_path / f"out/subject_{s}")
        assert ds.simulated is False and "Wehbe" in ds.meta.citation and ds.meta.licence and ds.meta.source
        rec = ds.fmri[f"subject_{s}"]
        # streamed float32 conversion equals the source (compressed and uncompressed .mat)
        np.testing.assert_array_equal(np.asarray(rec.data), info[s]["data"].astype(np.float32))
        assert rec.tr == TR and [r.n_trs for r in rec.runs] == list(RUNS) and [r.name for r in rec.runs] == ["run1", "run2", "run3", "run4"]
        # voxel -> MNI: 0-based ijk with the adjusted affine == matrix applied to the 1-based colToCoord
        c1 = info[s]["coords"]
        expected = (np.c_[c1, np.ones(len(c1))] @ M.T)[:, :3]
        np.testing.assert_allclose(rec.space.mni_coordinates(), expected, atol=1e-9)
        np.testing.assert_array_equal(rec.space.coords, c1.astype(int) - 1)
        assert rec.space.template == "MNI" and rec.space.shape == DIMS
        rois = pd.read_csv(tmp_path / f"out/subject_{s}/source/voxel_rois.tsv", sep="\t", keep_default_na=False)
        assert len(rois) == rec.n_units
        assert all(n == (f"AAL_{v}" if v else "Not_labelled") for v, n in zip(rois["aal_label"], rois["aal_name"]))
        assert (rois[["i", "j", "k"]].to_numpy() == rec.space.coords).all()


def test_mat_word_and_tr_alignment(hp_mat, tmp_path):
    src, info = hp_mat
    import_dataset("harry-potter-mat", src, tmp_path / "out", participants=["1"])
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == ["subject_1"]
    ds = load_dataset(tmp_path / "out/subject_1")
    stim = ds.stimulus
    assert "+" not in set(stim["word"]) and "owl" in set(stim["word"]) and not stim["word"].str.contains("@").any()
    kept = [(w, t) for w, t, _ in info[1]["words"] if w != "+"]
    assert len(stim) == len(kept)
    run_start = {f"run{r + 1}": float(sum(RUNS[:r]) * TR) for r in range(4)}  # experiment-clock time of each run's first TR
    for (w, t), (_, row) in zip(kept, stim.iterrows()):
        assert row["onset"] + run_start[row["run"]] == pytest.approx(t)  # run clock zero = first TR of the run
        assert 0 <= row["onset"] < dict(zip(run_start, RUNS))[row["run"]] * TR
    assert (stim["duration"] == 0.5).all() and set(stim["story"]) == {"harry-potter-ch1"}
    # the words in the window of a TR are the ones presented before it (20 s rest at run start)
    rec = ds.fmri["subject_1"]
    assert rec.times[0] == 0.0 and rec.times[RUNS[0]] == 0.0  # every run restarts its clock


def test_mat_intersect_layout_is_one_dataset(hp_mat, tmp_path):
    src, info = hp_mat
    res = import_dataset("harry-potter-mat", src, tmp_path / "one", layout="intersect")
    assert res.layout == "dataset"
    ds = load_dataset(tmp_path / "one")
    assert ds.participants == ["subject_1", "subject_2"]
    common = {tuple(c) for c in info[1]["coords"].astype(int)} & {tuple(c) for c in info[2]["coords"].astype(int)}
    assert ds.fmri["subject_1"].n_units == len(common) > 0
    coords1 = ds.fmri["subject_1"].space.coords + 1
    col = {tuple(c): j for j, c in enumerate(info[2]["coords"].astype(int))}
    np.testing.assert_allclose(ds.fmri["subject_2"].data[:, 0], info[2]["data"][:, col[tuple(coords1[0])]].astype(np.float32))


def test_volume_maps_project_to_fsaverage5(hp_mat, tmp_path):
    from brainviz.data.atlases import volume_to_fsaverage5

    src, _ = hp_mat
    import_dataset("harry-potter-mat", src, tmp_path / "out", participants=["subject_1"])
    space = load_dataset(tmp_path / "out/subject_1").fmri["subject_1"].space
    surf = volume_to_fsaverage5(np.ones(space.n_units), space)
    assert surf.shape == (20484,)
    # the fixture grid covers only a small box: most vertices see no voxel (NaN), covered ones read ~1
    assert np.isnan(surf).any()


@pytest.mark.parametrize(
    "override, field",
    [
        ({"time": None}, "time"),
        ({"time": np.c_[np.arange(10) * 2.0, np.ones(10)]}, "time"),  # fewer rows than data
        ({"meta.colToCoord": np.full((60, 3), 50.0)}, "meta.colToCoord"),  # outside the grid
        ({"meta.matrix": np.eye(3)}, "meta.matrix"),
        ({"meta.nTRs": 3.0}, "meta.nTRs"),
        ({"words": np.zeros((1, 3), dtype=[("text", "O"), ("onset", "O")])}, "words.start"),
    ],
)
def test_mat_malformed_inputs_name_the_field(tmp_path, override, field):
    src = tmp_path / "hp"
    src.mkdir()
    if "words" in override:
        w = override["words"]
        for i in range(3):
            w[0, i] = (np.array(["a"]), np.array([[1.0]]))
    write_mat(src / "subject_1.mat", 1, **override)
    with pytest.raises(DatasetError) as err:
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    assert field in str(err.value) and "subject_1.mat" in str(err.value)
    _no_leftovers(tmp_path, "out")


def test_mat_more_malformed_inputs(tmp_path):
    src = tmp_path / "hp"
    src.mkdir()
    # uneven TR spacing inside a run
    n = sum(RUNS)
    t = np.arange(n) * TR
    t[5] += 0.7
    write_mat(src / "subject_1.mat", 1, time=np.c_[t, np.concatenate([[r + 1] * k for r, k in enumerate(RUNS)])])
    with pytest.raises(DatasetError, match="not evenly spaced"):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    # NaN in the fMRI data (found while streaming, named with its position)
    data = np.random.default_rng(0).standard_normal((n, 60))
    data[7, 3] = np.nan
    write_mat(src / "subject_1.mat", 1, data=data)
    with pytest.raises(DatasetError, match=r"field 'data'.*TR 7, voxel 3"):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    _no_leftovers(tmp_path, "out")
    # words on another clock (outside every run)
    write_mat(src / "subject_1.mat", 1)
    good = sio.loadmat(src / "subject_1.mat")
    w = good["words"]
    w[0, 0]["start"] = np.array([[99999.0]])
    sio.savemat(src / "subject_1.mat", {"data": good["data"], "time": good["time"], "words": w, "meta": good["meta"][0, 0]})
    with pytest.raises(DatasetError, match="words.start"):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    # MATLAB -v7.3 (HDF5) and truncated files
    (src / "subject_1.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b" " * 200)
    with pytest.raises(DatasetError, match="v7.3"):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    write_mat(src / "subject_1.mat", 1, compress=False)
    raw = (src / "subject_1.mat").read_bytes()
    (src / "subject_1.mat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="subject_1.mat"):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    # unknown participant, empty folder
    write_mat(src / "subject_1.mat", 1)
    with pytest.raises(DatasetError, match="unknown participants"):
        import_dataset("harry-potter-mat", src, tmp_path / "out", participants=["7"])
    with pytest.raises(DatasetError, match="no subject_N.mat"):
        import_dataset("harry-potter-mat", tmp_path, tmp_path / "out")
    _no_leftovers(tmp_path, "out")


def test_mat_intersect_needs_identical_grids(hp_mat, tmp_path):
    src, _ = hp_mat
    write_mat(src / "subject_2.mat", 2, **{"meta.matrix": M @ np.diag([1, 1, 1.0, 1]) + np.c_[np.zeros((4, 3)), [1, 0, 0, 0]]})
    with pytest.raises(DatasetError, match="meta.matrix"):
        import_dataset("harry-potter-mat", src, tmp_path / "one", layout="intersect")


def test_existing_output_is_not_touched(hp_mat, tmp_path):
    src, _ = hp_mat
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        import_dataset("harry-potter-mat", src, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"
    import_dataset("harry-potter-mat", src, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists()


# --------------------------------------------------------------------------------------
# .npy layout
# --------------------------------------------------------------------------------------


def write_npy_layout(root: Path, *, trimmed: bool = True, object_words: bool = True, n_vox=(30, 25)) -> dict:
    fm = root / "fMRI"
    fm.mkdir(parents=True)
    n = sum(RUNS)
    np.save(fm / "time_fmri.npy", np.arange(n) * TR)
    np.save(fm / "runs_fmri.npy", np.concatenate([[r + 1] * k for r, k in enumerate(RUNS)]))
    words = _words(n)
    np.save(fm / "time_words_fmri.npy", np.array([t for _, t, _ in words]))
    if object_words:  # the release's words_fmri.npy is an object array (np.load needs allow_pickle)
        np.save(fm / "words_fmri.npy", np.array([w for w, _, _ in words], dtype=object), allow_pickle=True)
    else:
        np.save(fm / "words_fmri.npy", np.array([w for w, _, _ in words]))
    rng = np.random.default_rng(3)
    out = {}
    for subj, nv in zip("FH", n_vox):
        rows = n - 35 * len(RUNS) if trimmed else n
        out[subj] = rng.standard_normal((rows, nv))
        np.save(fm / f"data_subject_{subj}.npy", out[subj])
    return {"data": out, "words": words}


def test_npy_layout_trimmed(tmp_path):
    info = write_npy_layout(tmp_path / "src")
    res = import_dataset("harry-potter-npy", tmp_path / "src", tmp_path / "out")
    assert set(res.datasets) == {"F", "H"} and any("trim_start=0" in n for n in res.notes)
    ds = load_dataset(tmp_path / "out/F")
    rec = ds.fmri["F"]
    assert rec.space.kind == "rois" and rec.n_units == 30
    assert [r.n_trs for r in rec.runs] == [k - 35 for k in RUNS] and all(r.start == 20 * TR for r in rec.runs)
    np.testing.assert_array_equal(np.asarray(rec.data), info["data"]["F"].astype(np.float32))
    assert len(ds.stimulus) == sum(w != "+" for w, _, _ in info["words"])
    assert "trim_start=0" in ds.meta.description
    # first kept TR of run 2 starts 20 TRs after run 2's first TR; words keep their run clock
    assert rec.times[rec.runs[0].n_trs] == 40.0


def test_npy_layout_full_and_plain_words(tmp_path):
    write_npy_layout(tmp_path / "src", trimmed=False, object_words=False)
    import_dataset("harry-potter-npy", tmp_path / "src" / "fMRI", tmp_path / "out", participants=["H"])
    rec = load_dataset(tmp_path / "out/H").fmri["H"]
    assert [r.n_trs for r in rec.runs] == list(RUNS) and rec.runs[0].start == 0.0


def test_npy_rejects_wrong_row_count_and_code_in_pickles(tmp_path):
    write_npy_layout(tmp_path / "src")
    fm = tmp_path / "src/fMRI"
    np.save(fm / "data_subject_F.npy", np.zeros((17, 30)))
    with pytest.raises(DatasetError, match=r"data_subject_F.npy: field 'data': has 17 TRs"):
        import_dataset("harry-potter-npy", tmp_path / "src", tmp_path / "out")
    _no_leftovers(tmp_path, "out")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    arr = np.empty(2, dtype=object)
    arr[:] = [Evil(), "x"]
    np.save(fm / "words_fmri.npy", arr, allow_pickle=True)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_npy(fm / "words_fmri.npy", "words_fmri", strings=True)
    np.save(fm / "words_fmri.npy", np.array(["a"] * 5))
    np.save(fm / "time_words_fmri.npy", np.arange(4.0))
    with pytest.raises(DatasetError, match="time_words_fmri"):
        import_dataset("harry-potter-npy", tmp_path / "src", tmp_path / "out")


# --------------------------------------------------------------------------------------
# MEG .npz
# --------------------------------------------------------------------------------------


def write_meg(path: Path, *, compressed: bool = False, rois: bool = False, words=None, n_sens: int = 6, n_bins: int = 5) -> dict:
    words = words if words is not None else [w for w, _, _ in _words(sum(RUNS))]
    blocks = np.repeat(np.arange(1, 5), int(np.ceil(len(words) / 4)))[: len(words)]
    data = np.random.default_rng(5).standard_normal((3, len(words), n_sens, n_bins))
    arrays = {"stimuli": np.array(words), "blocks": blocks, "data": data, "subjects": np.array(["A", "B", "C"])}
    if rois:
        arrays["rois"] = np.array([f"roi{i}" for i in range(n_sens)])
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


@pytest.mark.parametrize("compressed", [False, True])
def test_meg_npz(tmp_path, compressed):
    arrays = write_meg(tmp_path / "meg.npz", compressed=compressed, rois=compressed)
    import_dataset("harry-potter-meg", tmp_path / "meg.npz", tmp_path / "out", participants=["A", "C"])
    ds = load_dataset(tmp_path / "out")
    assert ds.meg_participants == ["A", "C"] and ds.participants == []
    keep = np.array([w != "+" for w in arrays["stimuli"]])
    rec = ds.meg["C"]
    np.testing.assert_allclose(rec.data, arrays["data"][2][keep].astype(np.float32))
    assert rec.bin_width == 0.025 and rec.sensors[0] == ("roi0" if compressed else "sensor000")
    np.testing.assert_array_equal(rec.word_index, np.arange(keep.sum()))
    assert list(ds.stimulus["word"]) == [w.replace("@", "") for w in arrays["stimuli"][keep]]
    assert ds.runs == ["run1", "run2", "run3", "run4"]


def test_meg_malformed(tmp_path):
    a = write_meg(tmp_path / "meg.npz")
    np.savez(tmp_path / "bad.npz", stimuli=a["stimuli"], blocks=a["blocks"][:-3], data=a["data"], subjects=a["subjects"])
    with pytest.raises(DatasetError, match=r"bad.npz: field 'blocks'"):
        import_dataset("harry-potter-meg", tmp_path / "bad.npz", tmp_path / "out")
    np.savez(tmp_path / "bad.npz", stimuli=a["stimuli"], blocks=a["blocks"], data=a["data"][0], subjects=a["subjects"])
    with pytest.raises(DatasetError, match=r"field 'data': must be 4-D"):
        import_dataset("harry-potter-meg", tmp_path / "bad.npz", tmp_path / "out")
    np.savez(tmp_path / "bad.npz", stimuli=a["stimuli"], data=a["data"], subjects=a["subjects"])
    with pytest.raises(DatasetError, match=r"field 'blocks': array missing"):
        import_dataset("harry-potter-meg", tmp_path / "bad.npz", tmp_path / "out")
    _no_leftovers(tmp_path, "out")


def test_npy_with_meg_aligns_words(tmp_path):
    info = write_npy_layout(tmp_path / "src")
    words = [w for w, _, _ in info["words"]]
    meg_words = words[:10] + ["EXTRA"] + words[10:]  # one MEG epoch without an fMRI word
    write_meg(tmp_path / "meg.npz", words=meg_words)
    res = import_dataset("harry-potter-npy", tmp_path / "src", tmp_path / "out", meg=str(tmp_path / "meg.npz"),
                         meg_participants=("A", "B"))
    dsF, dsH = load_dataset(tmp_path / "out/F"), load_dataset(tmp_path / "out/H")
    assert dsF.meg_participants == ["A", "B"] and any("epochs matched" in n for n in res.notes)
    rec = dsF.meg["A"]
    assert rec.data.shape[0] == len(rec.word_index) == sum(w != "+" for w in words)
    assert list(dsF.stimulus["word"].iloc[rec.word_index[:12]]) == [w.replace("@", "") for w in words if w != "+"][:12]
    # the MEG arrays are stored once (hard links), not once per fMRI participant
    f1, f2 = tmp_path / "out/F/meg/A.npy", tmp_path / "out/H/meg/A.npy"
    assert f1.stat().st_ino == f2.stat().st_ino or f1.read_bytes() == f2.read_bytes()
    assert json.loads((tmp_path / "out/F/dataset.json").read_text())["participants"]["meg"]["A"]["bin_width"] == 0.025
    assert dsH.meg_participants == ["A", "B"]
