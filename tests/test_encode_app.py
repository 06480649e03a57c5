"""Encoding figures (brainviz.viz.encoding) and the Encoding page, on a result fitted from small
synthetic features (no language model, so it is quick)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("himalaya")
REPO = Path(__file__).resolve().parents[1]


def _result(tmp_path: Path):
    from brainviz.data.importers import import_dataset
    from brainviz.data.preprocess import fmri_examples, folds
    from brainviz.evaluation.encode import EncodeConfig, EncodeResult, encode_participant, fold_ceilings, unit_names
    from brainviz.data.dataset import load_dataset
    from brainviz.data.splits import describe_cv

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    n = 120
    pd.DataFrame({"onset": np.arange(4, 236, 1.0), "duration": 0.3, "word": ["w"] * 232}).to_csv(
        src / "words.tsv", sep="\t", index=False)
    drive = rng.standard_normal(n)
    for p in range(3):
        y = np.c_[drive + rng.standard_normal(n), rng.standard_normal(n)]
        pd.DataFrame(y, columns=["A_roi", "B_roi"]).to_csv(src / f"s{p}.csv", index=False)
    ds_path = tmp_path / "data_cache" / "datasets" / "tiny"
    import_dataset("generic", src, ds_path, tr=2.0, space="rois")
    ds = load_dataset(ds_path)
    cfg = EncodeConfig(dataset=str(ds_path), preprocess={"trim_start": 0, "trim_end": 0})
    pre = cfg.preprocess_config()
    exs = {p: fmri_examples(ds, p, pre) for p in ds.participants}
    fs = folds(exs["s0"], pre)
    res = {}
    for p, ex in exs.items():
        rows = ex.tr_index
        lm = {0: rng.standard_normal((n, 8))[rows], 3: np.c_[drive, rng.standard_normal((n, 7))][rows]}
        base = {"word_rate": rng.standard_normal((n, 2))[rows], "lowlevel": rng.standard_normal((n, 4))[rows],
                "trend": np.linspace(0, 1, n)[rows, None]}
        res[p] = encode_participant(ds, ex, lm, base, cfg, fs)
    for p, c in fold_ceilings(exs, fs).items():
        res[p].ceiling = c
    meta = {"dataset": str(ds_path), "dataset_name": "tiny", "simulated": False, "space": "rois", "model": "synthetic",
            "cv": describe_cv(pre.cv, exs["s0"].runs, pre.buffer), "folds": [f.name for f in fs]}
    return EncodeResult(cfg, res, unit_names(ds), [0, 3], meta), ds_path


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from brainviz.evaluation._cli_common import write_outputs

    root = tmp_path_factory.mktemp("encapp")
    result, ds_path = _result(root)
    out = root / "data_cache" / "encode" / "tiny" / "synthetic.csv"
    out.parent.mkdir(parents=True)
    write_outputs(result.to_frame(), result.summary(), out)
    return root, out, result


def test_figures_from_the_written_outputs(written):
    from brainviz.viz import encoding as encviz

    _, out, result = written
    frame, summary = encviz.read_encode_outputs(out)
    # the driven ROI is predicted through layer 3; the noise ROI is not
    assert summary["units"]["A_roi"]["mean_r"] > 0.3 and summary["units"]["A_roi"]["selected_layers"] == {"3": 3}
    assert summary["units"]["B_roi"]["mean_r"] < 0.3
    prof = encviz.layer_profile(summary)
    assert [t.name for t in prof.data] == ["A_roi", "B_roi"] and list(prof.data[0].x) == [0, 3]
    mean, se = result.layer_profile()
    np.testing.assert_allclose(prof.data[0].y, np.round(mean[:, 0], 4))
    bars = encviz.model_scores(summary)
    assert len(bars.data) == 6 and bars.data[-1].name == "noise ceiling"
    assert len(encviz.model_scores(summary, normalised=True).data) == 5
    assert list(encviz.unique_variance(summary).data[0].x) == ["A_roi", "B_roi"]
    layer_map = encviz.encoding_map(frame, summary, "layer")
    assert list(layer_map.data[0].y) == [3, pytest.approx(layer_map.data[0].y[1])]
    table = encviz.group_table(summary)
    assert table.loc[0, "most_selected_layer"] == 3 and {"q", "mean_unique_lm", "ceiling"} <= set(table.columns)
    with pytest.raises(ValueError, match="unknown unit"):
        encviz.layer_profile(summary, ["nope"])


def test_encoding_page(written, monkeypatch):
    st_testing = pytest.importorskip("streamlit.testing.v1")
    root, _, _ = written
    monkeypatch.setenv("BRAINVIZ_CACHE", str(root / "data_cache"))
    monkeypatch.setenv("BRAINVIZ_MODELS", str(root / "models"))
    at = st_testing.AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.switch_page("pages/encoding.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("synthetic" in m.value for m in at.markdown)
    assert at.selectbox(key="enc_result").value == "synthetic.csv"
