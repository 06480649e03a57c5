"""Helpers shared by the importers: streaming float32 conversion, safe array readers, output
layouts (one dataset, or one dataset per participant under a collection folder), provenance.

Nothing half-written: every importer builds its arrays in a hidden work folder beside the
output and writes the output through :func:`brainviz._io.atomic_dir` (a temporary sibling
renamed into place only when everything succeeded); the work folder is always removed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from brainviz._io import NPY_ERRORS, npy_header
from brainviz.data.dataset import Dataset, DatasetError, DatasetMeta
from brainviz.errors import OutputExistsError

COLLECTION_MANIFEST = "collection.json"
ROW_CHUNK_BYTES = 64 << 20  # convert at most ~64 MB of source rows at a time

# Provenance written into every imported dataset (DatasetMeta.source / licence / citation).
PROVENANCE: dict[str, dict[str, str]] = {
    "harry-potter": {
        "source": "http://www.cs.cmu.edu/~fmri/plosone/ (Dryad doi:10.5061/dryad.gt413)",
        "licence": "CC0 1.0 (Dryad release); cite Wehbe et al. 2014",
        "citation": (
            "Wehbe L, Murphy B, Talukdar P, Fyshe A, Ramdas A, Mitchell T (2014). Simultaneously uncovering the "
            "patterns of brain regions involved in different story reading subprocesses. PLoS ONE 9(11): e112575. "
            "doi:10.1371/journal.pone.0112575"
        ),
    },
    "harry-potter-meg": {
        "source": "Harry Potter MEG (Wehbe et al. 2014 EMNLP), shared by the authors on request",
        "licence": "not publicly licensed: shared by the authors on request (research use)",
        "citation": (
            "Wehbe L, Vaswani A, Knight K, Mitchell T (2014). Aligning context-based statistical models of language "
            "with brain activity during reading. EMNLP 2014, 233-243. Used by Schwartz, Toneva & Wehbe (2019) NeurIPS."
        ),
    },
    "narratives": {
        "source": "OpenNeuro ds002345 (https://openneuro.org/datasets/ds002345); derivatives via DataLad labs/hasson/narratives",
        "licence": "CC0",
        "citation": (
            "Nastase SA, Liu Y-F, Hillman H, et al. (2021). The 'Narratives' fMRI dataset for evaluating models of "
            "naturalistic language comprehension. Scientific Data 8:250. doi:10.1038/s41597-021-01033-3"
        ),
    },
    "lebel": {
        "source": "OpenNeuro ds003020 (https://openneuro.org/datasets/ds003020)",
        "licence": "CC0",
        "citation": (
            "LeBel A, Wagner L, Jain S, et al. (2023). A natural language fMRI dataset for voxelwise encoding models. "
            "Scientific Data 10:555. doi:10.1038/s41597-023-02437-z"
        ),
    },
}

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def meta_for(key: str, name: str, modality: str, description: str, **overrides: str) -> DatasetMeta:
    prov = dict(PROVENANCE.get(key, {}))
    prov.update({k: v for k, v in overrides.items() if v})
    return DatasetMeta(
        name=name, simulated=False, modality=modality, source=prov.get("source", ""),
        licence=prov.get("licence", ""), citation=prov.get("citation", ""), description=description,
    )


def check_participant_id(pid: str, file: Any = None) -> str:
    pid = str(pid)
    if not _SAFE_ID.match(pid):
        raise DatasetError(f"participant id {pid!r} is not a safe file name (letters, digits, . _ -)", file=file, field="participant")
    return pid


def select(available: Sequence[str], wanted: Iterable[str] | None, what: str, file: Any = None,
           aliases: Callable[[str], Iterable[str]] | None = None) -> list[str]:
    """Filter ``available`` by ``wanted`` (keeping ``available`` order); unknown names raise."""
    if not wanted:
        return list(available)
    wanted = [str(w) for w in wanted]
    out, unknown = [], []
    for w in wanted:
        cands = [w] + list(aliases(w) if aliases else [])
        hit = next((c for c in cands if c in available), None)
        if hit is None:
            unknown.append(w)
        elif hit not in out:
            out.append(hit)
    if unknown:
        raise DatasetError(f"unknown {what} {unknown}; available: {list(available)[:20]}", file=file, field=what)
    return [a for a in available if a in out]


# --------------------------------------------------------------------------------------
# Work folder and streamed float32 arrays
# --------------------------------------------------------------------------------------


class WorkDir:
    """Hidden scratch folder beside the output (same file system), removed on exit.

    While it exists the import holds a file lock on ``out`` (a second import to the same
    output fails at once with :class:`~brainviz.errors.BusyError`) and on the work folder itself;
    work folders left by killed imports (lock free) are removed on entry.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path: Path | None = None
        self._locks = contextlib.ExitStack()

    def __enter__(self) -> "WorkDir":
        from brainviz._io import _try_lock, clean_stale_temps, file_lock

        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._locks.enter_context(file_lock(self.out, what="importing into this folder"))
        try:
            clean_stale_temps(self.out.parent, self.out.name, grace_s=0.0)  # we hold the output's lock
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".import-work", dir=self.out.parent))
            fd = _try_lock(self.path)
            if fd is not None:
                self._locks.callback(os.close, fd)
        except BaseException:
            self._locks.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._locks.close()

    def array(self, name: str, shape: tuple[int, ...]) -> np.memmap:
        """A new float32 ``.npy`` memory map in the work folder."""
        assert self.path is not None
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        return np.lib.format.open_memmap(self.path / f"{safe}.npy", mode="w+", dtype=np.float32, shape=shape)


