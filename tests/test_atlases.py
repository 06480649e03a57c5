"""Atlases: real ENIGMA fsaverage5 label vectors and language-parcel .mgh files from ../shared
(skipped when absent), synthetic .annot files, ROI masks/tables, volume -> fsaverage5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.data import DatasetError
from brainviz.data.atlases import (
    ROI_SETS,
    Atlas,
    SurfaceProjector,
    load_annot,
    load_atlas,
    load_glasser,
    load_language_parcels,
    load_label_vector,
    load_roi_mask,
    load_schaefer,
    roi_mask,
    roi_table,
    save_roi_mask,
    simulated_atlas,
    to_fsaverage5,
    volume_to_fsaverage5,
)
from brainviz.data.dataset import Space

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "atlases"


@pytest.fixture(scope="module")
def enigma() -> Path:
    root = SHARED / "ENIGMA"
    if not (root / "parcellations" / "glasser_360_fsa5.csv").is_file():
        pytest.skip("../shared/data/atlases/ENIGMA is absent")
    return root


@pytest.fixture(scope="module")
def glasser(enigma) -> Atlas:
    return load_glasser(enigma)


@pytest.fixture(scope="module")
def language_dir() -> Path:
    root = SHARED / "extended_language_network_parcels"
    if not root.is_dir():
        pytest.skip("../shared/data/atlases/extended_language_network_parcels is absent")
    return root


def test_glasser_from_enigma(glasser, enigma):
    names = (enigma / "matrices/hcp_connectivity/funcLabels_ctx_glasser_360.csv").read_text().strip().split(",")
    assert len(glasser.regions) == 360 and glasser.regions[:2] == names[:2] == ["L_V1", "L_MST"]
    raw = np.loadtxt(enigma / "parcellations/glasser_360_fsa5.csv").astype(int)
    assert raw.shape == (20484,)
    # the 17 right-hemisphere vertices labelled L_p24 (label 180) are cleared; everything else kept
    fixed = (raw != glasser.labels)
    assert fixed.sum() == 17 and (raw[fixed] == 180).all() and (np.flatnonzero(fixed) >= 10242).all()
    assert glasser.hemisphere_of("L_44") == "left" and glasser.hemisphere_of("R_44") == "right"
    raw_vec = load_label_vector(enigma / "parcellations/glasser_360_fsa5.csv", names, "g", fix_hemispheres=False)
    assert np.array_equal(raw_vec.labels, raw)


def test_late_language_roi_mask(glasser, tmp_path):
    rs = ROI_SETS["late-language"]
    assert rs.parcels == ("A5", "44", "45", "IFJa", "IFSp", "PGi", "PGp", "PGs", "TPOJ1", "TPOJ2", "TPOJ3",
                          "STGa", "STSda", "STSdp", "STSva", "TA2")
    mask = roi_mask(glasser, "late-language")
    assert mask.shape == (20484,) and mask.dtype == bool
    expected = np.isin(glasser.labels, [glasser.label_of(n) for n in rs.names()])
    assert np.array_equal(mask, expected) and mask[:10242].any() and mask[10242:].any()
    left = roi_mask(glasser, "late-language", hemispheres=["left"])
    assert not left[10242:].any() and left.sum() < mask.sum()
    # saved as the .npy that `brainviz train --roi-mask` reads (boolean, 20,484)
    path = save_roi_mask(tmp_path / "late.npy", mask)
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == bool and np.array_equal(loaded, mask) and np.array_equal(load_roi_mask(path), mask)
    with pytest.raises(DatasetError, match="no parcel named"):
        roi_mask(glasser, ["L_44", "L_Broca"])
    assert glasser.mask("L_STS*").sum() == glasser.mask(["L_STSda", "L_STSdp", "L_STSva", "L_STSvp"]).sum()


def test_roi_table(glasser):
    values = np.zeros(20484)
    values[glasser.mask("L_44")] = 2.0
    values[glasser.mask("R_44")] = np.nan
    df = roi_table(values, glasser, rois="late-language", threshold=1.0)
    assert isinstance(df, pd.DataFrame) and len(df) == 32
    row = df.set_index("roi").loc["L_44"]
    assert row["mean"] == 2.0 and row["frac_above"] == 1.0 and row["hemisphere"] == "left"
    r44 = df.set_index("roi").loc["R_44"]
    assert r44["n_valid"] == 0 and np.isnan(r44["mean"]) and r44["n_vertices"] > 0
    two = glasser.roi_summary({"a": values, "b": -values}, rois=["L_44"])
    assert list(two["map"]) == ["a", "b"] and two["mean"].tolist() == [2.0, -2.0]
    with pytest.raises(DatasetError, match="fsaverage5"):
        roi_table(np.zeros(100), glasser)


def test_schaefer(enigma):
    s = load_schaefer(enigma, 400)
    assert len(s.regions) == 400 and s.regions[0] == "7Networks_LH_Vis_1"
    default = s.mask("7Networks_*_Default_*")
    assert default.any() and default[:10242].any() and default[10242:].any()
    assert load_atlas("schaefer-200", root=enigma.parent / "ENIGMA").name == "schaefer-200"


def test_language_parcels_offset_quirk(language_dir):
    lang = load_language_parcels(language_dir)
    assert "rh offset 18" in lang.source
    assert lang.regions[:2] == ["L_IFGorb", "L_IFG"] and "R_PostTemp" in lang.regions and len(lang.regions) == 22
    # fsaverage5 = first 10,242 vertices of fsaverage; counts from the README (lh)
    counts = {n: int(lang.mask(n).sum()) for n in lang.regions}
    assert counts["L_IFGorb"] == 157 and counts["L_PostTemp"] == 838 and counts["L_MedSFG"] == 78
    assert counts["R_PostTemp"] == 860  # rh value 24 = lh 6 + 18
    assert roi_mask(lang, "language-parcels").sum() == sum(counts.values())


def test_annot_pair_on_fsaverage6_nests_to_fsaverage5(tmp_path):
    import nibabel.freesurfer as fs

    rng = np.random.default_rng(0)
    ctab = np.array([[0, 0, 0, 0, 0], [255, 0, 0, 0, 1], [0, 255, 0, 0, 2], [0, 0, 255, 0, 3]], dtype=np.int32)
    names = [b"???", b"L_V1_ROI", b"L_44_ROI", b"L_STSdp_ROI"]
    labels = {}
    for h in ("lh", "rh"):
        lab = rng.integers(0, 4, 40962).astype(np.int32)
        labels[h] = lab
        hn = names if h == "lh" else [n.replace(b"L_", b"R_") for n in names]
        fs.write_annot(str(tmp_path / f"{h}.HCP-MMP1.annot"), lab, ctab, hn, fill_ctab=True)
    atlas = load_glasser(tmp_path)
    assert sorted(atlas.regions) == sorted(["L_V1", "L_44", "L_STSdp", "R_V1", "R_44", "R_STSdp"])
    np.testing.assert_array_equal(atlas.mask("L_44")[:10242], labels["lh"][:10242] == 2)
    np.testing.assert_array_equal(atlas.mask("R_STSdp")[10242:], labels["rh"][:10242] == 3)
    assert not atlas.mask("L_V1")[10242:].any()
    with pytest.raises(DatasetError, match="right-hemisphere annotation not found"):
        load_annot(tmp_path / "lh.HCP-MMP1.annot", tmp_path / "missing.annot")


def test_nesting_and_bad_inputs(tmp_path):
    assert to_fsaverage5(np.arange(163842)).tolist() == list(range(10242))
    with pytest.raises(DatasetError, match="not an fsaverage hemisphere"):
        to_fsaverage5(np.zeros(5000))
    (tmp_path / "v.csv").write_text("\n".join(["1"] * 100))
    with pytest.raises(DatasetError, match=r"v.csv: field 'labels': has 100 values"):
        load_label_vector(tmp_path / "v.csv", ["a"])
    np.savetxt(tmp_path / "v.csv", np.full(20484, 3))
    with pytest.raises(DatasetError, match="only 2 parcel names"):
        load_label_vector(tmp_path / "v.csv", ["a", "b"])
    with pytest.raises(DatasetError, match="glasser atlas not found"):
        load_glasser(tmp_path / "nothing")
    np.save(tmp_path / "m.npy", np.zeros(20484, dtype=bool))
    with pytest.raises(DatasetError, match="selects no vertex"):
        load_roi_mask(tmp_path / "m.npy")
    with pytest.raises(DatasetError, match="boolean array of shape"):
        save_roi_mask(tmp_path / "x.npy", np.ones(10, dtype=bool))


def test_atlas_save_load(tmp_path):
    labels = np.zeros(20484, dtype=int)
    labels[:100] = 1
    labels[10242:10300] = 2
    a = Atlas("toy", labels, {1: "L_a", 2: "R_a"}, citation="c")
    b = Atlas.load(a.save(tmp_path / "toy.npz"))
    assert b.name == "toy" and b.names == a.names and np.array_equal(b.labels, a.labels) and b.citation == "c"
    assert load_atlas(tmp_path / "toy.npz").regions == ["L_a", "R_a"]
    with pytest.raises(DatasetError, match="no name"):
        Atlas("bad", labels, {1: "x"})


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_volume_to_fsaverage5_matches_vol_to_surf():
    import nibabel as nib
    from nilearn.datasets import load_fsaverage
    from nilearn.surface import vol_to_surf

    affine = np.array([[-6.0, 0, 0, 90], [0, 6.0, 0, -126], [0, 0, 6.0, -72], [0, 0, 0, 1]])
    shape = (31, 37, 31)
    rng = np.random.default_rng(0)
    inside = rng.random(shape) > 0.2
    coords = np.argwhere(inside)
    values = rng.standard_normal(len(coords))
    space = Space(kind="volume", template="MNI", affine=affine, shape=shape, coords=coords)
    surf = volume_to_fsaverage5(values, space)
    vol = np.zeros(shape)
    vol[inside] = values
    fsa = load_fsaverage("fsaverage5")
    ref = np.concatenate([
        vol_to_surf(nib.Nifti1Image(vol, affine), fsa["pial"].parts[h], inner_mesh=fsa["white_matter"].parts[h],
                    mask_img=nib.Nifti1Image(inside.astype(np.int8), affine))
        for h in ("left", "right")
    ])
    np.testing.assert_allclose(surf, ref, atol=1e-5, equal_nan=True)
    two = volume_to_fsaverage5(np.stack([values, 2 * values]), space)
    np.testing.assert_allclose(two[1], 2 * surf, atol=1e-5, equal_nan=True)
    with pytest.raises(DatasetError, match="only MNI volumes"):
        volume_to_fsaverage5(values, Space(kind="volume", template="native", affine=affine, shape=shape, coords=coords))
    # the projector is linear and reusable for many TRs
    proj = SurfaceProjector(affine, shape)
    assert proj.project(np.zeros((3, int(np.prod(shape))))).shape == (3, 20484)


def test_simulated_atlas_from_ground_truth(tmp_path):
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, load_dataset

    stim = pd.DataFrame({"onset": [1.0], "duration": [0.5], "word": ["a"], "run": ["r"], "story": ["s"]})
    rec = FMRIRecording("p", np.zeros((4, 20484), np.float32), 2.0, [Run("r", 4)], Space("fsaverage5"))
    Dataset(DatasetMeta("sim", True), stim, {"p": rec}).save(tmp_path / "sim")
    with pytest.raises(DatasetError, match="ground_truth"):
        simulated_atlas(tmp_path / "sim")
    gt = tmp_path / "sim" / "ground_truth"
    gt.mkdir()
    labels = np.zeros(20484, dtype=np.int32)
    labels[:50], labels[10242:10260] = 1, 2
    np.save(gt / "region_labels.npy", labels)
    (gt / "ground_truth.json").write_text(json.dumps({"regions": [{"label": 1, "name": "L_IFG"}, {"label": 2, "name": "R_IFG"}],
                                                        "networks": [{"name": "auditory"}]}))
    nets = np.zeros((1, 20484), np.float32)
    nets[0, 5000:5010] = 1.0
    np.save(gt / "network_maps.npy", nets)
    atlas = simulated_atlas(load_dataset(tmp_path / "sim"))
    assert atlas.regions == ["L_IFG", "R_IFG"] and atlas.mask("L_IFG").sum() == 50
    full = simulated_atlas(tmp_path / "sim", include_networks=True)
    assert load_atlas("simulated", root=tmp_path / "sim").regions == ["L_IFG", "R_IFG"]
    assert full.regions == ["L_IFG", "R_IFG", "auditory"] and full.mask("auditory").sum() == 10
