"""The bad inputs of the reliability probe (issue 13), one test each.

Every case runs the command a user would run (``brainviz.cli.main``) where there is one and
checks: exit code 2, one ``error:`` line naming the file and the field, no traceback, and
nothing written outside ``--out`` (nor a half-written ``--out``). Cases numbered as in the
report of issue 13.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.cli import main
from brainviz.errors import BrainvizError, CheckpointError, ModelNotFoundError

PIDS = ("P1", "P2")
RUNS = ("run-1", "run-2")
N_TRS, N_UNITS, TR = 80, 5, 2.0  # 80 TRs per run: enough rows left after the quick preset trims
N_WORDS = int(N_TRS * TR / 0.5) * len(RUNS)


def _words() -> pd.DataFrame:
    return pd.DataFrame([{"onset": t, "duration": 0.3, "word": f"w{i % 5}", "run": r, "story": "s"}
                         for r in RUNS for i, t in enumerate(np.arange(0.0, N_TRS * TR, 0.5))])


@pytest.fixture
def dataset(tmp_path) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    rng = np.random.default_rng(0)
    space = Space(kind="rois", roi_names=[f"roi{i}" for i in range(N_UNITS)])
    fmri = {p: FMRIRecording(p, rng.standard_normal((N_TRS * len(RUNS), N_UNITS)).astype(np.float32), TR,
                             [Run(r, N_TRS) for r in RUNS], space) for p in PIDS}
    return Dataset(DatasetMeta(name="tiny", simulated=True), _words(), fmri).save(tmp_path / "work" / "ds")


def _edit_manifest(ds: Path, edit) -> None:
    m = json.loads((ds / "dataset.json").read_text())
    edit(m)
    (ds / "dataset.json").write_text(json.dumps(m))


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _fails(capsys, argv, *needles) -> str:
    """Run the CLI, expect exit 2 and one error line containing every needle."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


# --------------------------------------------------------------------------------------
# 1-4 path traversal through dataset.json
# --------------------------------------------------------------------------------------


def test_01_participant_id_traversal_train_writes_nothing(dataset, tmp_path, capsys):
    _edit_manifest(dataset, lambda m: m["participants"]["fmri"].update(
        {"../../../../escape-x": m["participants"]["fmri"].pop("P1")}))
    before = _listing(tmp_path)
    out = tmp_path / "work" / "models" / "m"
    _fails(capsys, ["train", "--dataset", dataset, "--variant", "vanilla", "--preset", "quick", "--out", out],
           "dataset.json", "participants.fmri", "../../../../escape-x", "not a safe file name")
    assert _listing(tmp_path) == before
    assert not list(Path("/").glob("escape-x*")) and not list(tmp_path.parent.glob("escape-x*"))
    _fails(capsys, ["info", dataset], "participants.fmri")


@pytest.mark.parametrize("field,value", [
    ("stimulus", "../../outside.tsv"),
    ("stimulus", "/etc/passwd"),
    ("file", "../../../secret.npy"),
    ("file", "/etc/passwd"),
])
def test_02_03_manifest_paths_stay_inside(dataset, tmp_path, capsys, field, value):
    shutil.copy(dataset / "stimulus.tsv", tmp_path / "outside.tsv")
    if field == "stimulus":
        _edit_manifest(dataset, lambda m: m.update(stimulus=value))
        where = "field 'stimulus'"
    else:
        _edit_manifest(dataset, lambda m: m["participants"]["fmri"]["P1"].update(file=value))
        where = "participants.fmri.P1.file"
    _fails(capsys, ["info", dataset], "dataset.json", where, "leaves the folder")


def test_02_symlink_out_of_the_folder(dataset, tmp_path, capsys):
    (tmp_path / "elsewhere.npy").write_bytes((dataset / "fmri" / "P1.npy").read_bytes())
    (dataset / "fmri" / "P1.npy").unlink()
    (dataset / "fmri" / "P1.npy").symlink_to(tmp_path / "elsewhere.npy")
    _fails(capsys, ["info", dataset], "participants.fmri.P1.file", "symbolic link")