def rows_per_chunk(n_cols: int, itemsize: int = 8) -> int:
    return max(1, ROW_CHUNK_BYTES // max(1, n_cols * itemsize))


def check_finite(block: np.ndarray, file: Any, field: str, row_offset: int = 0) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        idx = np.argwhere(bad)[0]
        idx[0] += row_offset
        raise DatasetError(f"non-finite value (NaN or inf) at index {tuple(int(i) for i in idx)}", file=file, field=field)


def as_float32(block: np.ndarray, file: Any, field: str, row_offset: int = 0) -> np.ndarray:
    """``block`` (finite) as float32; values beyond the float32 range raise :class:`DatasetError`."""
    check_finite(block, file, field, row_offset)
    with np.errstate(over="ignore"):
        out = np.asarray(block, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        local = tuple(int(i) for i in np.argwhere(bad)[0])
        where = (local[0] + row_offset,) + local[1:]
        raise DatasetError(f"value {float(block[local]):g} at index {where} is beyond the float32 range (|x| > 3.4e38)",
                           file=file, field=field)
    return out


def as_float32_rows(
    src: np.ndarray,
    work: WorkDir,
    name: str,
    *,
    rows: np.ndarray | slice | None = None,
    cols: np.ndarray | None = None,
    file: Any = None,
    field: str = "data",
) -> np.ndarray:
    """``src[rows][:, cols]`` as float32, without loading ``src`` whole.

    A float32, C-contiguous memory map with no row/column selection is returned as is (no
    copy); otherwise the rows are converted chunk by chunk into a work-folder memory map.
    Non-finite values raise :class:`DatasetError` naming ``file`` and ``field``.
    """
    if src.ndim != 2:
        raise DatasetError(f"must be 2-D (TRs x units), got shape {src.shape}", file=file, field=field)
    if isinstance(rows, slice):
        rows = np.arange(src.shape[0])[rows]
    n_rows = src.shape[0] if rows is None else len(rows)
    n_cols = src.shape[1] if cols is None else len(cols)
    plain = isinstance(src, np.memmap) and rows is None and cols is None and src.dtype == np.float32 and src.flags.c_contiguous
    if plain:
        for start in range(0, n_rows, rows_per_chunk(n_cols, 4)):
            check_finite(np.asarray(src[start:start + rows_per_chunk(n_cols, 4)]), file, field, start)
        return src
    out = work.array(name, (n_rows, n_cols))
    step = rows_per_chunk(n_cols, src.dtype.itemsize)
    for start in range(0, n_rows, step):
        sel = slice(start, min(n_rows, start + step))
        block = src[sel] if rows is None else src[rows[sel]]
        block = np.asarray(block)
        if cols is not None:
            block = block[:, cols]
        out[sel] = as_float32(block, file, field, start)
    out.flush()
    return out


def copy_rows_into(dst: np.ndarray, row0: int, src: Any, *, file: Any = None, field: str = "data") -> None:
    """Copy a 2-D array-like (memmap, h5py dataset, ...) into ``dst[row0:]`` chunk by chunk,
    converting to ``dst.dtype`` and rejecting non-finite values."""
    n_rows, n_cols = src.shape
    step = rows_per_chunk(n_cols, np.dtype(src.dtype).itemsize)
    for start in range(0, n_rows, step):
        block = np.asarray(src[start:min(n_rows, start + step)])
        if dst.dtype == np.float32:
            block = as_float32(block, file, field, start)
        else:
            check_finite(block, file, field, start)
        dst[row0 + start: row0 + start + block.shape[0]] = block


# --------------------------------------------------------------------------------------
# Safe readers
# --------------------------------------------------------------------------------------


class _StringArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy object arrays of strings and nothing else (no arbitrary code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_npy(path: Path, field: str, *, strings: bool = False, mmap: bool = True) -> np.ndarray:
    """Read a ``.npy``: numeric arrays are memory-mapped; with ``strings`` an array of words
    (unicode/bytes dtype, or an object array of str pickled by numpy) is returned as a list-like
    ``np.ndarray`` of ``str``. Object arrays are read with a restricted unpickler that only
    rebuilds numpy arrays of strings, never arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("file not found", file=path, field=field)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                if not strings:
                    raise DatasetError("holds Python objects, expected numbers", file=path, field=field)
                try:
                    arr = _StringArrayUnpickler(f, encoding="latin1").load()
                except Exception as exc:  # any unpickling failure is a format error
                    raise DatasetError(f"object array that is not a plain list of strings ({exc})", file=path, field=field) from None
                return _as_str_array(np.asarray(arr, dtype=object).reshape(-1), path, field)
    except DatasetError:
        raise
    except NPY_ERRORS as exc:
        raise DatasetError(f"not a readable .npy file ({type(exc).__name__}: {exc})", file=path, field=field) from None
    npy_header(path, field=field)  # sizes from the header checked against the file before allocating
    if strings:
        try:
            arr = np.load(path, allow_pickle=False)
        except NPY_ERRORS as exc:
            raise DatasetError(f"not a readable .npy file ({exc})", file=path, field=field) from None
        return _as_str_array(arr.reshape(-1), path, field)
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except NPY_ERRORS as exc:
        raise DatasetError(f"not a readable .npy file (truncated? {exc})", file=path, field=field) from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DatasetError(f"expected numbers, got dtype {arr.dtype}", file=path, field=field)
    return arr


def _as_str_array(arr: np.ndarray, path: Path, field: str) -> np.ndarray:
    out = []
    for i, v in enumerate(arr.tolist()):
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        if isinstance(v, np.ndarray) and v.size == 1:
            v = str(v.reshape(-1)[0])
        if not isinstance(v, str):
            raise DatasetError(f"element {i} is {type(v).__name__}, expected a string", file=path, field=field)
        out.append(v)
    return np.array(out, dtype=object)


class NpzMember:
    """One array inside an ``.npz`` without loading it whole.

    Stored (uncompressed, ``np.savez``) members are memory-mapped in place; compressed ones
    (``np.savez_compressed``) are decompressed sequentially with :meth:`iter_leading`.
    """

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self._zip = zipfile.ZipFile(self.path)
        name = key if key in self._zip.namelist() else f"{key}.npy"
        if name not in self._zip.namelist():
            raise DatasetError(f"array {key!r} missing (the file holds {sorted(n.removesuffix('.npy') for n in self._zip.namelist())})",
                               file=self.path, field=key)
        self.info = self._zip.getinfo(name)
        with self._zip.open(self.info) as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f)
            self.header_len = f.tell()
        self.shape, self.fortran, self.dtype = header
        if self.dtype.hasobject:
            raise DatasetError("holds Python objects, expected numbers", file=self.path, field=key)

    def close(self) -> None:
        self._zip.close()

    def memmap(self) -> np.ndarray | None:
        if self.info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(self.path, "rb") as f:
            f.seek(self.info.header_offset)
            local = f.read(30)
            n_name = int.from_bytes(local[26:28], "little")
            n_extra = int.from_bytes(local[28:30], "little")
        offset = self.info.header_offset + 30 + n_name + n_extra + self.header_len
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=offset, shape=tuple(self.shape),
                         order="F" if self.fortran else "C")

    def iter_leading(self) -> Iterator[np.ndarray]:
        """Yield ``array[i]`` for each index of the first axis, reading sequentially."""
        mm = self.memmap()
        if mm is not None:
            for i in range(self.shape[0]):
                yield mm[i]
            return
        if self.fortran:
            raise DatasetError("Fortran-ordered compressed array: re-save it with np.savez (uncompressed)", file=self.path, field=self.key)
        per = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        with self._zip.open(self.info) as f:
            f.read(self.header_len)
            for _ in range(self.shape[0]):
                buf = f.read(per)
                if len(buf) != per:
                    raise DatasetError("truncated array data", file=self.path, field=self.key)
                yield np.frombuffer(buf, dtype=self.dtype).reshape(self.shape[1:])

    def read(self) -> np.ndarray:
        """Whole array (for the small members: words, blocks, names)."""
        with self._zip.open(self.info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)


def npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [n.removesuffix(".npy") for n in z.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"not a readable .npz archive ({exc})", file=path) from None


def npz_strings(path: Path, key: str) -> np.ndarray:
    """A small string member of an npz (object arrays through the restricted unpickler)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = key if key in z.namelist() else f"{key}.npy"
            if name not in z.namelist():
                raise DatasetError(f"array {key!r} missing", file=path, field=key)
            data = z.read(name)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"not a readable .npz archive ({exc})", file=path) from None
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f))
    if dtype.hasobject:
        try:
            arr = _StringArrayUnpickler(f, encoding="latin1").load()
        except Exception as exc:
            raise DatasetError(f"object array that is not a plain list of strings ({exc})", file=path, field=key) from None
    else:
        f.seek(0)
        arr = np.lib.format.read_array(f, allow_pickle=False)
    return _as_str_array(np.asarray(arr, dtype=object).reshape(-1) if np.asarray(arr).dtype == object else np.asarray(arr).reshape(-1), Path(path), key)


