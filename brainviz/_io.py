"""Atomic file writes, file locks, safe names/paths and content hashing shared by every module
that writes to disk.

Nothing half-written: every writer goes through :func:`atomic_path` or :func:`atomic_dir`,
which write to a temporary sibling and rename it into place only when the writer succeeded.
The temporary sibling is held under a file lock while it is written; one left behind by a
killed writer (its lock is free) is removed by the next writer of the same folder
(:func:`clean_stale_temps`). A full disk raises one :class:`~brainviz.errors.DiskFullError`.

Names and paths read from files (participant ids, run names, paths in ``dataset.json`` or
``card.json``) go through :func:`check_safe_id`, :func:`check_label` and :func:`confined`
before they are used to build a path, so a crafted file cannot make brainviz read or write
outside its folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from brainviz.errors import BusyError, OutputExistsError, disk_full_error, is_disk_full

#: Temporary siblings younger than this are never removed by :func:`clean_stale_temps`
#: (a writer locks its temporary file right after creating it; this covers the gap).
STALE_GRACE_S = 10.0
# temporary siblings: ".<name>.<8 random characters from mkstemp/mkdtemp><suffix>"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9_.-]+)?$")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------
# safe names and confined paths
# --------------------------------------------------------------------------------------


def check_safe_id(value: Any, *, file: Any = None, field: str = "participant", what: str = "participant id") -> str:
    """``value`` as a string usable as a file name: letters, digits, ``. _ -``, not starting with
    a dot or dash, at most 128 characters. Raises :class:`~brainviz.errors.DatasetError`."""
    from brainviz.errors import DatasetError

    text = value if isinstance(value, str) else None
    if text is None or not _SAFE_ID.match(text) or text in (".", ".."):
        raise DatasetError(
            f"{what} {value!r} is not a safe file name (letters, digits, '.', '_', '-'; starting with a letter "
            "or digit; at most 128 characters)", file=file, field=field,
        )
    return text


def check_label(value: Any, *, file: Any = None, field: str = "run", what: str = "run name") -> str:
    """A run or story label: a non-empty string without path separators, control characters
    or ``..``, at most 200 characters (it may end up in a file name)."""
    from brainviz.errors import DatasetError

    text = value if isinstance(value, str) else None
    if (text is None or not text.strip() or len(text) > 200 or "/" in text or "\\" in text
            or _CONTROL.search(text) or text.strip() in (".", "..")):
        raise DatasetError(
            f"{what} {value!r} is not allowed (a non-empty name of at most 200 characters without '/', '\\', "
            "control characters, '.' or '..')", file=file, field=field,
        )
    return text


def confined(root: str | os.PathLike, rel: Any, *, file: Any = None, field: str = "file", error: type | None = None) -> Path:
    """``root / rel`` when ``rel`` is a relative path that stays inside ``root`` (symbolic links
    resolved); otherwise raise ``error`` (default :class:`~brainviz.errors.DatasetError`)
    naming ``file`` and ``field``."""
    from brainviz.errors import DatasetError

    error = error or DatasetError
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise error(f"must be a relative path inside {root}, got {rel!r}", file=file, field=field)
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise error(f"path {rel!r} leaves the folder {root} (absolute paths and '..' are not allowed)", file=file, field=field)
    root = Path(root)
    target = root / p
    try:
        inside = target.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as exc:  # symlink loop
        raise error(f"path {rel!r} cannot be resolved ({exc})", file=file, field=field) from None
    if not inside:
        raise error(f"path {rel!r} leads outside the folder {root} (through a symbolic link)", file=file, field=field)
    return target


# --------------------------------------------------------------------------------------
# array headers
# --------------------------------------------------------------------------------------

#: What numpy may raise on a corrupt ``.npy``/``.npz`` (header parsing goes through tokenize/ast).
NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, OverflowError, KeyError,
              zipfile.BadZipFile, zlib.error, NotImplementedError, UnicodeDecodeError)


def npy_header(path: str | os.PathLike, *, field: str = "file", error: type | None = None) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from a ``.npy`` header, checked against the file size
    before anything is allocated; a corrupt or truncated file raises ``error`` (default
    :class:`~brainviz.errors.DatasetError`) naming the file and field."""
    from brainviz.errors import DatasetError

    error = error or DatasetError
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
    except NPY_ERRORS as exc:
        raise error(f"unreadable .npy file (truncated or corrupt header: {type(exc).__name__}: {exc})",
                    file=path, field=field) from None
    if any(int(s) < 0 for s in shape):
        raise error(f"unreadable .npy file: negative size in the header shape {shape}", file=path, field=field)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if not dtype.hasobject and offset + needed > size:
        raise error(f"unreadable .npy file, truncated: the header says shape {shape} {dtype} ({needed:,} bytes) but it holds "
                    f"{max(0, size - offset):,} bytes of data", file=path, field=field)
    return tuple(int(s) for s in shape), bool(fortran), dtype


