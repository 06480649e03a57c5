"""Faults of the reliability probe (issue 13): concurrent writers, killed writers, a full disk,
and the one error type the CLI and the app turn into a message."""

from __future__ import annotations

import errno
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainviz import _io
from brainviz.cli import main
from brainviz.errors import BrainvizError, BusyError, DiskFullError

REPO = Path(__file__).resolve().parents[1]


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _age(path: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def dataset(tmp_path) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space

    n = 80  # TRs per run: enough rows left after the quick preset trims
    words = pd.DataFrame([{"onset": t, "duration": 0.3, "word": "w", "run": r, "story": "s"}
                          for r in ("run-1", "run-2") for t in np.arange(0.0, 2.0 * n, 0.5)])
    space = Space(kind="rois", roi_names=["a", "b", "c"])
    rec = FMRIRecording("P1", np.random.default_rng(0).standard_normal((2 * n, 3)).astype(np.float32), 2.0,
                        [Run("run-1", n), Run("run-2", n)], space)
    return Dataset(DatasetMeta(name="tiny", simulated=True), words, {"P1": rec}).save(tmp_path / "ds")


# --------------------------------------------------------------------------------------
# one error type
# --------------------------------------------------------------------------------------


def test_every_error_class_derives_from_brainviz_error():
    classes = {
        "brainviz.errors": ["DatasetError", "CheckpointError", "ConfigError", "HeldOutError", "ModelNotFoundError",
                            "UsageError", "OutputExistsError", "InputNotFoundError", "ResourceLimitError", "BusyError",
                            "DiskFullError"],
        "brainviz.data.dataset": ["DatasetError"], "brainviz.models.store": ["CheckpointError"],
        "brainviz.config": ["ConfigError"], "brainviz.evaluation.io": ["HeldOutError"],
        "brainviz.models.encoder": ["ModelNotFoundError"], "brainviz.tuning.train": ["TrainError"],
        "brainviz.jobs": ["JobError"], "brainviz.data.fetch": ["FetchError"],
        "brainviz.coupling.neurons": ["CouplingError"], "brainviz.cli": ["CLIError"],
    }
    for module, names in classes.items():
        mod = importlib.import_module(module)
        for name in names:
            assert issubclass(getattr(mod, name), BrainvizError), f"{module}.{name}"
    # the built-in bases are kept, so older ``except ValueError`` code keeps working
    from brainviz.errors import DatasetError, OutputExistsError

    assert issubclass(DatasetError, ValueError) and issubclass(OutputExistsError, FileExistsError)


def _parser_raising(exc: BaseException):
    import argparse

    def func(args):
        raise exc

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=func)
    return lambda: parser


