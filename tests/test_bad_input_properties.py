"""Property-based bad-input suite (hypothesis): random corruptions of valid folders.

For the dataset loader, the generic importer and the checkpoint loader, every corruption must
end in a :class:`~brainviz.errors.BrainvizError` or a valid object: never another exception,
and never a file written outside the target folder (no stray temporary files, locks or work
folders either). Runs are derandomized (the same examples every run) and kept small.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainviz.errors import BrainvizError

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PIDS = ("P1", "P2")
RUNS = ("run-1", "run-2")
N_TRS, N_UNITS, TR = 12, 5, 2.0
N_WORDS = int(N_TRS * TR / 0.5) * len(RUNS)  # one word every 0.5 s

# hostile scalar values for JSON fields
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "abc", "../../../../tmp/escape", "/etc/passwd", "..", "a/b", "x\x00y", "\u00e9\u2603", "nan",
                     "inf", "-1", "0", "1e400", "fmri/P1.npy", "stimulus.tsv", "space/coords.npy", "sub-01"]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "file", "name", "n_trs", "kind", "0"]), inner, max_size=3)),
    max_leaves=6)
CELLS = st.one_of(
    st.sampled_from(['"So,', '"', "''", "inf", "-inf", "nan", "", " ", "1e999", "-5", "\\t", "../x", "a\rb", "é", "0x1F"]),
    st.text(max_size=6),
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON tree (the root excluded)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool) -> None:
    for k in path[:-1]:
        obj = obj[k]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def _corrupt_bytes(path: Path, how: str, pos: float, junk: bytes) -> None:
    data = path.read_bytes()
    i = int(pos * len(data))
    if how == "truncate":
        path.write_bytes(data[:i])
    elif how == "overwrite":
        path.write_bytes(data[:i] + junk + data[i + len(junk):])
    elif how == "insert":
        path.write_bytes(data[:i] + junk + data[i:])
    else:  # replace
        path.write_bytes(junk)


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


BYTE_CORRUPTION = st.tuples(st.sampled_from(["truncate", "overwrite", "insert", "replace"]),
                            st.floats(0, 1), st.binary(min_size=1, max_size=16))


# --------------------------------------------------------------------------------------
# valid templates (built once per session)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, Run, Space
    from brainviz.models.heads import BrainHeads, FMRIHead

    root = tmp_path_factory.mktemp("templates")
    rng = np.random.default_rng(0)
    words = [{"onset": t, "duration": 0.3, "word": f"w{i % 5}", "run": r, "story": "s"}
             for r in RUNS for i, t in enumerate(np.arange(0.0, N_TRS * TR, 0.5))]
    space = Space(kind="rois", roi_names=[f"roi{i}" for i in range(N_UNITS)])
    fmri = {p: FMRIRecording(p, rng.standard_normal((N_TRS * len(RUNS), N_UNITS)).astype(np.float32), TR,
                             [Run(r, N_TRS) for r in RUNS], space) for p in PIDS}
    Dataset(DatasetMeta(name="tiny", simulated=True), pd.DataFrame(words), fmri).save(root / "dataset")

    gen = root / "generic"
    gen.mkdir()
    pd.DataFrame([{k: v for k, v in w.items() if k != "story"} for w in words]).to_csv(
        gen / "words.tsv", sep="\t", index=False)
    for p in PIDS:
        for r in RUNS:
            np.save(gen / f"{p}_run-{r}.npy", rng.standard_normal((N_TRS, N_UNITS)))

    ck = root / "checkpoint"
    heads = BrainHeads(FMRIHead(8, ["P1"], [N_UNITS]))
    heads.save(ck / "heads.safetensors")
    heads.save(ck / "fits" / "P1" / "fold-run-1" / "seed-0" / "heads.safetensors")
    pred = ck / "predictions" / "seed-0" / "P1.npz"
    pred.parent.mkdir(parents=True)
    np.savez(pred, predictions=rng.standard_normal((N_TRS, N_UNITS)).astype(np.float32),
             tr_index=np.arange(N_TRS, dtype=np.int64), run=np.array(["run-1"] * N_TRS))
    card = {
        "format": 1, "name": "ck", "variant": "vanilla", "base": "pretrained", "encoder": "pretrained",
        "dataset": {"name": "tiny", "path": str(root / "dataset"), "hash": "0"}, "simulated": True,
        "participants": ["P1"], "folds": ["run-1"], "seeds": [0], "train_config": {}, "preprocess": {},
        "versions": {}, "metrics": {}, "created": "2026-01-01T00:00:00+00:00",
        "fits": [{"group": "P1", "fold": "run-1", "seed": 0, "encoder": "base",
                  "heads": "fits/P1/fold-run-1/seed-0/heads.safetensors", "predicts": ["P1"]}],
        "predictions": {"seed-0": {"P1": "predictions/seed-0/P1.npz"}},
    }
    (ck / "card.json").write_text(json.dumps(card, indent=2))
    return {"dataset": root / "dataset", "generic": gen, "checkpoint": ck}


def _fresh_copy(src: Path) -> tuple[Path, Path]:
    """A private copy of ``src`` inside a new scratch folder: (scratch, copy)."""
    scratch = Path(tempfile.mkdtemp(prefix="bv-prop-"))
    dst = scratch / src.name
    shutil.copytree(src, dst)
    return scratch, dst


# --------------------------------------------------------------------------------------
# dataset loader
# --------------------------------------------------------------------------------------


def _load_dataset_or_error(folder: Path) -> None:
    from brainviz.data.dataset import Dataset, load_dataset

    before = _listing(folder.parent)
    try:
        ds = load_dataset(folder)
    except BrainvizError as exc:
        assert str(exc)
    else:
        assert isinstance(ds, Dataset)
        ds.validate()
        assert ds.participants or ds.meg_participants
    assert _listing(folder.parent) == before, "the loader wrote files"


@SETTINGS
@given(data=st.data())
def test_dataset_manifest_mutations(templates, data):
    scratch, folder = _fresh_copy(templates["dataset"])
    try:
        manifest = json.loads((folder / "dataset.json").read_text())
        path = data.draw(st.sampled_from(_paths(manifest)), label="path")
        delete = data.draw(st.booleans(), label="delete")
        value = data.draw(JSON_VALUES, label="value")
        _set(manifest, path, value, delete)
        (folder / "dataset.json").write_text(json.dumps(manifest))
        _load_dataset_or_error(folder)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(target=st.sampled_from(["dataset.json", "stimulus.tsv", "fmri/P1.npy"]), corruption=BYTE_CORRUPTION)
def test_dataset_byte_corruptions(templates, target, corruption):
    scratch, folder = _fresh_copy(templates["dataset"])
    try:
        _corrupt_bytes(folder / target, *corruption)
        _load_dataset_or_error(folder)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(row=st.integers(0, N_WORDS - 1), col=st.integers(0, 4), cell=CELLS)
def test_dataset_stimulus_cells(templates, row, col, cell):
    scratch, folder = _fresh_copy(templates["dataset"])
    try:
        lines = (folder / "stimulus.tsv").read_text().split("\n")
        fields = lines[row + 1].split("\t")
        fields[col] = cell
        lines[row + 1] = "\t".join(fields)
        (folder / "stimulus.tsv").write_text("\n".join(lines))
        _load_dataset_or_error(folder)
    finally:
        shutil.rmtree(scratch)


def test_quoted_word_is_one_word(templates, tmp_path):
    """A quote is an ordinary character: no rows are merged (a hole the probe found)."""
    from brainviz.data.dataset import load_dataset

    folder = tmp_path / "d"
    shutil.copytree(templates["dataset"], folder)
    lines = (folder / "stimulus.tsv").read_text().split("\n")
    fields = lines[3].split("\t")
    fields[2] = '"So,'
    lines[3] = "\t".join(fields)
    (folder / "stimulus.tsv").write_text("\n".join(lines))
    ds = load_dataset(folder)
    assert len(ds.stimulus) == N_WORDS and ds.stimulus.word.iloc[2] == '"So,'
    ds.save(tmp_path / "again")  # and it survives a save / load round trip
    assert load_dataset(tmp_path / "again").stimulus.word.tolist() == ds.stimulus.word.tolist()


# --------------------------------------------------------------------------------------
# generic importer
# --------------------------------------------------------------------------------------


def _import_or_error(src: Path, **options: Any) -> None:
    from brainviz.data.dataset import load_dataset
    from brainviz.data.importers import import_dataset

    scratch = src.parent
    out = scratch / "out"
    before = _listing(scratch)
    try:
        res = import_dataset("generic", src, out, **{"tr": TR, "space": "rois", **options})
    except BrainvizError as exc:
        assert str(exc)
        assert not out.exists(), "a failed import left its output"
        after = _listing(scratch)
        assert after == before, f"a failed import left files: {sorted(after - before)}"
    else:
        assert res.path == out
        ds = load_dataset(out)
        assert len(ds.stimulus) > 0 and ds.participants
        stray = {p for p in _listing(scratch) - before if not (p == "out" or p.startswith("out/"))}
        assert not stray, f"the import wrote outside --out: {sorted(stray)}"


@SETTINGS
@given(row=st.integers(0, N_WORDS - 1), col=st.integers(0, 3), cell=CELLS)
def test_generic_words_cells(templates, row, col, cell):
    scratch, src = _fresh_copy(templates["generic"])
    try:
        lines = (src / "words.tsv").read_text().split("\n")
        fields = lines[row + 1].split("\t")
        fields[col] = cell
        lines[row + 1] = "\t".join(fields)
        (src / "words.tsv").write_text("\n".join(lines))
        _import_or_error(src)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(target=st.sampled_from(["words.tsv", "P1_run-run-1.npy", "P2_run-run-2.npy"]), corruption=BYTE_CORRUPTION)
def test_generic_byte_corruptions(templates, target, corruption):
    scratch, src = _fresh_copy(templates["generic"])
    try:
        _corrupt_bytes(src / target, *corruption)
        _import_or_error(src)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(name=st.sampled_from(["../../escape", "/tmp/abs", ".hidden", "a b", "ok-1", "x\ny", "é", "-dash", "a" * 200]),
       tr=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([TR, "2", None, -1])))
def test_generic_hostile_ids_and_options(templates, name, tr):
    scratch, src = _fresh_copy(templates["generic"])
    try:
        for p in src.glob("P1_*.npy"):
            p.unlink()
        _import_or_error(src, tr=tr, fmri={name: [str(src / "P2_run-run-1.npy"), str(src / "P2_run-run-2.npy")]})
    finally:
        shutil.rmtree(scratch)


# --------------------------------------------------------------------------------------
# checkpoint loader
# --------------------------------------------------------------------------------------


def _checkpoint_or_error(folder: Path) -> None:
    from brainviz.models.store import Checkpoint, list_checkpoints, load_checkpoint

    before = _listing(folder.parent)
    try:
        ck = load_checkpoint(folder)
        heads = ck.heads()
        pred = ck.predictions("P1")
    except BrainvizError as exc:
        assert str(exc)
    else:
        assert isinstance(ck, Checkpoint) and heads.fmri is not None
        assert np.all(np.isfinite(pred["predictions"]))
    rows = list_checkpoints(folder.parent, include_pretrained=False)  # never raises for one broken folder
    assert len(rows) == 1
    assert _listing(folder.parent) == before, "the loader wrote files"


@SETTINGS
@given(data=st.data())
def test_checkpoint_card_mutations(templates, data):
    scratch, folder = _fresh_copy(templates["checkpoint"])
    try:
        card = json.loads((folder / "card.json").read_text())
        path = data.draw(st.sampled_from(_paths(card)), label="path")
        _set(card, path, data.draw(JSON_VALUES, label="value"), data.draw(st.booleans(), label="delete"))
        (folder / "card.json").write_text(json.dumps(card))
        _checkpoint_or_error(folder)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(target=st.sampled_from(["card.json", "heads.safetensors", "fits/P1/fold-run-1/seed-0/heads.safetensors",
                               "predictions/seed-0/P1.npz"]), corruption=BYTE_CORRUPTION)
def test_checkpoint_byte_corruptions(templates, target, corruption):
    scratch, folder = _fresh_copy(templates["checkpoint"])
    try:
        _corrupt_bytes(folder / target, *corruption)
        _checkpoint_or_error(folder)
    finally:
        shutil.rmtree(scratch)


@SETTINGS
@given(n_units=st.sampled_from([1, N_UNITS + 1, 2_000_000, 10**12, 0, -3]),
       hidden=st.sampled_from([8, 9, 384, 10**9]))
def test_heads_spec_edits_never_allocate_blindly(templates, n_units, hidden, monkeypatch):
    """An edited spec in the safetensors header is checked against the stored tensors before
    any head is built (the probe's 2,000,000-unit spec allocated 3.2 GB first)."""
    from brainviz.models import heads as heads_mod

    built: list[Any] = []
    original = heads_mod.BrainHeads.from_spec.__func__
    monkeypatch.setattr(heads_mod.BrainHeads, "from_spec",
                        classmethod(lambda cls, spec: built.append(spec) or original(cls, spec)))
    scratch, folder = _fresh_copy(templates["checkpoint"])
    try:
        f = folder / "fits" / "P1" / "fold-run-1" / "seed-0" / "heads.safetensors"
        raw = f.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        spec = json.loads(header["__metadata__"]["spec"])
        spec["fmri"]["n_units"] = [n_units]
        spec["hidden"] = hidden
        header["__metadata__"]["spec"] = json.dumps(spec)
        new = json.dumps(header).encode()
        new += b" " * (-len(new) % 8)
        f.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
        _checkpoint_or_error(folder)
        assert all(s["fmri"]["n_units"] == [N_UNITS] and s["hidden"] == 8 for s in built)
    finally:
        shutil.rmtree(scratch)