# --------------------------------------------------------------------------------------
# locks and stale temporary files
# --------------------------------------------------------------------------------------


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: a hidden sibling ``.<name>.lock``."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def file_lock(target: str | os.PathLike, what: str = "writing") -> Iterator[Path]:
    """Hold an exclusive inter-process lock on ``target`` (through ``.<name>.lock`` beside it).

    Does not wait: when another process holds the lock, raise :class:`~brainviz.errors.BusyError`
    naming ``target``. The lock is released (and its file removed) when the block ends; a killed
    process releases it too (the kernel drops the lock; the file is reused by the next run).
    """
    target = Path(target)
    lp = lock_path(target)
    lp.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusyError(
                f"another brainviz process is {what} here (lock {lp.name} is held); wait for it to finish "
                "or choose another output", file=target,
            ) from None
        try:
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder we waited behind removed this file: lock the new one
    try:
        yield target
    finally:
        try:
            os.unlink(lp)  # while still holding the lock, so nobody else holds this inode
        except OSError:
            pass
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """Open ``path`` (file or folder) and take a non-blocking exclusive lock; fd or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def clean_stale_temps(folder: str | os.PathLike, name: str | None = None, grace_s: float | None = None) -> list[Path]:
    """Remove temporary siblings left in ``folder`` by killed writers; return what was removed.

    Candidates are hidden entries named like the temporary siblings of :func:`atomic_path`,
    :func:`atomic_dir` and the importers' work folders, ``.<name>.<random><suffix>`` (any
    ``name`` when None; lock files never), that are older than ``grace_s``
    seconds (default :data:`STALE_GRACE_S`) and whose lock is free (a live writer holds the lock
    on its temporary file).
    """
    grace_s = STALE_GRACE_S if grace_s is None else grace_s
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or entry.name.endswith(".lock") or (name is not None and m.group("name") != name):
            continue
        path = Path(entry.path)
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < grace_s:
                continue
        except OSError:
            continue
        fd = _try_lock(path)
        if fd is None:
            continue  # a live writer holds it (or it vanished)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


# --------------------------------------------------------------------------------------
# atomic writers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched. The
    temporary file is locked while it is written; stale ones of ``target`` left by killed
    writers are removed first. ``ENOSPC`` becomes :class:`~brainviz.errors.DiskFullError`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix + ".tmp", dir=target.parent
    )
    tmp_path = Path(tmp)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(exc, target) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it to ``target`` on success.

    With ``overwrite=False`` an existing ``target`` raises
    :class:`~brainviz.errors.OutputExistsError` (a :class:`FileExistsError`) before anything is
    written. With ``overwrite=True`` the old folder is replaced only after the new one is
    complete. The temporary folder is locked while it is written; stale ones left by killed
    writers are removed first. ``ENOSPC`` becomes :class:`~brainviz.errors.DiskFullError`.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError("already exists (choose another --out or remove it)", file=target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    fd = _try_lock(tmp)
    try:
        yield tmp
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(exc, target) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (byte-stable across runs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as ``.npy`` atomically (never pickled)."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def hash_update(h: "hashlib._Hash", obj: Any) -> None:
    """Feed a JSON-able object, bytes, array or file path into a hash, type-tagged."""
    if isinstance(obj, np.ndarray):
        h.update(b"ndarray" + str(obj.dtype).encode() + str(obj.shape).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        h.update(b"bytes")
        h.update(bytes(obj))
    elif isinstance(obj, (list, tuple)):
        h.update(b"seq%d" % len(obj))
        for item in obj:
            hash_update(h, item)
    else:
        h.update(b"json")
        h.update(json.dumps(obj, sort_keys=True, default=json_default).encode())


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable hex digest of the given parts (arrays hashed by content, dicts by sorted JSON)."""
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        hash_update(h, part)
    return h.hexdigest()[:length]


def file_hash(path: str | os.PathLike, length: int = 16, chunk: int = 1 << 22) -> str:
    """Digest of a file's bytes, read in chunks."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:length]