def read_table(path: Path, required: Sequence[str], *, sep: str = "\t", what: str = "table") -> pd.DataFrame:
    """Read a table of strings. Tab-separated tables (BIDS style) have no quoting: a ``"`` is an
    ordinary character, so a word like ``"So,`` stays one word."""
    if not Path(path).is_file():
        raise DatasetError(f"{what} not found", file=path)
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=quoting, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"empty file: the {what} needs a header row", file=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"not a readable UTF-8 {what} ({exc})", file=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(f"missing column(s) {missing} (columns: {list(df.columns)})", file=path, field=missing[0])
    return df


def numeric_column(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    vals = pd.to_numeric(df[col].replace({"n/a": None, "": None}), errors="coerce")
    out = vals.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"non-numeric, non-finite or missing value in row {row + 1} ({df[col].iloc[row]!r})", file=path, field=col)
    return out


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImportResult:
    """What an importer wrote.

    ``path`` is the ``--out`` folder: a dataset (``layout='dataset'``) or a collection of one
    dataset per participant (``layout='per-participant'``, listed in ``datasets``).
    """

    path: Path
    layout: str
    datasets: dict[str, Path]
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "layout": self.layout,
                "datasets": {k: str(v) for k, v in self.datasets.items()}, "notes": self.notes}


