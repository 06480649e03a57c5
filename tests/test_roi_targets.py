"""Glasser-ROI training targets (``--roi-mask glasser:PATH[:SET]``, issue 15) with the real
Glasser atlas of ``../shared/data/atlases/ENIGMA`` (skipped when the folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _speech_fixtures import listening_small, tiny_models  # noqa: F401  (fixtures)
from brainviz.errors import DatasetError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "atlases"
N_PER_HEMI = 10242


@pytest.fixture(scope="module")
def enigma() -> Path:
    root = SHARED / "ENIGMA"
    if not (root / "parcellations" / "glasser_360_fsa5.csv").is_file():
        pytest.skip("../shared/data/atlases/ENIGMA is absent (the real Glasser atlas lives beside the repo)")
    return root


def test_glasser_sets_select_both_hemispheres(enigma):
    from brainviz.data.atlases import load_glasser, roi_mask
    from brainviz.tuning.data import glasser_roi
    from brainviz.tuning.train import _load_roi_mask

    late = glasser_roi(f"glasser:{enigma}", 20484)  # default set
    assert late.roi_set == "late-language"
    assert late.n_left > 0 and late.n_right > 0
    assert np.any(late.units < N_PER_HEMI) and np.any(late.units >= N_PER_HEMI)
    assert late.atlas_file.endswith("glasser_360_fsa5.csv")
    expected = np.flatnonzero(roi_mask(load_glasser(enigma), "late-language"))
    np.testing.assert_array_equal(late.units, expected)
    # the training job's unit selection is exactly the atlas's ROI
    np.testing.assert_array_equal(_load_roi_mask(f"glasser:{enigma}:late-language", 20484), expected)
    audi = glasser_roi(f"glasser:{enigma}:early-auditory", 20484)
    assert audi.roi_set == "early-auditory" and audi.n_left > 0 and audi.n_right > 0
    assert not set(audi.units.tolist()) & set(late.units.tolist())  # core/belt auditory is no late-language area
    assert "L_A1" in audi.parcels and "R_44" in late.parcels


def test_glasser_spec_errors_name_the_field(enigma, tmp_path):
    from brainviz.tuning.data import glasser_roi

    with pytest.raises(DatasetError, match="field 'roi_mask'.*unknown Glasser ROI set 'nope'") as err:
        glasser_roi(f"glasser:{enigma}:nope")
    assert err.value.field == "roi_mask"
    with pytest.raises(DatasetError, match="unknown Glasser ROI set 'language-parcels'"):  # not a Glasser set
        glasser_roi(f"glasser:{enigma}:language-parcels")
    missing = tmp_path / "no-atlas"
    with pytest.raises(DatasetError, match="roi_mask") as err:
        glasser_roi(f"glasser:{missing}")
    assert str(missing) in str(err.value) and err.value.field == "roi_mask"
    with pytest.raises(DatasetError, match="fsaverage5"):
        glasser_roi(f"glasser:{enigma}", 1000)  # data not on fsaverage5
    with pytest.raises(DatasetError, match="roi_mask"):
        glasser_roi("glasser:")


def test_train_with_glasser_targets_predicts_only_the_roi(enigma, listening_small, tiny_models, tmp_path, capsys):  # noqa: F811
    from brainviz.cli import main
    from brainviz.models import load_checkpoint
    from brainviz.tuning.data import glasser_roi

    def train(roi: str, out: Path) -> int:
        return main(["train", "--dataset", str(listening_small), "--modality", "audio", "--base",
                     str(tiny_models["wav2vec2"]), "--preset", "quick", "--folds", "listening_2", "--participants",
                     "sub-01", "--variant", "vanilla", "--epochs", "1", "--audio-chunks", "2", "--quiet",
                     "--roi-mask", roi, "--out", str(out)])

    # a wrong set is refused before anything is written
    assert train(f"glasser:{enigma}:auditory", tmp_path / "bad") == 2
    assert "roi_mask" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "glasser"
    assert train(f"glasser:{enigma}:early-auditory", out) == 0
    roi = glasser_roi(f"glasser:{enigma}:early-auditory", 20484)
    card = json.loads((out / "card.json").read_text())
    assert card["roi_mask"]["roi_set"] == "early-auditory"
    assert card["roi_mask"]["atlas_file"].endswith("glasser_360_fsa5.csv")
    assert card["roi_mask"]["n_units"] == len(roi.units) == card["roi_mask"]["n_left"] + card["roi_mask"]["n_right"]
    stored = load_checkpoint(out).predictions("sub-01")
    assert stored["predictions"].shape[1] == len(roi.units)
    np.testing.assert_array_equal(stored["units"], roi.units)
