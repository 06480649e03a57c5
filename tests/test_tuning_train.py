"""Brain-tuning end to end on a tiny random BERT and a tiny dataset (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainviz.cli import main as cli_main
from brainviz.models.store import load_checkpoint
from brainviz.tuning import TrainConfig, train
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "bert": make_tiny_bert(root / "bert"),
        "data": make_tiny_dataset(root / "data"),
        "fmri_only": make_tiny_dataset(root / "fmri_only", n_meg=0),
    }


def config(tiny, out, **kw) -> TrainConfig:
    # quick preset sizes, but one fit per participant with split heads (as the paper) unless asked
    values = dict(dataset=str(tiny["data"]), base=str(tiny["bert"]), out=str(out), folds=("run-1",),
                  preset="quick", preprocess=TINY_PREPROCESS, variant="fine-tuned", epochs=(2, 1),
                  together=False, head_mode="split", pooling="cls")
    values.update(kw)
    return TrainConfig(**values)


def preds(path: Path, pid: str, seed: int = 0) -> np.ndarray:
    return load_checkpoint(path).predictions(pid, seed)["predictions"]


@pytest.mark.parametrize("variant,epochs", [
    ("vanilla", (2,)), ("participant-transfer", (1, 1, 1)), ("meg-transfer", (1, 1, 1, 1)), ("joint", (1, 1)),
])
def test_variants_run_and_write_predictions(tiny, tmp_path, variant, epochs):
    out = train(config(tiny, tmp_path / variant, variant=variant, epochs=epochs), bar=False)
    ckpt = load_checkpoint(out)
    assert ckpt.variant == variant and ckpt.participants == ["P1", "P2"]
    for pid in ("P1", "P2"):
        p = ckpt.predictions(pid, 0)
        assert p["predictions"].dtype == np.float16 and p["tr_index"].dtype == np.int64
        assert set(p["run"]) == {"run-1"} and p["predictions"].shape == (len(p["tr_index"]), 12)
        assert np.all(np.isfinite(p["predictions"]))
    groups = [f["group"] for f in ckpt.fits]
    expected = {"vanilla": ["P1", "P2"], "joint": ["_joint"], "meg-transfer": ["_meg", "P1", "P2"]}
    if variant in expected:
        assert groups == expected[variant]
    if variant == "participant-transfer":
        src = ckpt.card["transfer_source"]["run-1"]
        assert groups == ["_source", "P2" if src == "P1" else "P1"]
    if variant == "vanilla":
        assert ckpt.card["encoder"] == ckpt.base and not (out / "encoder").exists()
        assert all(f["encoder"] == "base" for f in ckpt.fits)
    else:  # lean format: the first fit's float16 delta, no top-level copy of the encoder
        first = next(f for f in ckpt.fits if f["predicts"])
        assert ckpt.card["encoder"] == first["encoder"] and first["encoder"].startswith("fits/")
        assert not (out / "encoder").exists()


def test_heads_only_epochs_leave_encoder_unchanged(tiny, tmp_path):
    import torch
    from transformers import AutoModel

    out = train(config(tiny, tmp_path / "ho", epochs=(3, 0), participants=("P1",)), bar=False)
    ckpt = load_checkpoint(out)
    assert ckpt.fits[0]["encoder"] == "base"
    base = AutoModel.from_pretrained(str(tiny["bert"]))
    enc, _ = ckpt.fit_encoder(ckpt.fits[0])
    for (name, a), b in zip(base.state_dict().items(), enc.state_dict().values()):
        assert torch.equal(a, b), name
    heads = ckpt.heads()
    assert heads.fmri.linear.weight.abs().sum() > 0  # the heads did learn


def test_save_load_identical_predictions_and_complete_card(tiny, tmp_path):
    from brainviz.data import PreprocessConfig, fmri_examples, load_dataset
    from brainviz.models.store import REQUIRED_CARD_FIELDS

    out = train(config(tiny, tmp_path / "ft", participants=("P1",)), bar=False)
    ckpt = load_checkpoint(out)
    card = ckpt.card
    for key in REQUIRED_CARD_FIELDS:
        assert key in card, key
    assert card["dataset"]["path"] == str(Path(tiny["data"]).resolve()) and len(card["dataset"]["hash"]) == 16
    assert card["simulated"] is True and card["seeds"] == [0] and card["folds"] == ["run-1"]
    assert card["preprocess"]["window"] == 4.0 and card["train_config"]["stage_epochs"] == {"heads": 2, "full": 1, "refit": 0}
    assert {"torch", "transformers", "peft", "brainviz"} <= set(card["versions"])
    assert "P1" in card["metrics"]["pearson_r"]["seed-0"]
    # no pickles anywhere: only safetensors / json / npz (arrays load with allow_pickle=False)
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".npz", ".txt"}, suffixes
    # reload the fitted model and predict the held-out windows again
    ds = load_dataset(tiny["data"])
    ex = fmri_examples(ds, "P1", PreprocessConfig(**card["preprocess"]))
    stored = ckpt.predictions("P1")
    words = ds.stimulus["word"].astype(str).to_numpy()
    rows = {int(t): i for i, t in enumerate(ex.tr_index)}
    windows = [words[ex.windows[rows[int(t)]]].tolist() for t in stored["tr_index"]]
    model, tokenizer = ckpt.brain_model(ckpt.fit(participant="P1", fold="run-1"))
    again = model.predict_fmri(tokenizer, windows, max_length=card["train_config"]["max_length"])["P1"]
    # the stored weights are exactly those that made the predictions; these are stored float16
    np.testing.assert_allclose(again, stored["predictions"].astype(np.float32), rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(stored["tr_index"], np.sort(stored["tr_index"]))


def test_kill_9_then_resume_gives_same_predictions(tiny, tmp_path):
    reference = train(config(tiny, tmp_path / "ref", participants=("P1",), epochs=(2, 3)), bar=False)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # same job as `python -m brainviz train ...` (tiny dataset's short trims), with an injected
    # on_epoch_saved callback that SIGKILLs the process once the third epoch state is on disk
    script = (
        "import os, signal\n"
        "from brainviz.tuning import TrainConfig, train\n"
        "from brainviz.tuning._testing import TINY_PREPROCESS\n"
        "def kill(saved):\n"
        "    if saved.n_saved >= 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"train(TrainConfig(dataset={str(tiny['data'])!r}, base={str(tiny['bert'])!r}, out={str(out)!r}, folds=('run-1',),"
        "participants=('P1',), preset='quick', preprocess=TINY_PREPROCESS, variant='fine-tuned', epochs=(2, 3),"
        "together=False, head_mode='split', pooling='cls'), bar=False, on_epoch_saved=kill)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    partial = out.with_name(out.name + ".partial")
    state = json.loads((partial / "state" / "state.json").read_text())
    assert (state["stage"], state["epoch"]) == (1, 1)  # killed mid-way through the full stage
    assert (partial / "state" / "optimizer.safetensors").is_file() and not out.exists()
    resumed = train(config(tiny, out, participants=("P1",), epochs=(2, 3)), bar=False)
    assert not partial.exists()
    np.testing.assert_array_equal(preds(resumed, "P1"), preds(reference, "P1"))


def test_lora_trains_adapters_and_merges(tiny, tmp_path):
    out = train(config(tiny, tmp_path / "lora", participants=("P1",), lora=True, epochs=(1, 2)), bar=False)
    ckpt = load_checkpoint(out)
    enc, _ = ckpt.fit_encoder()
    assert not any("lora" in k for k in enc.state_dict())  # merged into plain weights
    assert ckpt.card["train_config"]["lora"] is True


def test_progress_callback_file_and_cli(tiny, tmp_path, capsys):
    seen = []
    progress_file = tmp_path / "progress.jsonl"
    out = tmp_path / "models" / "pv"
    code = cli_main(["train", "--dataset", str(tiny["fmri_only"]), "--variant", "vanilla", "--base", str(tiny["bert"]),
                     "--participants", "P1", "--folds", "run-2", "--epochs", "2", "--out", str(out),
                     "--progress-file", str(progress_file), "--quiet"])
    # the CLI uses the paper's preprocessing: the tiny runs are too short for 20 + 15 trimmed TRs
    assert code == 2 and "trim_start + trim_end" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("pv.partial").exists()
    train(config(tiny, out, dataset=str(tiny["fmri_only"]), variant="vanilla", epochs=(2,), participants=("P1",)),
          progress=lambda f, m: seen.append((f, m)), progress_file=progress_file, bar=False)
    lines = [json.loads(x) for x in progress_file.read_text().splitlines()]
    assert lines and all(set(x) == {"fraction", "message", "stage", "elapsed_s", "eta_s"} for x in lines)
    assert lines[-1]["fraction"] == 1.0 and seen[-1][0] == 1.0
    assert all(0 <= f <= 1 for f, _ in seen)
    # the app shows a stage while the encoder loads and the windows are built, before the first batch
    assert lines[0]["stage"] == "loading the encoder" and lines[0]["fraction"] == 0.0
    assert lines[1]["stage"] == "building windows and targets"


@pytest.mark.parametrize("args,message", [
    (["--participants", "P9"], "unknown participant"),
    (["--folds", "run-7"], "unknown fold"),
    (["--variant", "meg-transfer"], "needs MEG data"),
    (["--epochs", "1", "2", "3", "4"], "--epochs needs 3 numbers"),
    (["--roi-mask", "missing.npy"], "ROI mask"),
    (["--base", "no/such-model-folder-x"], "Hugging Face"),
])
def test_bad_inputs_clear_error_exit_code_nothing_left(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "models" / "bad"
    argv = ["train", "--dataset", str(tiny["fmri_only"]), "--variant", "fine-tuned", "--base", str(tiny["bert"]),
            "--out", str(out), "--quiet"]
    if "--variant" in args:
        argv[argv.index("--variant") + 1] = args[args.index("--variant") + 1]
        args = [a for a in args if a not in ("--variant", "meg-transfer")]
    code = cli_main(argv + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not any((tmp_path / "models").glob("*")) if (tmp_path / "models").exists() else True


def test_existing_output_and_foreign_partial_are_refused(tiny, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(FileExistsError):
        train(config(tiny, out), bar=False)
    other = tmp_path / "other"
    partial = other.with_name("other.partial")
    partial.mkdir()
    (partial / "progress.json").write_text(json.dumps({"job_key": "something-else", "done": []}))
    with pytest.raises(ValueError, match="different configuration"):
        train(config(tiny, other), bar=False)


def test_shuffle_targets_and_roi_mask(tiny, tmp_path):
    mask = np.zeros(12, dtype=bool)
    mask[[1, 4, 7]] = True
    np.save(tmp_path / "roi.npy", mask)
    out = train(config(tiny, tmp_path / "null", variant="vanilla", epochs=(2,), participants=("P1",),
                       shuffle_targets=True, roi_mask=str(tmp_path / "roi.npy")), bar=False)
    ckpt = load_checkpoint(out)
    p = ckpt.predictions("P1")
    assert p["predictions"].shape[1] == 3 and p["units"].tolist() == [1, 4, 7]
    assert ckpt.card["shuffle_targets"] is True and ckpt.card["roi_mask"]["n_units"] == 3


def test_shared_head_joint_fmri_only(tiny, tmp_path):
    out = train(config(tiny, tmp_path / "shared", dataset=str(tiny["fmri_only"]), variant="joint", meg=False,
                       head_mode="shared", epochs=(1, 1)), bar=False)
    ckpt = load_checkpoint(out)
    heads = ckpt.heads()
    assert heads.meg is None and heads.fmri.mode == "shared" and heads.fmri.linear.out_features == 12
    np.testing.assert_array_equal(preds(out, "P1"), preds(out, "P2"))  # one shared map for everyone
