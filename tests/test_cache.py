"""Content-addressed cache and atomic writes."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from brainviz._io import atomic_dir, atomic_path, content_hash, write_json
from brainviz.cache import Cache, cached_file_hash


def test_content_hash_stable_and_sensitive():
    a = np.arange(5, dtype=np.float32)
    assert content_hash(a, {"x": 1, "y": [1, 2]}) == content_hash(a.copy(), {"y": [1, 2], "x": 1})
    assert content_hash(a) != content_hash(a.astype(np.float64))
    assert content_hash(a) != content_hash(a[::-1])
    assert content_hash({"x": 1}) != content_hash({"x": 2})


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text().strip().startswith("{") and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("x")
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "d"):
            pass
    with atomic_dir(tmp_path / "d", overwrite=True) as d:
        (d / "g").write_text("y")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["g"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_cache_computes_once(tmp_path):
    calls = []
    cache = Cache(tmp_path)

    def compute():
        calls.append(1)
        return {"x": np.arange(3)}

    first = cache.arrays("ns", "k1", compute)
    second = cache.arrays("ns", "k1", compute)
    np.testing.assert_array_equal(first["x"], second["x"])
    assert len(calls) == 1
    assert cache.json("ns", "j", lambda: {"a": 2}) == {"a": 2}


def _slow_writer(root, out_queue):
    cache = Cache(root)

    def compute():
        out_queue.put("computed")
        time.sleep(0.5)
        return {"v": np.ones(4)}

    out_queue.put(float(cache.arrays("ns", "shared", compute)["v"].sum()))


def test_two_processes_compute_the_same_entry_once(tmp_path, monkeypatch):
    import sys

    # spawn children re-run the parent's __main__ file; Streamlit's AppTest (used by other tests)
    # leaves a temporary script there, which the children cannot run
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_slow_writer, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in range(3)]
    assert results.count("computed") == 1
    assert sorted(r for r in results if r != "computed") == [4.0, 4.0]
    assert not list((tmp_path / "ns").glob("*.tmp"))


def test_cached_file_hash_tracks_changes(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    h1 = cached_file_hash(f, Cache(tmp_path / "c"))
    time.sleep(0.01)
    f.write_bytes(b"abd")
    assert cached_file_hash(f, Cache(tmp_path / "c")) != h1
