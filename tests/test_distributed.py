"""Accelerate wrapper: gradient accumulation and data parallelism equal one big batch (CPU)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainviz.config import ConfigError
from brainviz.tuning.distributed import Distributed, DistributedSettings
from brainviz.tuning._testing import make_tiny_bert

REPO = Path(__file__).resolve().parents[1]

# one global step of a tiny BERT + linear head, shared with the 2-process script below
STEP = '''
import numpy as np, torch
from transformers import BertModel
from brainviz.tuning.losses import mse

class Net(torch.nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc = enc  # its pooler stays unused, as in brain-tuning (DDP must cope)
        self.head = torch.nn.Linear(enc.config.hidden_size, 6)

    def forward(self, x, m):
        return self.head(self.enc(input_ids=x, attention_mask=m).last_hidden_state[:, 0])

def make(bert_dir, seed=0):
    torch.manual_seed(seed)
    return Net(BertModel.from_pretrained(bert_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))

def data(n=8, seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 12, n)  # ragged: micro-batches pad to different widths
    ids = [rng.integers(5, 40, int(k)).tolist() for k in lengths]
    y = torch.as_tensor(rng.standard_normal((n, 6)), dtype=torch.float32)
    return ids, y

def forward(model, ids, rows, y):
    width = max(len(ids[i]) for i in rows)
    x = torch.zeros((len(rows), width), dtype=torch.long)
    m = torch.zeros_like(x)
    for b, i in enumerate(rows):
        x[b, : len(ids[i])] = torch.as_tensor(ids[i]); m[b, : len(ids[i])] = 1
    return mse(model(x, m), y[torch.as_tensor(rows)]).mean()  # through the DDP wrapper when there is one

def wrapped_step(dist, model, rows, ids, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt = dist.prepare(model, opt)
    grads, losses = None, []
    for piece, counted in dist.micro_batches(rows):
        with dist.accumulate(model):
            if len(piece):
                loss = forward(model, ids, piece, y)
                losses.append((float(loss), counted))
                dist.backward(loss, rows=counted, total=len(rows))
            if dist.sync_gradients:
                grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
            opt.step()
            opt.zero_grad()
    params = [p.detach().clone() for p in dist.unwrap(model).parameters()]
    return grads, params, losses
'''
ns: dict = {}
exec(STEP, ns)  # noqa: S102 - test helper code, kept in one string for the subprocess


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert"))


def reference_step(model, rows, ids, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = ns["forward"](model, ids, rows, y)
    loss.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    opt.step()
    return grads, [p.detach().clone() for p in model.parameters()], float(loss)


def assert_close(a, b, rtol=1e-4, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def test_micro_batches_cover_the_batch_last_one_never_empty():
    d = Distributed(grad_accum=2, cpu=True)
    assert [(p.tolist(), n) for p, n in d.micro_batches(np.arange(8))] == [([0, 1, 2, 3], 4), ([4, 5, 6, 7], 4)]
    assert [(p.tolist(), n) for p, n in d.micro_batches(np.arange(3))] == [([2], 1), ([0, 1], 2)]
    assert [(p.tolist(), n) for p, n in d.micro_batches(np.arange(1))] == [([], 0), ([0], 1)]
    assert len(Distributed(grad_accum=3, cpu=True).micro_batches(np.arange(2))) == 3


@pytest.mark.parametrize("n_rows", [8, 7])
def test_accumulation_2_x_4_equals_batch_8(bert, n_rows):
    ids, y = ns["data"](n_rows)
    rows = np.arange(n_rows)
    base = ns["make"](bert)
    g_ref, p_ref, loss_ref = reference_step(copy.deepcopy(base), rows, ids, y)
    dist = Distributed(grad_accum=2, cpu=True)
    g, p, losses = ns["wrapped_step"](dist, copy.deepcopy(base), rows, ids, y)
    assert [n for _, n in losses] == ([4, 4] if n_rows == 8 else [3, 4])
    assert sum(l * n for l, n in losses) / n_rows == pytest.approx(loss_ref, rel=1e-5)
    assert_close(g, g_ref)
    assert_close(p, p_ref)
    # and without accumulation the wrapper is the plain loop
    g1, p1, _ = ns["wrapped_step"](Distributed(grad_accum=1, cpu=True), copy.deepcopy(base), rows, ids, y)
    assert_close(g1, g_ref, rtol=1e-6, atol=1e-7)
    # a wrong scale would be caught: half the gradient is far from the reference
    with pytest.raises(AssertionError):
        assert_close([x / 2 for x in g], g_ref)


def test_bf16_autocast_on_cpu(bert):
    ids, y = ns["data"](4)
    model = ns["make"](bert)
    fp32 = float(ns["forward"](model, ids, np.arange(4), y))
    dist = Distributed(mixed_precision="bf16", cpu=True)
    with dist.autocast():
        out = model.head(torch.randn(2, model.head.in_features))
        loss = float(ns["forward"](model, ids, np.arange(4), y))
    assert out.dtype == torch.bfloat16
    assert loss == pytest.approx(fp32, rel=5e-2) and loss != fp32
    with Distributed(mixed_precision="no", cpu=True).autocast():
        assert model.head(torch.randn(2, model.head.in_features)).dtype == torch.float32


def test_settings_from_train_config_and_errors():
    from brainviz.tuning import TrainConfig

    s = DistributedSettings.from_config(TrainConfig(dataset="d", out="o", device="cpu"))
    assert (s.mixed_precision, s.grad_accum, s.device) == ("no", 1, "cpu")

    class Cfg:
        mixed_precision, grad_accum, device = "bf16", 4, "auto"

    assert DistributedSettings.from_config(Cfg()).grad_accum == 4
    with pytest.raises(ConfigError, match="mixed_precision"):
        DistributedSettings(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="grad_accum"):
        DistributedSettings(grad_accum=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU"):
            Distributed(DistributedSettings(device="cuda"))


def test_two_process_data_parallel_equals_one_batch(bert, tmp_path):
    """torchrun, 2 CPU processes (gloo DDP), 4 rows each with accumulation 2 = one batch of 8."""
    script = tmp_path / "ddp.py"
    script.write_text(STEP + f'''
import sys, torch
from brainviz.tuning.distributed import Distributed
ids, y = data(8)
dist = Distributed(grad_accum=2, cpu=True)
assert dist.num_processes == 2, dist.num_processes
grads, params, losses = wrapped_step(dist, make({bert!r}), np.arange(8), ids, y)
if dist.is_main_process:
    from safetensors.torch import save_file
    save_file({{f"p{{i}}": t.contiguous() for i, t in enumerate(params)}}, {str(tmp_path / "params.safetensors")!r})
dist.wait()
''')
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    got = load_file(str(tmp_path / "params.safetensors"))
    ids, y = ns["data"](8)
    _, p_ref, _ = reference_step(ns["make"](bert), np.arange(8), ids, y)
    assert_close([got[f"p{i}"] for i in range(len(p_ref))], p_ref)


def test_training_loop_uses_the_wrapper_for_accumulation_and_bf16(bert, tmp_path):
    """The engine's full stages through the wrapper (a TrainConfig with grad_accum /
    mixed_precision fields): accumulation 2 x 4 gives the predictions of batch 8."""
    import dataclasses
    import json

    from brainviz.models.store import load_checkpoint
    from brainviz.tuning import TrainConfig, train
    from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_dataset

    if "grad_accum" in {f.name for f in dataclasses.fields(TrainConfig)}:
        Cfg = TrainConfig
    else:  # the config fields are not there yet: the loop reads them when present

        @dataclasses.dataclass(frozen=True)
        class Cfg(TrainConfig):
            grad_accum: int = 1
            mixed_precision: str = "no"

    cfg_file = Path(bert) / "config.json"  # no dropout: micro-batches draw other dropout masks
    nodrop = tmp_path / "bert"
    import shutil

    shutil.copytree(bert, nodrop)
    c = json.loads(cfg_file.read_text())
    c.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (nodrop / "config.json").write_text(json.dumps(c))
    data = make_tiny_dataset(tmp_path / "data", n_fmri=1, n_meg=0)
    common = dict(dataset=str(data), base=str(nodrop), folds=("run-1",), participants=("P1",), preset="quick",
                  preprocess=TINY_PREPROCESS, variant="fine-tuned", epochs=(1, 2), batch_size=8, dropout=0.0)
    if "predictions_dtype" in {f.name for f in dataclasses.fields(TrainConfig)}:
        common["predictions_dtype"] = "float32"  # differences far below float16's resolution stay visible

    def run(name, **kw):
        out = train(Cfg(out=str(tmp_path / name), **common, **kw), bar=False)
        return load_checkpoint(out).predictions("P1", 0)["predictions"].astype(np.float64)

    plain, accum, bf16 = run("plain"), run("accum", grad_accum=2), run("bf16", mixed_precision="bf16")
    scale = np.abs(plain).max()
    np.testing.assert_allclose(accum, plain, rtol=0, atol=1e-4 * scale)
    assert 0 < np.abs(bf16 - plain).max() < 5e-2 * scale  # bf16 autocast ran, and stayed close


def test_train_config_and_cli_carry_the_accelerate_settings():
    import argparse

    from brainviz.config import ConfigError
    from brainviz.tuning._cli import add_parser, config_from_args
    from brainviz.tuning.config import TrainConfig

    cfg = TrainConfig(dataset="d", out="o", mixed_precision="bf16", grad_accum=4)
    assert (cfg.mixed_precision, cfg.grad_accum) == ("bf16", 4)
    for bad in ({"grad_accum": 0}, {"mixed_precision": "fp8"}):
        with pytest.raises(ConfigError):
            TrainConfig(dataset="d", out="o", **bad)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--dataset", "d", "--variant", "fine-tuned", "--out", "o", "--grad-accum", "2",
                              "--mixed-precision", "bf16"])
    c = config_from_args(args)
    assert (c.grad_accum, c.mixed_precision) == (2, "bf16")


def test_training_job_under_a_two_process_launch_equals_one_process(bert, tmp_path):
    """A training job under `torchrun --nproc_per_node 2` (2 CPU processes, gloo DDP): the main
    process alone writes the checkpoint, whose predictions equal a single-process run of the same
    command (same global batches), and the second process writes nothing of its own."""
    import json
    import shutil

    from brainviz.models.store import load_checkpoint
    from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_dataset

    nodrop = tmp_path / "bert"  # no dropout: the two processes draw other dropout masks than one
    shutil.copytree(bert, nodrop)
    c = json.loads((nodrop / "config.json").read_text())
    c.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (nodrop / "config.json").write_text(json.dumps(c))
    data = make_tiny_dataset(tmp_path / "data", n_fmri=2, n_meg=0)
    script = tmp_path / "job.py"
    script.write_text(f"""
import sys
from brainviz.tuning import TrainConfig, train
train(TrainConfig(dataset={str(data)!r}, base={str(nodrop)!r}, variant="fine-tuned", preset="quick", folds=("run-1",),
                  epochs=(1, 2), batch_size=8, dropout=0.0, predictions_dtype="float32",
                  preprocess={TINY_PREPROCESS!r}, out=sys.argv[1]), bar=False)
""")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=400,
                         cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=400, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert not (tmp_path / "two.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == ["two"]
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert a.card["metrics"]["encoder_change"] == pytest.approx(b.card["metrics"]["encoder_change"], rel=1e-3)
    for pid in a.participants:
        pa = a.predictions(pid, 0)["predictions"].astype(np.float64)
        pb = b.predictions(pid, 0)["predictions"].astype(np.float64)
        np.testing.assert_allclose(pb, pa, rtol=0, atol=1e-4 * np.abs(pa).max())
