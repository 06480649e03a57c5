"""Streaming access to one large numeric matrix inside a MATLAB v5/v7 ``.mat`` file.

``scipy.io.loadmat`` materialises a whole variable (a Harry Potter subject's ``data`` is
~1,350 x 37,000 float64 = 400 MB) before any conversion. :class:`MatV5` locates the variable
and yields it column block by column block - memory-mapped when the file stores it
uncompressed (``-v6`` / ``savemat(do_compression=False)``), decompressed incrementally when it
is zlib-compressed (MATLAB's default ``-v7``) - so an importer converts it to float32 with a
bounded amount of memory. Small variables are read with ``scipy.io.loadmat(variable_names=...)``,
which skips the big one without decompressing it.

MATLAB ``-v7.3`` files are HDF5 and are not supported (re-save with ``-v7``).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from brainviz.data.dataset import DatasetError

MI_COMPRESSED = 15
MI_MATRIX = 14
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
# mxClass ids of numeric full arrays (6 double, 7 single, 8-15 integer types)
_NUMERIC_CLASSES = set(range(6, 16))


class _Stream:
    """Sequential reader over either a plain file region or a zlib-compressed one."""

    def __init__(self, f, start: int, nbytes: int, compressed: bool):
        self.f = f
        self.f.seek(start)
        self.remaining = nbytes  # raw bytes left in the file region
        self.compressed = compressed
        self.buf = bytearray()
        self.pos = 0  # decompressed position (bytes delivered)
        self.z = zlib.decompressobj() if compressed else None

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            if self.compressed:
                assert self.z is not None
                if self.z.unconsumed_tail:
                    chunk = self.z.decompress(self.z.unconsumed_tail, 1 << 22)
                elif self.remaining > 0:
                    raw = self.f.read(min(self.remaining, 1 << 20))
                    if not raw:
                        break
                    self.remaining -= len(raw)
                    chunk = self.z.decompress(raw, 1 << 22)
                else:
                    break
                self.buf.extend(chunk)
            else:
                if self.remaining <= 0:
                    break
                raw = self.f.read(min(self.remaining, max(n - len(self.buf), 1 << 16)))
                if not raw:
                    break
                self.remaining -= len(raw)
                self.buf.extend(raw)

    def read(self, n: int) -> bytes:
        self._fill(n)
        if len(self.buf) < n:
            raise EOFError("unexpected end of data")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.pos += n
        return out

    def skip_to_align(self) -> None:
        pad = (-self.pos) % 8
        if pad:
            self.read(pad)


class MatMatrix:
    """Header of a numeric matrix variable and a column-block iterator over its values."""

    def __init__(self, owner: "MatV5", name: str, shape: tuple[int, ...], mx_class: int,
                 storage: np.dtype, data_offset: int | None, stream: _Stream | None):
        self.owner = owner
        self.name = name
        self.shape = shape
        self.mx_class = mx_class
        self.storage = storage
        self._offset = data_offset
        self._stream = stream

    def iter_columns(self, cols_per_block: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_column, block)`` with ``block`` of shape (n_rows, k) in storage dtype."""
        n_rows, n_cols = self.shape
        if self._offset is not None:
            mm = np.memmap(self.owner.path, dtype=self.storage, mode="r", offset=self._offset, shape=(n_rows, n_cols), order="F")
            for c0 in range(0, n_cols, cols_per_block):
                yield c0, np.asarray(mm[:, c0:c0 + cols_per_block])
            del mm
            return
        assert self._stream is not None
        item = self.storage.itemsize
        try:
            for c0 in range(0, n_cols, cols_per_block):
                k = min(cols_per_block, n_cols - c0)
                try:
                    raw = self._stream.read(k * n_rows * item)
                except (EOFError, zlib.error) as exc:
                    raise DatasetError(f"truncated or corrupt compressed data ({exc})", file=self.owner.path, field=self.name) from None
                yield c0, np.frombuffer(raw, dtype=self.storage).reshape(k, n_rows).T
        finally:
            f = getattr(self, "_file", None)
            if f is not None:
                f.close()