def save_dataset(ds: Dataset, out: Path, overwrite: bool, notes: Sequence[str] = ()) -> ImportResult:
    """Write one dataset folder atomically."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    ds.save(out, overwrite=overwrite)
    return ImportResult(out, "dataset", {ds.name: out}, list(notes))


def save_collection(
    datasets: dict[str, Dataset], out: Path, overwrite: bool, *, fmt: str, note: str, notes: Sequence[str] = (),
    extras: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> ImportResult:
    """Write one dataset per participant under ``out`` (all or nothing) plus ``collection.json``
    and a README explaining the layout. ``extras[key][relpath]`` tables are written as TSV
    inside dataset ``key`` (e.g. ``source/voxel_rois.tsv``; ignored by the dataset loader)."""
    from brainviz._io import atomic_dir

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or pass --overwrite)", file=out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        first_copy: dict[int, Path] = {}
        for key, ds in datasets.items():
            ds.save(tmp / key)
            for rel, table in (extras or {}).get(key, {}).items():
                (tmp / key / rel).parent.mkdir(parents=True, exist_ok=True)
                table.to_csv(tmp / key / rel, sep="\t", index=False, lineterminator="\n")
            # MEG recordings shared by several datasets (same array object) are hard-linked, not duplicated
            for pid, rec in ds.meg.items():
                target = tmp / key / "meg" / f"{pid}.npy"
                src = first_copy.setdefault(id(rec.data), target)
                if src != target:
                    link = target.with_name(target.name + ".link")
                    try:
                        os.link(src, link)
                        os.replace(link, target)
                    except OSError:  # no hard links on this file system: keep the copy
                        link.unlink(missing_ok=True)
        manifest = {
            "kind": "brainviz-dataset-collection",
            "format": fmt,
            "layout": "per-participant",
            "datasets": {k: k for k in datasets},
            "note": note,
        }
        (tmp / COLLECTION_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        lines = [f"# Imported {fmt} data: one brainviz dataset per participant", "", note, "",
                 "Datasets (point --dataset at one of these folders):", ""]
        lines += [f"- `{k}/`" for k in datasets]
        (tmp / "README.md").write_text("\n".join(lines) + "\n")
    return ImportResult(out, "per-participant", {k: out / k for k in datasets}, list(notes))


def load_collection(path: str | os.PathLike) -> dict[str, Path]:
    """Dataset folders of a per-participant collection written by an importer."""
    path = Path(path)
    mf = path / COLLECTION_MANIFEST
    if not mf.is_file():
        raise DatasetError("not an import collection (collection.json missing)", file=mf)
    from brainviz._io import check_safe_id, confined

    try:
        obj = json.loads(mf.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"not valid UTF-8 JSON ({exc})", file=mf) from None
    datasets = obj.get("datasets", {}) if isinstance(obj, dict) else None
    if not isinstance(datasets, dict):
        raise DatasetError("must be an object {dataset key: folder}", file=mf, field="datasets")
    return {check_safe_id(k, file=mf, field="datasets", what="dataset key"): confined(path, v, file=mf, field=f"datasets.{k}")
            for k, v in datasets.items()}
