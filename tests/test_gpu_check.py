"""bench/gpu_check.py: the CPU half runs on tiny sizes; without CUDA the full check exits cleanly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from brainviz.tuning._testing import make_tiny_bert

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_only_dry_mode_on_tiny_sizes(gpu_check, tmp_path, capsys):
    bert = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "check.json"
    rc = gpu_check.main(["--cpu-only", "--rows", "40", "--units", "64", "--draws", "30", "--k", "5",
                         "--cpu-torch-units", "64", "--repeat", "1", "--model", str(bert), "--examples", "20",
                         "--batch-size", "8", "--words", "6", "--max-length", "16", "--train-units", "12",
                         "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads(out.read_text())
    assert res["ok"] and res["header"]["mode"] in ("cpu-only", "gpu")
    tvt, ft = res["twenty_vs_twenty"], res["finetune"]
    assert tvt["identical"] and tvt["identical_ties"] and tvt["numba_cpu_s"] > 0
    assert len(ft["cpu"]["losses"]) == 3 and ft["cpu"]["examples_per_s"] > 0 and ft["losses_match"]
    assert "load average" in text and "checks passed" in text


def test_without_cuda_exits_cleanly_with_a_message(gpu_check, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the full check would run")
    assert gpu_check.main([]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