def test_03_volume_coords_file_stays_inside(tmp_path, capsys):
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    coords = np.argwhere(np.ones((2, 2, 2), bool)).astype(np.int64)
    space = Space(kind="volume", template="MNI", affine=np.eye(4), shape=(2, 2, 2), coords=coords)
    rec = FMRIRecording("P1", np.zeros((2 * N_TRS, 8), np.float32), TR, [Run(r, N_TRS) for r in RUNS], space)
    ds = Dataset(DatasetMeta(name="vol", simulated=True), _words(), {"P1": rec}).save(tmp_path / "vol")
    _edit_manifest(ds, lambda m: m["space"].update(coords_file="../../../coords.npy"))
    _fails(capsys, ["info", ds], "space.coords_file", "leaves the folder")


# --------------------------------------------------------------------------------------
# 5-9 checkpoint cards
# --------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A hand-made checkpoint (heads-only, base 'pretrained') in the store."""
    from brainviz import paths
    from brainviz.models.heads import BrainHeads, FMRIHead

    ck = paths.models_dir() / "ck"
    heads = BrainHeads(FMRIHead(8, ["P1"], [N_UNITS]))
    heads.save(ck / "heads.safetensors")
    heads.save(ck / "fits" / "P1" / "fold-run-1" / "seed-0" / "heads.safetensors")
    pred = ck / "predictions" / "seed-0" / "P1.npz"
    pred.parent.mkdir(parents=True)
    np.savez(pred, predictions=np.zeros((N_TRS, N_UNITS), np.float32), tr_index=np.arange(N_TRS),
             run=np.array(["run-1"] * N_TRS))
    card = {
        "format": 1, "name": "ck", "variant": "vanilla", "base": "pretrained", "encoder": "pretrained",
        "dataset": {"name": "tiny", "path": "nowhere", "hash": "0"}, "simulated": True, "participants": ["P1"],
        "folds": ["run-1"], "seeds": [0], "train_config": {}, "preprocess": {}, "versions": {}, "metrics": {},
        "created": "2026-01-01T00:00:00+00:00",
        "fits": [{"group": "P1", "fold": "run-1", "seed": 0, "encoder": "base",
                  "heads": "fits/P1/fold-run-1/seed-0/heads.safetensors", "predicts": ["P1"]}],
        "predictions": {"seed-0": {"P1": "predictions/seed-0/P1.npz"}},
    }
    (ck / "card.json").write_text(json.dumps(card, indent=2))
    return ck


def _edit_card(ck: Path, edit) -> None:
    card = json.loads((ck / "card.json").read_text())
    edit(card)
    (ck / "card.json").write_text(json.dumps(card))


def test_checkpoint_fixture_is_valid(checkpoint):
    from brainviz.models.store import load_checkpoint

    ck = load_checkpoint(checkpoint)
    assert ck.heads().fmri.sizes == [N_UNITS] and ck.predictions("P1")["predictions"].shape == (N_TRS, N_UNITS)


@pytest.mark.parametrize("field,edit", [
    ("predictions.seed-0.P1", lambda c: c["predictions"]["seed-0"].update(P1="../../../../etc/passwd")),
    ("fits[0].heads", lambda c: c["fits"][0].update(heads="../../outside.safetensors")),
    ("fits[0].encoder", lambda c: c["fits"][0].update(encoder="/etc")),
    ("encoder", lambda c: c.update(encoder="../../../../usr")),
])
def test_05_07_card_paths_stay_inside(checkpoint, capsys, field, edit):
    from brainviz.models.store import load_checkpoint

    _edit_card(checkpoint, edit)
    with pytest.raises(CheckpointError, match="leaves the folder") as exc:
        load_checkpoint(checkpoint)
    assert exc.value.field == field and exc.value.file.endswith("card.json")
    assert main(["models", "list"]) == 0  # one broken card never hides the others
    out = capsys.readouterr().out
    assert "ck" in out and "leaves the folder" in out


def test_08_card_base_outside_is_refused(checkpoint):
    from brainviz.models.encoder import load_encoder
    from brainviz.models.store import load_checkpoint

    _edit_card(checkpoint, lambda c: c.update(base="../../../../etc", encoder="../../../../etc"))
    with pytest.raises(CheckpointError, match="'..' is not allowed") as exc:
        load_checkpoint(checkpoint)
    assert exc.value.field == "base"
    with pytest.raises(BrainvizError, match="base"):
        load_encoder(checkpoint)
    _edit_card(checkpoint, lambda c: c.update(base="/etc", encoder="/etc"))
    with pytest.raises(CheckpointError, match="not a Hugging Face model folder"):
        load_encoder(checkpoint)


