"""``python -m brainviz evaluate`` / ``compare`` on synthetic prediction folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.cli import main
from brainviz.evaluation import load_heldout
from brainviz.evaluation.io import HeldOutError

PIDS = ("sub-01", "sub-02")
N_UNITS, N_SIGNAL, N_TRS, TR = 12, 4, 30, 2.0
RUN_NAMES = ("run-1", "run-2", "run-3")
PREPROCESS = {"trim_start": 2, "trim_end": 2, "window": 10.1, "detrend": True, "zscore": True, "drop_empty": True}


def _dataset(root: Path) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    rng = np.random.default_rng(0)
    words = []
    for run in RUN_NAMES:
        for i, onset in enumerate(np.arange(0.0, N_TRS * TR, 0.5)):
            words.append({"onset": onset, "duration": 0.3, "word": f"w{i % 7}", "run": run, "story": "s"})
    stim = pd.DataFrame(words)
    space = Space(kind="rois", roi_names=[f"roi{i}" for i in range(N_UNITS)])
    fmri = {
        pid: FMRIRecording(pid, rng.standard_normal((N_TRS * len(RUN_NAMES), N_UNITS)).astype(np.float32), TR,
                           [Run(r, N_TRS) for r in RUN_NAMES], space)
        for pid in PIDS
    }
    ds = Dataset(DatasetMeta(name="tiny", simulated=True), stim, fmri)
    return ds.save(root / "tiny-dataset")


def _targets(dataset_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from brainviz.data.dataset import load_dataset
    from brainviz.data.preprocess import PreprocessConfig, fmri_examples

    ds = load_dataset(dataset_dir)
    out = {}
    for pid in PIDS:
        ex = fmri_examples(ds, pid, PreprocessConfig.from_dict(PREPROCESS))
        out[pid] = (ex.data, ex.tr_index, ex.runs)
    return out


def _write_predictions(folder: Path, targets, signal: float, seeds=(0, 1), seed=0) -> None:
    rng = np.random.default_rng(seed)
    w = np.zeros(N_UNITS, dtype=np.float32)
    w[:N_SIGNAL] = signal
    for s in seeds:
        for pid, (data, tr_index, runs) in targets.items():
            f = folder / f"seed-{s}" / f"{pid}.npz"
            f.parent.mkdir(parents=True, exist_ok=True)
            pred = (w * data + rng.standard_normal(data.shape)).astype(np.float32)
            np.savez(f, predictions=pred, tr_index=tr_index.astype(np.int64), run=np.asarray(runs, dtype=str))


@pytest.fixture
def setup(tmp_path):
    ds_dir = _dataset(tmp_path)
    targets = _targets(ds_dir)
    ckpt = tmp_path / "models" / "tuned"
    _write_predictions(ckpt / "predictions", targets, signal=3.0)
    card = {"name": "tuned", "dataset": {"name": "tiny", "path": str(ds_dir), "hash": "x"}, "participants": list(PIDS),
            "seeds": [0, 1], "preprocess": PREPROCESS, "simulated": True}
    (ckpt / "card.json").write_text(json.dumps(card))
    plain = tmp_path / "plain-preds"  # a plain prediction folder without a card
    _write_predictions(plain, targets, signal=0.0, seed=1)
    full = {pid: np.asarray(np.load(ds_dir / "fmri" / f"{pid}.npy")) for pid in PIDS}
    np.savez(tmp_path / "targets-subset.npz", **{pid: targets[pid][0] for pid in PIDS},
             **{f"{pid}__tr_index": targets[pid][1] for pid in PIDS})
    return {"ds": ds_dir, "ckpt": ckpt, "plain": plain, "tmp": tmp_path, "targets": targets, "full": full}


def test_load_heldout_layouts(setup):
    h = load_heldout(setup["ckpt"])
    assert h["seeds"] == [0, 1] and h["participants"] == list(PIDS)
    assert h["card"]["name"] == "tuned"
    n_rows = len(setup["targets"]["sub-01"][1])
    assert h["predictions"]["sub-01"].shape == (2, n_rows, N_UNITS)
    assert h["predictions"]["sub-01"].dtype == np.float32
    np.testing.assert_array_equal(h["tr_index"]["sub-01"], setup["targets"]["sub-01"][1])
    assert set(h["runs"]["sub-01"]) == set(RUN_NAMES)
    p = load_heldout(setup["plain"], participants=["sub-02"])
    assert p["card"] is None and p["participants"] == ["sub-02"]
    with pytest.raises(HeldOutError, match="sub-09"):
        load_heldout(setup["plain"], participants=["sub-09"])


def test_compare_cli_with_dataset_targets(setup, capsys):
    out = setup["tmp"] / "out" / "cmp.csv"
    args = ["compare", str(setup["ckpt"]), str(setup["plain"]), "--out", str(out), "--n-samples", "60", "--alpha", "0.05"]
    assert main(args) == 0
    df = pd.read_csv(out)
    # model A's card says simulated: the export carries the label in the table and the summary
    assert list(df.columns) == ["unit", "unit_index", "acc_a", "acc_b", "diff", "se", "effect", "t", "p", "q",
                                "significant", "n_participants", "test", "level", "simulated"]
    assert df["simulated"].all() and (df.level == "group").all() and (df.test == "group:ttest").all()
    assert len(df) == N_UNITS  # group level: one row per unit, named by ROI
    assert df.unit.tolist() == [f"roi{i}" for i in range(N_UNITS)]
    assert (df[df.unit_index < N_SIGNAL]["diff"] > 0.2).all()
    summary = json.loads((out.parent / "cmp.summary.json").read_text())
    assert summary["kind"] == "compare" and summary["fdr"] == "bh" and summary["test"] == "group:ttest"
    assert summary["level"] == "group" and summary["sample_sizes"]["n_participants"] == 2
    assert summary["sample_sizes"]["n_seeds"] == {"sub-01": [2, 2], "sub-02": [2, 2]}
    assert summary["simulated"] is True
    assert summary["meta"]["models"] == {"a": "tuned", "b": "plain-preds"}
    assert summary["meta"]["tr"] == TR
    # two participants: a t-test has 1 degree of freedom, so little passes; the summary says why if nothing does
    assert summary["counts"]["group"]["n_tested"] == N_UNITS
    # participant level keeps a participant column
    out_p = setup["tmp"] / "out" / "cmp_part.csv"
    assert main(args[:4] + [str(out_p)] + args[5:] + ["--level", "participant", "--test", "runs-ttest"]) == 0
    dfp = pd.read_csv(out_p)
    assert list(dfp.columns)[:3] == ["participant", "unit", "unit_index"] and len(dfp) == len(PIDS) * N_UNITS
    assert (dfp.test == "runs-ttest").all()
    assert summary["meta"]["from_cache"] is False
    printed = capsys.readouterr().out
    assert "sub-01" in printed and "wrote" in printed
    # the same request again is served from the cache; parquet by extension
    out_pq = out.with_suffix(".parquet")
    assert main(args[:4] + [str(out_pq)] + args[5:]) == 0
    again = json.loads((out.parent / "cmp.summary.json").read_text())
    assert again["meta"]["from_cache"] is True
    pd.testing.assert_frame_equal(pd.read_parquet(out_pq), df, check_dtype=False)


def test_evaluate_cli_with_targets_file(setup):
    np.savez(setup["tmp"] / "targets-full.npz", **setup["full"])  # full recordings: tr_index = row
    out = setup["tmp"] / "eval.tsv"
    # the full recordings are not preprocessed, so use the subset file (preprocessed targets) here
    rc = main(["evaluate", "--model", str(setup["plain"]), "--metric", "pearson", "--targets",
               str(setup["tmp"] / "targets-subset.npz"), "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out, sep="\t")
    # a targets file has no TR: blocks assume 2 s and the summary says so
    assert list(df.columns) == ["unit", "metric", "score", "se", "effect", "t", "p", "q", "significant",
                                "n_participants", "test", "level"]
    assert (df.metric == "pearson").all()
    assert df.significant.sum() <= 2  # model without signal
    s_file = json.loads((setup["tmp"] / "eval.summary.json").read_text())
    assert s_file["meta"]["tr_assumed"] is True
    rc = main(["evaluate", "--model", str(setup["ckpt"]), "--out", str(setup["tmp"] / "eval20.csv"), "--n-samples", "60",
               "--alpha", "0.05"])
    assert rc == 0
    df20 = pd.read_csv(setup["tmp"] / "eval20.csv")
    assert (df20[df20.unit_index < N_SIGNAL].score > 0.8).all()
    s = json.loads((setup["tmp"] / "eval20.summary.json").read_text())
    assert s["metric"] == "twenty-vs-twenty" and s["chance"] == 0.5
    # full-recording targets give a result too (rows picked by tr_index)
    assert main(["evaluate", "--model", str(setup["plain"]), "--metric", "pove", "--targets",
                 str(setup["tmp"] / "targets-full.npz"), "--out", str(setup["tmp"] / "pove.csv")]) == 0


def test_cli_errors(setup, capsys):
    rc = main(["evaluate", "--model", str(setup["plain"]), "--out", str(setup["tmp"] / "x.csv")])
    assert rc == 2
    assert "--targets" in capsys.readouterr().err
    rc = main(["compare", str(setup["ckpt"]), str(setup["plain"]), "--out", str(setup["tmp"] / "x.xlsx")])
    assert rc == 2
    assert "format" in capsys.readouterr().err
    rc = main(["compare", str(setup["ckpt"]), str(setup["tmp"] / "nope"), "--out", str(setup["tmp"] / "x.csv")])
    assert rc == 2


def test_roi_predictions_use_matching_target_columns(setup):
    """A model trained on an ROI mask stores the predicted ``units``; targets are cut to match."""
    units = np.array([1, 3, 5, 7], dtype=np.int64)
    roi = setup["tmp"] / "models" / "roi"
    for pid, (data, tr_index, runs) in setup["targets"].items():
        f = roi / "predictions" / "seed-0" / f"{pid}.npz"
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, predictions=data[:, units].astype(np.float32), tr_index=tr_index.astype(np.int64),
                 run=np.asarray(runs, dtype=str), units=units)
    card = json.loads((setup["ckpt"] / "card.json").read_text())
    (roi / "card.json").write_text(json.dumps({**card, "seeds": [0]}))
    out = setup["tmp"] / "roi.csv"
    assert main(["evaluate", "--model", str(roi), "--metric", "pearson", "--level", "participant", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == len(PIDS) * len(units)
    assert df.unit.tolist()[:4] == [f"roi{u}" for u in units]  # ROI names of the predicted columns
    np.testing.assert_allclose(df.score, 1.0, atol=1e-5)  # perfect predictions of the right columns
    bad = roi / "predictions" / "seed-0" / "sub-01.npz"
    with np.load(bad) as z:
        arrays = dict(z)
    np.savez(bad, **{**arrays, "units": np.array([1, 3], dtype=np.int64)})
    assert main(["evaluate", "--model", str(roi), "--out", str(out)]) == 2


def test_preprocessing_flags_reach_the_targets(setup, capsys):
    """evaluate/compare expose the PreprocessConfig options; they override the card's values."""
    base = ["evaluate", "--model", str(setup["ckpt"]), "--metric", "pearson", "--level", "participant"]
    # the card's own trims: same result as without the flags
    assert main(base + ["--trim-start", "2", "--trim-end", "2", "--out", str(setup["tmp"] / "same.csv")]) == 0
    # more trimmed TRs than the model predicted: the targets lack rows, a clear error (exit 2)
    assert main(base + ["--trim-start", "6", "--out", str(setup["tmp"] / "more.csv")]) == 2
    assert "preprocessing differs" in capsys.readouterr().err
    assert not (setup["tmp"] / "more.csv").exists()


def test_cli_test_names_mirror_the_library():
    from brainviz.evaluation import _cli_common, compare

    assert _cli_common.TESTS == compare.TESTS
