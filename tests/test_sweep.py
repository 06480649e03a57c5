"""Sweeps: grid expansion, the in-process backend, resume/skip, evaluation over a sweep (fast)."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz.cli import main as cli_main
from brainviz.config import ConfigError
from brainviz.errors import BrainvizError, BusyError
from brainviz.sweep import SweepConfig, SweepError, compare_sweep, evaluate_sweep, plan_sweep, run_sweep, train_argv
from brainviz.tuning._testing import TINY_PREPROCESS, make_tiny_bert, make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sweep")
    return {"bert": make_tiny_bert(root / "bert"), "data": make_tiny_dataset(root / "data", n_fmri=3, n_meg=1)}


def sweep_config(tiny, out, **kw) -> SweepConfig:
    values = dict(dataset=str(tiny["data"]), variants=("vanilla", "fine-tuned"), out=str(out),
                  participants=("P1", "P2"), folds=("run-1", "run-2"), seeds=(0,),
                  train={"base": str(tiny["bert"]), "preset": "quick", "preprocess": TINY_PREPROCESS},
                  epochs={"vanilla": [2], "fine-tuned": [1, 1]}, backend="local")
    values.update(kw)
    if "epochs" not in kw:
        values["epochs"] = {v: e for v, e in values["epochs"].items() if v in values["variants"]}
    return SweepConfig(**values)


def test_plan_one_job_per_cell_and_shared_fit_variants_stay_together(tiny, tmp_path):
    cfg = sweep_config(tiny, tmp_path / "s", variants=("vanilla", "meg-transfer"), seeds=(0, 1),
                       epochs={"vanilla": [2], "meg-transfer": [1, 1, 1, 1]})
    jobs = plan_sweep(cfg)
    van = [j for j in jobs if j.variant == "vanilla"]
    meg = [j for j in jobs if j.variant == "meg-transfer"]
    assert len(van) == 2 * 2 * 2 and len(meg) == 2 * 2  # meg-transfer: participants together
    assert {(j.participants, j.folds, j.seeds) for j in van} == {
        ((p,), (f,), (s,)) for p in ("P1", "P2") for f in ("run-1", "run-2") for s in (0, 1)}
    assert all(j.participants == ("P1", "P2") and j.config.participants == ("P1", "P2") for j in meg)
    j = van[0]
    assert j.name == "vanilla__P1__fold-run-1__seed-0" and j.out == tmp_path / "s" / j.name
    assert j.config.epochs == (2,) and j.config.preset == "quick" and j.config.preprocess == TINY_PREPROCESS
    assert len({x.name for x in jobs}) == len(jobs) and len({x.config.job_key() for x in jobs}) == len(jobs)
    # axes kept together; empty participant/fold axes mean "all of the dataset's"
    together = plan_sweep(sweep_config(tiny, tmp_path / "t", participants=(), folds=(), same_job=("folds", "seeds")))
    assert [x.name for x in together if x.variant == "vanilla"] == [
        "vanilla__P1__folds-all__seed-0", "vanilla__P2__folds-all__seed-0", "vanilla__P3__folds-all__seed-0"]
    assert together[0].config.folds == () and together[0].config.participants == ("P1",)


def test_jobs_are_the_train_commands(tiny, tmp_path):
    from brainviz.tuning._cli import add_parser, config_from_args

    cfg = sweep_config(tiny, tmp_path / "s", train={"base": str(tiny["bert"]), "preset": "quick", "lr": 1e-4})
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    for job in plan_sweep(cfg):
        argv = train_argv(job.config)
        assert argv[1:4] == ["-m", "brainviz", "train"]
        assert config_from_args(parser.parse_args(argv[3:])) == job.config
    # preprocessing overrides have train options too
    job = plan_sweep(sweep_config(tiny, tmp_path / "p"))[0]
    argv = train_argv(job.config)
    assert config_from_args(parser.parse_args(argv[3:])) == job.config
    # a field the train command has no option for is said, never dropped
    with pytest.raises(ValueError, match="lora_r"):
        train_argv(job.config.replace(lora_r=4))


@pytest.mark.parametrize("change,message", [
    ({"variants": ("vanilla", "nope")}, "variants: unknown"),
    ({"train": {"variant": "joint"}}, "set by the sweep"),
    ({"epochs": {"joint": [1, 1]}}, "not in the sweep's variants"),
    ({"epochs": {"vanilla": [1, 2]}}, "epochs"),
    ({"same_job": ("runs",)}, "same_job"),
    ({"num_cpus": 0}, "num_cpus"),
    ({"address": "auto"}, "address"),  # with backend local
    ({"train": {"base": "x", "lr": -1.0}}, "lr"),
])
def test_bad_config_names_the_field(tiny, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        sweep_config(tiny, tmp_path / "s", **change)


def test_local_sweep_skips_finished_resumes_and_evaluates(tiny, tmp_path):
    from brainviz.models.store import list_checkpoints, load_checkpoint

    out = tmp_path / "sweep"
    cfg = sweep_config(tiny, out)
    jobs = plan_sweep(cfg)
    # one job interrupted earlier (after its first saved epoch): the sweep resumes its .partial
    first = jobs[0]

    class Stop(Exception):
        pass

    def stop(saved):
        raise Stop

    from brainviz.tuning import train

    with pytest.raises(Stop):
        train(first.config, bar=False, on_epoch_saved=stop)
    assert first.state() == "partial"
    fractions = []
    res = run_sweep(cfg, progress=lambda f, m: fractions.append(f), progress_file=tmp_path / "p.jsonl", bar=False)
    assert res.ok and res.counts() == {"done": 8, "resumed": 1} and len(jobs) == 8
    assert res.jobs[0]["resumed"] and not any(j["resumed"] for j in res.jobs[1:])
    assert fractions[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in fractions)
    assert (tmp_path / "p.jsonl").read_text().strip()
    manifest = json.loads((out / "sweep.json").read_text())
    assert [j["name"] for j in manifest["jobs"]] == [j.name for j in jobs]
    # the sweep folder is a checkpoint store
    names = {r["name"] for r in list_checkpoints(out, include_pretrained=False)}
    assert names == {j.name for j in jobs}
    ck = load_checkpoint(out / first.name)
    assert ck.participants == ["P1"] and ck.folds == ["run-1"] and ck.seeds == [0] and ck.simulated
    before = (out / first.name / "card.json").stat().st_mtime_ns
    again = run_sweep(cfg, bar=False)
    assert again.counts() == {"skipped": 8, "resumed": 0}
    assert (out / first.name / "card.json").stat().st_mtime_ns == before
    # a finished checkpoint from another configuration is never silently reused
    other = cfg.replace(train={**cfg.train, "lr": 3e-4})
    with pytest.raises(SweepError, match="different configuration"):
        run_sweep(other, bar=False)

    from brainviz.evaluation import CompareConfig, EvaluateConfig

    table = evaluate_sweep(out, EvaluateConfig(k=5, n_samples=40))
    assert set(table["variant"]) == {"vanilla", "fine-tuned"} and table["simulated"].all()
    assert pd.read_csv(out / "evaluation.csv").shape == table.shape
    summary = json.loads((out / "evaluation.summary.json").read_text())
    assert summary["simulated"] is True and set(summary["variants"]) == {"vanilla", "fine-tuned"}
    # the merged folder holds every fold of every participant, sorted by TR
    with np.load(out / "merged" / "vanilla" / "predictions" / "seed-0" / "P1.npz") as npz:
        assert set(npz["run"]) == {"run-1", "run-2"} and np.all(np.diff(npz["tr_index"]) > 0)
        p1 = npz["predictions"]
    fold1 = load_checkpoint(out / "vanilla__P1__fold-run-1__seed-0").predictions("P1", 0)["predictions"]
    np.testing.assert_array_equal(p1[: len(fold1)], fold1)
    cmp = compare_sweep(out, "vanilla", "fine-tuned", CompareConfig(k=5, n_samples=40))
    assert (cmp["variant_a"] == "vanilla").all() and cmp["simulated"].all()
    assert (out / "compare-vanilla-vs-fine-tuned.csv").is_file()
    with pytest.raises(SweepError, match="no variant"):
        evaluate_sweep(out, variants=("joint",))


def test_unfinished_sweep_and_busy_folder_are_refused(tiny, tmp_path):
    out = tmp_path / "sweep"
    cfg = sweep_config(tiny, out, variants=("vanilla",), participants=("P1",), folds=("run-1",))
    (out / ".sweep").mkdir(parents=True)
    with open(out / ".sweep" / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BusyError, match="another sweep"):
            run_sweep(cfg, bar=False)
    with pytest.raises(SweepError, match="not a sweep folder"):
        evaluate_sweep(out)
    from brainviz.sweep.runner import write_manifest

    write_manifest(cfg, plan_sweep(cfg))
    with pytest.raises(SweepError, match="1 job\\(s\\) have not finished"):
        evaluate_sweep(out)


def test_failed_job_is_reported_and_the_others_run(tiny, tmp_path):
    out = tmp_path / "sweep"
    cfg = sweep_config(tiny, out, variants=("vanilla",), folds=("run-1",))
    bad = plan_sweep(cfg)[1]
    (out / (bad.name + ".partial")).mkdir(parents=True)  # foreign partial without progress.json
    res = run_sweep(cfg, bar=False)
    assert not res.ok and [j["name"] for j in res.failed] == [bad.name]
    assert "partial" in res.failed[0]["error"]
    assert (out / plan_sweep(cfg)[0].name / "card.json").is_file()
    status = json.loads((out / "sweep-status.json").read_text())
    assert status["counts"] == {"done": 1, "failed": 1, "resumed": 1}


def test_cli_dry_run_and_errors(tiny, tmp_path, capsys):
    spec = tmp_path / "train.json"
    spec.write_text(json.dumps({"base": str(tiny["bert"]), "preprocess": TINY_PREPROCESS}))
    args = ["sweep", "--dataset", str(tiny["data"]), "--variants", "vanilla", "fine-tuned", "--participants", "P1",
            "--folds", "run-1", "--seeds", "0", "1", "--preset", "quick", "--epochs", "fine-tuned=1,1",
            "--train-config", str(spec), "--out", str(tmp_path / "s"), "--backend", "local", "--dry-run"]
    assert cli_main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("vanilla__P1__fold-run-1__seed-0 [pending]")
    assert cli_main(args[:-1] + ["--epochs", "fine-tuned:1"]) == 2
    assert "VARIANT=N,N" in capsys.readouterr().err
    assert cli_main(args[:-1] + ["--train-config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_ray_is_optional(tiny, tmp_path, monkeypatch):
    # importing brainviz, its CLI and the sweep modules never imports ray
    code = ("import sys, brainviz, brainviz.cli, brainviz.jobs, brainviz.sweep.runner, brainviz.sweep.results, "
            "brainviz.sweep._cli; brainviz.cli.build_parser(); assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    cfg = sweep_config(tiny, tmp_path / "s", backend="ray", variants=("vanilla",), participants=("P1",),
                       folds=("run-1",))
    with pytest.raises(BrainvizError, match="pip install ray==") as exc:
        run_sweep(cfg, bar=False)
    assert "--backend local" in str(exc.value)


def test_job_runner_ray_option_builds_the_same_train_arguments(tmp_path):
    from brainviz import jobs
    from brainviz.sweep.submit import train_config_from_argv
    from brainviz.tuning._cli import add_parser, config_from_args

    kw = dict(dataset="data/x", variant="fine-tuned", out=str(tmp_path / "m"), participants=("P1",), seeds=(0, 1))
    local = jobs.train_command(**kw)
    ray_argv = jobs.train_command(**kw, backend="ray", ray_address="auto", ray_num_gpus=1)
    assert ray_argv[1:3] == ["-m", "brainviz.sweep.submit"] and "--address" in ray_argv
    rest = ray_argv[ray_argv.index("--") + 1:]
    assert rest == local[4:]
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    cfg, _ = train_config_from_argv(rest)
    assert cfg == config_from_args(parser.parse_args(local[3:]))
    with pytest.raises(jobs.JobError, match="backend"):
        jobs.train_command(**kw, backend="slurm")


def test_unreachable_cluster_is_a_clear_error(monkeypatch):
    pytest.importorskip("ray")
    import ray

    from brainviz.sweep import _ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        started = _ray.connect("auto")
    except BrainvizError as exc:
        assert "cannot connect to the Ray cluster at 'auto'" in str(exc) and "ray start --head" in str(exc)
        return
    if started:  # a cluster really runs on this machine: nothing to test here
        ray.shutdown()
    pytest.skip("a Ray cluster is running on this machine")