def test_09_created_not_a_string_lists_fine(checkpoint, capsys):
    from brainviz.models.store import list_checkpoints, read_card

    good = checkpoint.parent / "good"
    shutil.copytree(checkpoint, good)
    _edit_card(checkpoint, lambda c: c.update(created=5))
    with pytest.raises(CheckpointError) as exc:
        read_card(checkpoint)
    assert exc.value.field == "created"
    rows = list_checkpoints()
    assert {Path(r["path"]).name for r in rows if r["path"]} == {"ck", "good"}
    assert [r.get("error") is None for r in rows if r["path"]] == [False, True]  # broken first (no date), good second
    assert main(["models", "list"]) == 0
    assert "field 'created'" in capsys.readouterr().out


def test_10_huge_heads_spec_refused_before_allocating(checkpoint, monkeypatch):
    from brainviz.models import heads as heads_mod
    from brainviz.models.store import load_checkpoint

    monkeypatch.setattr(heads_mod.BrainHeads, "from_spec", classmethod(lambda cls, spec: pytest.fail("allocated")))
    f = checkpoint / "fits" / "P1" / "fold-run-1" / "seed-0" / "heads.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    spec = json.loads(header["__metadata__"]["spec"])
    spec["fmri"]["n_units"] = [2_000_000]
    header["__metadata__"]["spec"] = json.dumps(spec)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    f.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    with pytest.raises(CheckpointError, match=r"of shape \(2000000, 8\) \(from the spec\)") as exc:
        load_checkpoint(checkpoint)
    assert exc.value.field == "fits[0].heads" and exc.value.file == str(f)


# --------------------------------------------------------------------------------------
# 11-14 encoder folders: corrupt weights, pickles
# --------------------------------------------------------------------------------------


def _model_folder(tmp_path: Path) -> Path:
    from brainviz.models.encoder import pretrained_path

    src, dst = pretrained_path(), tmp_path / "my-model"
    dst.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    return dst


@pytest.mark.parametrize("corrupt", ["truncated", "bad-header", "trailing-bytes"])
def test_11_corrupt_model_safetensors(tmp_path, dataset, capsys, corrupt):
    from brainviz.models.encoder import load_encoder, pretrained_path

    folder = _model_folder(tmp_path)
    raw = (pretrained_path() / "model.safetensors").read_bytes()
    data = {"truncated": raw[: len(raw) // 3], "bad-header": raw[:8] + b"{not json" + raw[17:],
            "trailing-bytes": raw + b"\0" * 16}[corrupt]
    (folder / "model.safetensors").write_bytes(data)
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        load_encoder(folder)
    out = tmp_path / "work" / "m"
    before = _listing(tmp_path)
    _fails(capsys, ["train", "--dataset", dataset, "--variant", "vanilla", "--preset", "quick", "--base", folder,
                    "--out", out], "model.safetensors")
    assert _listing(tmp_path) == before  # no checkpoint, no .partial, no lock file left


def test_12_pickle_weights_are_refused_with_a_reason(tmp_path):
    import torch

    from brainviz.models.encoder import load_encoder

    folder = _model_folder(tmp_path)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="pickle-based") as exc:
        load_encoder(folder)
    assert "pytorch_model.bin" in str(exc.value) and "safetensors" in str(exc.value)


# --------------------------------------------------------------------------------------
# 15-21 malformed dataset fields and files
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit,needles", [
    (lambda m: m["participants"]["fmri"]["P1"]["runs"][0].update(n_trs="abc"),
     ("participants.fmri.P1.runs[0].n_trs", "must be an integer")),
    (lambda m: m["participants"]["fmri"]["P1"]["runs"][0].update(name="../x"),
     ("participants.fmri.P1.runs[0].name", "not allowed")),
    (lambda m: m["participants"]["fmri"]["P1"].update(tr="fast"), ("participants.fmri.P1.tr", "must be a number")),
    (lambda m: m["participants"]["fmri"]["P1"].update(tr=float("inf")), ("participants.fmri.P1.tr", "finite")),
    (lambda m: m["participants"]["fmri"]["P1"]["runs"][0].update(start=[1]), ("runs[0].start", "must be a number")),
    (lambda m: m.update(name=["x"]), ("field 'name'", "must be a string")),
    (lambda m: m["participants"].update(fmri=[1, 2]), ("participants.fmri", "must be an object")),
])
def test_15_bad_manifest_values_name_the_field(dataset, capsys, edit, needles):
    _edit_manifest(dataset, edit)
    _fails(capsys, ["info", dataset], "dataset.json", *needles)


