"""Checkpoint store: loading, listing, corrupt checkpoints, the models CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainviz import paths
from brainviz.cli import main as cli_main
from brainviz.models.store import CheckpointError, list_checkpoints, load_checkpoint
from brainviz.tuning import TrainConfig, train
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    bert = make_tiny_bert(root / "bert")
    data = make_tiny_dataset(root / "data", n_meg=0)
    out = train(TrainConfig(dataset=str(data), base=str(bert), out=str(root / "ft"), variant="fine-tuned",
                            participants=("P1",), folds=("run-1", "run-2"), seeds=(0, 1), epochs=(1, 1),
                            preset="quick", preprocess=TINY_PREPROCESS, keep_weights="all"), bar=False)
    return out


@pytest.fixture
def copy(trained, tmp_path):
    dst = tmp_path / "ck"
    shutil.copytree(trained, dst)
    return dst


def test_layout_and_card(trained):
    ckpt = load_checkpoint(trained)
    assert [(f["fold"], f["seed"]) for f in ckpt.fits] == [("run-1", 0), ("run-2", 0), ("run-1", 1), ("run-2", 1)]
    for f in ckpt.fits:
        assert (trained / f["heads"]).is_file() and (trained / f["encoder"] / "model.safetensors").is_file()
    assert ckpt.fits[0]["heads"] == "fits/P1/fold-run-1/seed-0/heads.safetensors"
    for seed in (0, 1):
        p = ckpt.predictions("P1", seed)
        assert set(p["run"]) == {"run-1", "run-2"} and np.all(np.diff(p["tr_index"]) > 0)
    # top-level encoder = first fold / seed fit: same weights
    import torch

    top, _ = ckpt.encoder()
    first, _ = ckpt.fit_encoder(ckpt.fits[0])
    for a, b in zip(top.state_dict().values(), first.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_card_field_names_it(copy):
    card = json.loads((copy / "card.json").read_text())
    del card["seeds"]
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"card\.json: field 'seeds'"):
        load_checkpoint(copy)
    card = json.loads((copy / "card.json").read_text())
    card["seeds"] = [0]
    del card["dataset"]["hash"]
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"field 'dataset\.hash'"):
        load_checkpoint(copy)


def test_truncated_or_missing_safetensors(copy):
    heads = copy / "fits/P1/fold-run-2/seed-1/heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"fold-run-2/seed-1/heads\.safetensors: field 'fits\[3\]\.heads': truncated"):
        load_checkpoint(copy)
    (copy / "fits/P1/fold-run-1/seed-0/encoder/model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: field '(fits\\[0\\]\\.)?encoder': file missing"):
        load_checkpoint(copy)


def test_pickle_files_are_rejected(copy):
    (copy / "fits" / "extra.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(copy)


def test_list_and_cli(trained, capsys):
    store = paths.models_dir()
    store.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained, store / "ft")
    (store / "broken").mkdir()
    (store / "broken" / "card.json").write_text("{}")
    (store / "half.partial").mkdir()
    rows = {r["name"]: r for r in list_checkpoints()}
    assert rows["pretrained"]["variant"] == "pretrained"
    assert rows["ft"]["variant"] == "fine-tuned" and rows["ft"]["simulated"] is True and rows["ft"]["participants"] == ["P1"]
    assert "field 'format'" in rows["broken"]["error"] and rows["half.partial"]["variant"] == "(partial)"
    assert load_checkpoint("ft").name == "ft"  # by name in the store
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["NAME", "VARIANT", "BASE"] and "fine-tuned" in out and "pretrained" in out
    assert cli_main(["models", "list", "--json"]) == 0
    assert any(json.loads(line)["name"] == "ft" for line in capsys.readouterr().out.splitlines())