def test_cli_turns_only_brainviz_errors_into_messages(monkeypatch, capsys, dataset):
    import brainviz.cli as cli
    from brainviz.errors import DatasetError

    assert main(["info", str(dataset / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    monkeypatch.setattr(cli, "build_parser", _parser_raising(DatasetError("bad value", file="d/x.json", field="tr")))
    assert cli.main([]) == 2
    assert capsys.readouterr().err == "error: d/x.json: field 'tr': bad value\n"
    # bugs keep their traceback (they used to print as user errors when they were ValueError/RuntimeError)
    for bug in (KeyError("a real bug"), ValueError("internal"), RuntimeError("internal"), FileNotFoundError("x"),
                TypeError("x")):
        monkeypatch.setattr(cli, "build_parser", _parser_raising(bug))
        with pytest.raises(type(bug)):
            cli.main([])


def test_app_shows_brainviz_errors_as_a_message():
    text = (REPO / "app.py").read_text()
    assert "except BrainvizError" in text and "st.error" in text
    import tomllib

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["showErrorDetails"] in ("none", False)
    assert cfg["server"]["address"] == "127.0.0.1"


# --------------------------------------------------------------------------------------
# locks
# --------------------------------------------------------------------------------------


def test_file_lock_is_exclusive_across_processes(tmp_path):
    target = tmp_path / "out.partial"
    code = textwrap.dedent(f"""
        import sys, time
        from brainviz._io import file_lock
        with file_lock({str(target)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="another brainviz process") as exc:
            with _io.file_lock(target):
                pass
        assert exc.value.file == str(target)
    finally:
        proc.kill()  # a killed holder releases the lock
        proc.wait()
    with _io.file_lock(target):
        pass
    assert not _io.lock_path(target).exists()  # released locks leave no file


def test_two_trainings_into_one_out_do_not_race(dataset, tmp_path, capsys):
    """The second ``train`` to the same ``--out`` stops at once with a clear line (it used to
    race on ``<out>.partial``: Errno 17 / 2 and an orphaned folder)."""
    out = tmp_path / "m"
    with _io.file_lock(out.with_name("m.partial")):  # what the first job holds while it runs
        before = _listing(tmp_path)
        rc = main(["train", "--dataset", str(dataset), "--variant", "vanilla", "--preset", "quick", "--epochs", "1",
                   "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "m.partial" in err and "another brainviz process" in err, err
        assert _listing(tmp_path) == before


def test_two_imports_into_one_out_do_not_race(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"onset": np.arange(20.0), "duration": 0.3, "word": "w"}).to_csv(src / "words.tsv", sep="\t", index=False)
    np.save(src / "P1.npy", np.zeros((10, 3)))
    out = tmp_path / "d"
    with _io.file_lock(out):
        rc = main(["import", "generic", str(src), "--tr", "2", "--space", "rois", "--out", str(out)])
    assert rc == 2 and "another brainviz process" in capsys.readouterr().err
    assert not out.exists()
    assert main(["import", "generic", str(src), "--tr", "2", "--space", "rois", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "src"]  # no lock, temp or work folder left


# --------------------------------------------------------------------------------------
# killed writers leave nothing forever
# --------------------------------------------------------------------------------------


def _run_and_kill(code: str, sig: int = signal.SIGKILL) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                            cwd=str(REPO))
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
    finally:
        proc.wait(timeout=30)


def test_killed_cache_writer_temp_is_cleaned(tmp_path, monkeypatch):
    """A compare killed while writing a cache entry leaves a hidden temp file; the next write
    in that cache namespace removes it (only once its lock is free)."""
    from brainviz.cache import Cache

    root = tmp_path / "cache"
    _run_and_kill(f"""
        import time
        from brainviz.cache import Cache
        def compute():
            print("ready", flush=True)
            time.sleep(60)
            return {{}}
        Cache({str(root)!r}).arrays("compare", "k1", compute)
    """)
    stale = [p for p in (root / "compare").iterdir() if p.name.startswith(".k1.npz.")]
    assert len(stale) == 1
    cache = Cache(root)
    # a live writer's temp file (locked) is never touched, however old
    with _io.atomic_path(root / "compare" / "live.npz") as live:
        _age(live)
        monkeypatch.setattr(_io, "STALE_GRACE_S", 0.0)
        cache.arrays("compare", "k2", lambda: {"x": np.arange(3)})
        assert live.exists()
        assert not stale[0].exists()
    names = sorted(p.name for p in (root / "compare").iterdir())
    assert names == ["k1.lock", "k2.lock", "k2.npz", "live.npz"]


def test_young_temp_files_are_kept(tmp_path):
    f = tmp_path / ".out.npz.abcd1234.tmp"
    f.write_bytes(b"x")
    assert _io.clean_stale_temps(tmp_path) == []  # could be a writer between create and lock
    _age(f)
    assert _io.clean_stale_temps(tmp_path) == [f]


def test_killed_import_work_folder_is_cleaned(tmp_path, capsys):
    """``import generic`` killed (SIGBUS in the probe) leaves its work folder; the next import
    to the same output removes it."""
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"onset": np.arange(20.0), "duration": 0.3, "word": "w"}).to_csv(src / "words.tsv", sep="\t", index=False)
    np.save(src / "P1.npy", np.zeros((10, 3)))
    out = tmp_path / "d"
    _run_and_kill(f"""
        import time
        from pathlib import Path
        from brainviz.data.importers._common import WorkDir
        with WorkDir(Path({str(out)!r})) as w:
            w.array("P1", (10, 3))
            print("ready", flush=True)
            time.sleep(60)
    """, signal.SIGBUS)
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".d.")]
    assert any(n.endswith(".import-work") for n in left)
    assert main(["import", "generic", str(src), "--tr", "2", "--space", "rois", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "src"]


# --------------------------------------------------------------------------------------
# disk full
# --------------------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_one_clear_line(tmp_path, capsys, monkeypatch, dataset):
    from brainviz.data import dataset as dataset_mod

    out = tmp_path / "copy"
    monkeypatch.setattr(dataset_mod.np, "save", _enospc)
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"onset": np.arange(20.0), "duration": 0.3, "word": "w"}).to_csv(src / "words.tsv", sep="\t", index=False)
    (src / "P1.csv").write_text("a,b\n" + "\n".join("1,2" for _ in range(10)) + "\n")
    rc = main(["import", "generic", str(src), "--tr", "2", "--out", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "no space left on the device" in errors[0] and str(out) in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]  # nothing half-written


def test_disk_full_in_atomic_writers(tmp_path):
    with pytest.raises(DiskFullError, match="no space left") as exc:
        with _io.atomic_path(tmp_path / "a.json"):
            _enospc()
    assert exc.value.errno == errno.ENOSPC and isinstance(exc.value, OSError)
    with pytest.raises(DiskFullError):
        with _io.atomic_dir(tmp_path / "folder"):
            _enospc()
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_raw_enospc_from_anywhere(monkeypatch, capsys):
    import brainviz.cli as cli

    monkeypatch.setattr(cli, "build_parser", _parser_raising(OSError(errno.ENOSPC, "No space left on device", "/x/y")))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/x/y: no space left on the device" in err


# --------------------------------------------------------------------------------------
# safe names and confined paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["../x", "/abs", ".hidden", "", "a/b", "a\\b", "x" * 200, "a\x00", "-rf", 5, None])
def test_unsafe_ids_are_refused(value):
    from brainviz.errors import DatasetError

    with pytest.raises(DatasetError, match="safe file name"):
        _io.check_safe_id(value)


@pytest.mark.parametrize("value", ["sub-01", "P1", "A", "meg_02.x", "1"])
def test_safe_ids_pass(value):
    assert _io.check_safe_id(value) == value


def test_confined(tmp_path):
    from brainviz.errors import DatasetError

    (tmp_path / "a").mkdir()
    assert _io.confined(tmp_path, "a/b.npy") == tmp_path / "a" / "b.npy"
    for bad in ("../b", "/etc/passwd", "a/../../b", "", None, 3):
        with pytest.raises(DatasetError):
            _io.confined(tmp_path, bad)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(DatasetError, match="symbolic link"):
        _io.confined(tmp_path, "link/passwd")


def test_cli_permission_denied_is_one_line(monkeypatch, capsys):
    import brainviz.cli as cli

    monkeypatch.setattr(cli, "build_parser", _parser_raising(PermissionError(errno.EACCES, "Permission denied", "/root/x")))
    assert cli.main([]) == 2
    assert capsys.readouterr().err == "error: /root/x: Permission denied (choose a folder you can write to)\n"