def test_16_affine_not_numbers(tmp_path, capsys):
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    coords = np.argwhere(np.ones((2, 2, 2), bool)).astype(np.int64)
    space = Space(kind="volume", template="MNI", affine=np.eye(4), shape=(2, 2, 2), coords=coords)
    rec = FMRIRecording("P1", np.zeros((2 * N_TRS, 8), np.float32), TR, [Run(r, N_TRS) for r in RUNS], space)
    ds = Dataset(DatasetMeta(name="vol", simulated=True), _words(), {"P1": rec}).save(tmp_path / "vol")
    _edit_manifest(ds, lambda m: m["space"].update(affine="abc"))
    _fails(capsys, ["info", ds], "dataset.json", "space.affine")
    _edit_manifest(ds, lambda m: m["space"].update(affine=np.eye(4).tolist(), shape=["a", 2, 2]))
    _fails(capsys, ["info", ds], "dataset.json", "space.shape")


def test_17_manifest_not_utf8(dataset, capsys):
    raw = (dataset / "dataset.json").read_bytes().replace(b'"tiny"', b'"t\xe9\xff"')
    (dataset / "dataset.json").write_bytes(raw)
    _fails(capsys, ["info", dataset], "dataset.json", "not UTF-8")


def test_18_empty_stimulus(dataset, capsys):
    (dataset / "stimulus.tsv").write_bytes(b"")
    _fails(capsys, ["info", dataset], "stimulus.tsv", "empty file")
    (dataset / "stimulus.tsv").write_bytes(b"\xff\xfe\x00garbage\n")
    _fails(capsys, ["info", dataset], "stimulus.tsv")


def test_19_quote_in_stimulus_keeps_every_word(dataset, capsys):
    from brainviz.data.dataset import load_dataset

    stim = (dataset / "stimulus.tsv").read_text().split("\n")
    stim[5] = stim[5].replace("\tw4\t", '\t"So,\t')
    (dataset / "stimulus.tsv").write_text("\n".join(stim))
    ds = load_dataset(dataset)
    assert len(ds.stimulus) == N_WORDS and '"So,' in ds.stimulus.word.tolist()
    assert main(["info", str(dataset)]) == 0
    assert json.loads(capsys.readouterr().out)["n_words"] == N_WORDS


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_20_non_finite_onset(dataset, capsys, value):
    stim = (dataset / "stimulus.tsv").read_text().split("\n")
    stim[-2] = value + stim[-2][stim[-2].index("\t"):]
    (dataset / "stimulus.tsv").write_text("\n".join(stim))
    _fails(capsys, ["info", dataset], "stimulus.tsv", "field 'onset'", "non-finite")


def test_21_old_quoted_stimulus_still_reads(dataset):
    """stimulus.tsv files written by older brainviz (quoting fields that hold a '"') read the same."""
    from brainviz.data.dataset import load_dataset

    stim = (dataset / "stimulus.tsv").read_text().split("\n")
    stim[5] = stim[5].replace("\tw4\t", '\t"""So,"\t')
    (dataset / "stimulus.tsv").write_text("\n".join(stim))
    assert load_dataset(dataset).stimulus.word.iloc[4] == '"So,'


# --------------------------------------------------------------------------------------
# 22-23 generic import
# --------------------------------------------------------------------------------------