class MatV5:
    """Index of the top-level variables of a MATLAB v5 (``-v6``/``-v7``) file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError("file not found", file=self.path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            header = f.read(128)
            if len(header) < 128:
                raise DatasetError("not a MATLAB .mat file (shorter than its 128-byte header)", file=self.path)
            if header.startswith(b"MATLAB 7.3") or header[:8] == b"\x89HDF\r\n\x1a\n" or b"HDF" in header[512:520]:
                raise DatasetError("MATLAB -v7.3 (HDF5) files are not supported: re-save with save(..., '-v7')", file=self.path)
            if not header.startswith(b"MATLAB 5.0"):
                raise DatasetError("not a MATLAB 5.0 .mat file (bad header text)", file=self.path)
            endian = header[126:128]
            if endian == b"IM":
                self.bo = "<"
            elif endian == b"MI":
                self.bo = ">"
            else:
                raise DatasetError("not a MATLAB .mat file (bad endian indicator)", file=self.path)
            self.vars: dict[str, tuple[int, int, bool]] = {}
            pos = 128
            while pos + 8 <= size:
                f.seek(pos)
                mdtype, nbytes = struct.unpack(self.bo + "II", f.read(8))
                if mdtype not in (MI_COMPRESSED, MI_MATRIX):
                    raise DatasetError(f"unexpected top-level element type {mdtype} at byte {pos}", file=self.path)
                if pos + 8 + nbytes > size:
                    raise DatasetError(f"truncated file: element at byte {pos} needs {nbytes} bytes", file=self.path)
                try:
                    name = self._peek_name(f, pos + 8, nbytes, mdtype == MI_COMPRESSED)
                except (EOFError, zlib.error, struct.error) as exc:
                    raise DatasetError(f"corrupt variable header at byte {pos} ({exc})", file=self.path) from None
                self.vars[name] = (pos + 8, nbytes, mdtype == MI_COMPRESSED)
                pos += 8 + nbytes
                if mdtype == MI_MATRIX:
                    pos += (-nbytes) % 8

    # -- parsing helpers -----------------------------------------------------------------
    def _tag(self, s: _Stream) -> tuple[int, int, bytes | None]:
        raw = s.read(8)
        first, second = struct.unpack(self.bo + "II", raw)
        if first >> 16:  # small data element: 2-byte type, 2-byte size, data in the same 8 bytes
            mdtype, nbytes = first & 0xFFFF, first >> 16
            return mdtype, nbytes, raw[4:4 + nbytes]
        return first, second, None

    def _matrix_header(self, s: _Stream) -> tuple[int, bool, tuple[int, ...], str]:
        """Read tag + array flags + dims + name of a miMATRIX element."""
        mdtype, nbytes, _ = self._tag(s)
        if mdtype != MI_MATRIX:
            raise DatasetError(f"expected a matrix element, found type {mdtype}", file=self.path)
        mdt, n, small = self._tag(s)  # array flags
        flags = small if small is not None else s.read(n)
        if small is None:
            s.skip_to_align()
        flags_class = struct.unpack(self.bo + "I", flags[:4])[0]
        mx_class = flags_class & 0xFF
        is_complex = bool(flags_class & 0x0800)
        mdt, n, small = self._tag(s)  # dimensions
        raw = small if small is not None else s.read(n)
        if small is None:
            s.skip_to_align()
        dims = struct.unpack(self.bo + f"{n // 4}i", raw[:n])
        mdt, n, small = self._tag(s)  # name
        raw = small if small is not None else s.read(n)
        if small is None:
            s.skip_to_align()
        return mx_class, is_complex, tuple(int(d) for d in dims), raw[:n].decode("latin1")

    def _peek_name(self, f, start: int, nbytes: int, compressed: bool) -> str:
        if compressed:
            s = _Stream(f, start, nbytes, True)
            return self._matrix_header(s)[3]
        # uncompressed: the element tag was already consumed; re-read it with a fake tag
        s = _Stream(f, start - 8, nbytes + 8, False)
        return self._matrix_header(s)[3]

    # -- public ----------------------------------------------------------------------------
    def matrix(self, name: str) -> MatMatrix:
        """Open a 2-D numeric (non-complex, non-sparse) matrix variable for streaming."""
        if name not in self.vars:
            raise DatasetError(f"variable missing (the file holds {sorted(self.vars)})", file=self.path, field=name)
        start, nbytes, compressed = self.vars[name]
        f = open(self.path, "rb")
        s = _Stream(f, start if compressed else start - 8, nbytes if compressed else nbytes + 8, compressed)
        try:
            mx_class, is_complex, dims, _ = self._matrix_header(s)
            if mx_class not in _NUMERIC_CLASSES or is_complex:
                raise DatasetError(f"must be a real numeric matrix (MATLAB class id {mx_class}{', complex' if is_complex else ''})",
                                   file=self.path, field=name)
            if len(dims) != 2:
                raise DatasetError(f"must be 2-D, got dimensions {dims}", file=self.path, field=name)
            mdtype, n, small = self._tag(s)
        except (EOFError, zlib.error, struct.error) as exc:
            f.close()
            raise DatasetError(f"corrupt matrix header ({exc})", file=self.path, field=name) from None
        except DatasetError:
            f.close()
            raise
        if mdtype not in _MI_DTYPES:
            f.close()
            raise DatasetError(f"unsupported storage type {mdtype}", file=self.path, field=name)
        storage = np.dtype(self.bo + _MI_DTYPES[mdtype])
        expected = dims[0] * dims[1]
        if small is not None:
            f.close()
            vals = np.frombuffer(small[:n], dtype=storage)
            m = MatMatrix(self, name, dims, mx_class, storage, None, None)
            m.iter_columns = lambda k, v=vals.reshape(dims, order="F"): iter([(0, v)])  # type: ignore[method-assign]
            return m
        if n != expected * storage.itemsize:
            f.close()
            raise DatasetError(f"holds {n // storage.itemsize} values for dimensions {dims}", file=self.path, field=name)
        if compressed:
            m = MatMatrix(self, name, dims, mx_class, storage, None, s)
            m._file = f  # keep the handle alive while iterating
            return m
        offset = start - 8 + s.pos
        f.close()
        return MatMatrix(self, name, dims, mx_class, storage, offset, None)