@pytest.fixture
def generic_src(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    _words().drop(columns="story").to_csv(src / "words.tsv", sep="\t", index=False)
    rng = np.random.default_rng(1)
    for r in RUNS:
        np.save(src / f"P1_run-{r}.npy", rng.standard_normal((N_TRS, N_UNITS)))
    return src


def test_22_generic_quote_word(generic_src, tmp_path, capsys):
    from brainviz.data.dataset import load_dataset

    lines = (generic_src / "words.tsv").read_text().split("\n")
    lines[3] = lines[3].replace("\tw2\t", '\t"So,\t')
    (generic_src / "words.tsv").write_text("\n".join(lines))
    assert main(["import", "generic", str(generic_src), "--tr", "2", "--space", "rois", "--out", str(tmp_path / "d")]) == 0
    ds = load_dataset(tmp_path / "d")
    assert len(ds.stimulus) == N_WORDS and ds.stimulus.word.iloc[2] == '"So,'


@pytest.mark.parametrize("what", ["inf-onset", "bad-participant", "bad-run", "nan-tr"])
def test_23_generic_bad_input_writes_nothing(generic_src, tmp_path, capsys, what):
    argv = ["import", "generic", generic_src, "--tr", "2", "--space", "rois", "--out", tmp_path / "d"]
    if what == "inf-onset":
        lines = (generic_src / "words.tsv").read_text().split("\n")
        lines[-2] = "inf" + lines[-2][lines[-2].index("\t"):]
        (generic_src / "words.tsv").write_text("\n".join(lines))
        needles = ("words.tsv", "field 'onset'", "non-finite")
    elif what == "bad-participant":
        argv += ["--fmri", f"../../escape={generic_src / 'P1_run-run-1.npy'}"]
        needles = ("participant", "not a safe file name")
    elif what == "bad-run":
        w = _words().drop(columns="story")
        w.loc[w.run == "run-2", "run"] = "../run-2"
        w.to_csv(generic_src / "words.tsv", sep="\t", index=False)
        needles = ("words.tsv", "field 'run'", "not allowed")
    else:
        argv[4] = "nan"
        needles = ("field 'tr'",)
    before = _listing(tmp_path)
    _fails(capsys, argv, *needles)
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------------------
# 24-27 evaluate: predictions, targets, k
# --------------------------------------------------------------------------------------


@pytest.fixture
def heldout(tmp_path) -> dict[str, Path]:
    """Plain prediction folder (46 rows in one run, as in the probe) + a targets file."""
    rng = np.random.default_rng(2)
    n = 46
    t = rng.standard_normal((n, N_UNITS)).astype(np.float32)
    folder = tmp_path / "preds"
    f = folder / "seed-0" / "P1.npz"
    f.parent.mkdir(parents=True)
    np.savez(f, predictions=(t + rng.standard_normal(t.shape)).astype(np.float32), tr_index=np.arange(n),
             run=np.array(["run-1"] * n))
    np.savez(tmp_path / "targets.npz", P1=t)
    return {"model": folder, "file": f, "targets": tmp_path / "targets.npz", "out": tmp_path / "out" / "eval.csv"}


def _evaluate(h, *extra):
    return ["evaluate", "--model", h["model"], "--targets", h["targets"], "--out", h["out"], "--no-cache",
            "--backend", "numpy", *extra]


def test_heldout_fixture_evaluates(heldout, capsys):
    assert main([str(a) for a in _evaluate(heldout, "--n-samples", "50")]) == 0
    assert heldout["out"].is_file()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_24_non_finite_predictions(heldout, capsys, bad):
    with np.load(heldout["file"]) as z:
        arrays = dict(z)
    arrays["predictions"][3, 2] = bad
    np.savez(heldout["file"], **arrays)
    _fails(capsys, _evaluate(heldout), "P1.npz", "'predictions'", "non-finite", "(3, 2)")
    assert not heldout["out"].parent.exists()


def test_25_truncated_predictions(heldout, capsys):
    raw = heldout["file"].read_bytes()
    heldout["file"].write_bytes(raw[: len(raw) // 2])
    _fails(capsys, _evaluate(heldout), "P1.npz", "not an .npz archive")
    assert not heldout["out"].parent.exists()


def test_26_targets_not_npz(heldout, dataset, capsys):
    heldout["targets"] = dataset / "stimulus.tsv"
    err = _fails(capsys, _evaluate(heldout), "stimulus.tsv", "not an .npz archive")
    assert "allow_pickle" not in err


@pytest.mark.parametrize("k", ["200", "100000"])
def test_27_k_larger_than_rows_per_run(heldout, capsys, k):
    import time

    start = time.perf_counter()
    _fails(capsys, _evaluate(heldout, "--k", k), f"k = {k}", "46 held-out rows", "field 'k'")
    assert time.perf_counter() - start < 60  # the probe's --k 100000 ran > 600 s
    assert not heldout["out"].parent.exists()


def test_27_draw_and_work_caps():
    from brainviz.errors import ResourceLimitError
    from brainviz.evaluation.twenty import MAX_WORK, draw_indices, twenty_vs_twenty

    with pytest.raises(ResourceLimitError, match="draw cells"):
        draw_indices(10**9, k=100_000, n_samples=1000, rng=0)
    idx = draw_indices(50, k=20, n_samples=10, rng=0)
    n_units = MAX_WORK // idx[0].size + 1
    pred = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (50, n_units), (0, 0))  # no memory
    with pytest.raises(ResourceLimitError, match="squared differences"):
        twenty_vs_twenty(pred, pred, indices=idx)


def test_28_epochs_zero(dataset, tmp_path, capsys):
    before = _listing(tmp_path)
    _fails(capsys, ["train", "--dataset", dataset, "--variant", "vanilla", "--preset", "quick", "--epochs", "0",
                    "--out", tmp_path / "work" / "models" / "m"], "TrainConfig.epochs", "untrained")
    _fails(capsys, ["train", "--dataset", dataset, "--variant", "fine-tuned", "--preset", "quick", "--epochs", "0", "0",
                    "--out", tmp_path / "work" / "models" / "m"], "TrainConfig.epochs")
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------------------
# app: link values out of range fall back / clamp
# --------------------------------------------------------------------------------------


def _slider_app():
    import streamlit as st

    from brainviz.app_support import state

    state.init_from_query()
    state.widget_value("att_start", 0, qp="w0", min_value=0, max_value=9)
    st.slider("First window", 0, 9, key="att_start")
    state.widget_value("att_n", 4, qp="nw", min_value=1, max_value=10)
    st.number_input("Number of windows", min_value=1, max_value=10, key="att_n")
    state.widget_value("alpha", 0.05, qp="calpha", min_value=0.001, max_value=0.5)
    st.number_input("FDR level", 0.001, 0.5, key="alpha")


@pytest.mark.parametrize("params,expected", [
    ({"w0": "99999", "nw": "-5", "calpha": "nan"}, (9, 1, 0.05)),
    ({"w0": "-3", "nw": "abc", "calpha": "7"}, (0, 4, 0.5)),
    ({"w0": "4", "nw": "2", "calpha": "0.1"}, (4, 2, 0.1)),
])
def test_app_link_values_are_clamped(params, expected):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_slider_app)
    for k, v in params.items():
        at.query_params[k] = v
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    assert (at.slider[0].value, at.number_input[0].value, at.number_input[1].value) == expected


@pytest.mark.parametrize("card,needle", [
    ({"dataset": 5}, "field 'dataset'"),
    ({"dataset": {"path": 7}}, "field 'dataset.path'"),
    ({"simulated": "yes"}, "field 'simulated'"),
    ({"preprocess": {"window": "abc"}}, "field 'preprocess'"),
    ({"preprocess": {"no_such_field": 1}}, "field 'preprocess'"),
])
def test_malformed_card_of_a_prediction_folder(heldout, dataset, capsys, card, needle):
    if "preprocess" in card:
        card["dataset"] = {"path": str(dataset)}
    (heldout["model"] / "card.json").write_text(json.dumps(card))
    argv = [a for a in _evaluate(heldout) if a not in ("--targets", heldout["targets"])]
    _fails(capsys, argv, "card.json", needle)
    assert not heldout["out"].parent.exists()


@pytest.mark.parametrize("option,value,needle", [
    ("--lr", "inf", "TrainConfig.lr"),
    ("--lr", "nan", "TrainConfig.lr"),
    ("--batch-size", "0", "TrainConfig.batch_size"),
])
def test_28_non_finite_training_options(dataset, tmp_path, capsys, option, value, needle):
    before = _listing(tmp_path)
    _fails(capsys, ["train", "--dataset", dataset, "--variant", "vanilla", "--preset", "quick", option, value,
                    "--out", tmp_path / "work" / "m"], needle)
    assert _listing(tmp_path) == before
