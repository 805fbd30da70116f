"""Read, write and validate IDX files (the MNIST file format), plain or gzipped.

An IDX file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the data in C order. Every fault raises `DataError` with a
one-line message that starts with the file path.

Memory is bounded on hostile files: the header is read first (for a .gz, only its first
decompressed bytes), and a declared size that the file cannot hold (a plain file of another
size, more than a .gz can expand to, more than MAX_IDX_BYTES) is refused before anything else.
The data are then decompressed chunk by chunk straight into one preallocated array, so loading
peaks at the array plus one chunk.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mnistlab.errors import DataError
from mnistlab.fileio import atomic_write_bytes

# IDX dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}  # 'i2' -> 0x0B
_GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 4 * 2**30  # 4 GiB: EMNIST byclass, the largest official file, is 547 MB


# Deflate expands at most about 1032:1 (a run of 258 bytes costs 2 bits): a .gz of S bytes cannot
# hold more than S * 1032 bytes, so a header declaring more is refused before anything is decompressed.
GZIP_MAX_RATIO = 1032
_IN_CHUNK = 1 << 20  # compressed bytes read per call
_OUT_CHUNK = 4 << 20  # decompressed bytes produced per call: the only buffer beside the array


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares: the stored (big-endian) dtype and the shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Bytes of the header itself."""
        return 4 + 4 * len(self.shape)

    @property
    def nbytes(self) -> int:
        """Data bytes the header declares (Python ints: np.prod wraps around, 65536**4 -> 0)."""
        return math.prod(self.shape) * self.dtype.itemsize


class _Reader:
    """The bytes of an IDX file, decompressed on the fly when it is gzip, in bounded chunks."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._f = open(path, "rb")  # builtins.open: tests simulate a refusing OS through it
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise DataError(f"{path}: is a directory, expected an IDX file") from None
        except PermissionError:
            raise DataError(f"{path}: permission denied") from None
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
        try:
            self.file_size = os.fstat(self._f.fileno()).st_size
            self.gz = self._f.read(2) == _GZIP_MAGIC
            self._f.seek(0)
        except OSError as e:
            self.close()
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gz else None
        self._pending = b""  # compressed input not yet consumed

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raw(self, n: int) -> bytes:
        try:
            return self._f.read(n)
        except OSError as e:
            raise DataError(f"{self.path}: cannot read: {e.strerror or e}") from None

    def _inflate(self, limit: int) -> bytes:
        """Up to `limit` decompressed bytes; b"" once the gzip stream has ended."""
        d = self._inflater
        try:
            while not d.eof:
                if not self._pending:
                    self._pending = self._raw(_IN_CHUNK)
                    if not self._pending:
                        out = d.decompress(b"", limit)  # output zlib may still hold back
                        if out:
                            return out
                        raise DataError(f"{self.path}: truncated .gz file (compressed stream ends early)")
                out = d.decompress(self._pending, limit)
                self._pending = d.unconsumed_tail
                if out:
                    return out
        except zlib.error as e:
            raise DataError(f"{self.path}: corrupt .gz file ({e})") from None
        return b""  # data after the first gzip member is ignored, as before

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at the end of the data)."""
        if not self.gz:
            return self._raw(n)
        parts, got = [], 0
        while got < n and (part := self._inflate(min(n - got, _OUT_CHUNK))):
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def readinto(self, buffer: memoryview) -> int:
        """Fill `buffer` (a flat byte view) as far as the data goes; the number of bytes filled."""
        pos, n = 0, len(buffer)
        while pos < n:
            if self.gz:
                part = self._inflate(min(n - pos, _OUT_CHUNK))
                if not part:
                    break
                buffer[pos : pos + len(part)] = part
                got = len(part)
            else:
                try:
                    got = self._f.readinto(buffer[pos : pos + _OUT_CHUNK])
                except OSError as e:
                    raise DataError(f"{self.path}: cannot read: {e.strerror or e}") from None
                if not got:
                    break
            pos += got
        return pos


def _read_header(reader: _Reader) -> IdxHeader:
    path = reader.path
    head = reader.read(4)
    if not head:
        if reader.gz:
            raise DataError(f"{path}: empty file (the .gz decompresses to 0 bytes)")
        raise DataError(f"{path}: empty file (0 bytes)")
    if len(head) < 4:
        raise DataError(f"{path}: truncated IDX header (expected at least 4 bytes, got {len(head)})")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: wrong magic 0x{head.hex()}, not an IDX file (expected 0x0000 then dtype and rank)")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X} (valid: {valid})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    dims = reader.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header (expected {4 + 4 * ndim} bytes, got {4 + len(dims)})")
    return IdxHeader(IDX_DTYPES[code], tuple(int(d) for d in np.frombuffer(dims, dtype=">u4")))


def _check_size(reader: _Reader, header: IdxHeader) -> None:
    """Refuse, from the header and the file size alone, data that cannot be there or is too large."""
    path, shape, expected = reader.path, header.shape, header.nbytes
    if not reader.gz:
        got = reader.file_size - header.size
        if got < expected:
            raise DataError(f"{path}: truncated: expected {expected} data bytes for shape {shape}, got {got}")
        if got > expected:
            raise DataError(f"{path}: trailing bytes: expected {expected} data bytes for shape {shape}, got {got} "
                            f"({got - expected} extra)")
    total = header.size + expected
    if total > MAX_IDX_BYTES:
        raise DataError(f"{path}: header declares {total:,} bytes, over the {MAX_IDX_BYTES:,}-byte limit")
    if reader.gz and total > reader.file_size * GZIP_MAX_RATIO:
        raise DataError(
            f"{path}: header declares shape {shape} ({total:,} bytes), more than a {reader.file_size:,}-byte "
            f".gz can hold (gzip expands at most {GZIP_MAX_RATIO}:1): the file is damaged or not what it claims"
        )


def read_idx_header(path: str | os.PathLike) -> IdxHeader:
    """The header of an IDX file (plain or .gz), without reading its data.

    For a .gz only the first 4 + 4 * rank decompressed bytes are inflated: callers can compare the
    declared counts of several files before paying for any of them.
    """
    with _Reader(Path(path)) as reader:
        return _read_header(reader)


def _read(path: str | os.PathLike, check: Callable[[IdxHeader], None] | None = None) -> np.ndarray:
    """Read an IDX file straight into one preallocated array; `check(header)` may refuse it first.

    Peak memory is the array plus one decompressed chunk (_OUT_CHUNK): no bytes object of the
    whole file ever exists, and a header that lies about the size is refused before allocating.
    """
    path = Path(path)
    with _Reader(path) as reader:
        header = _read_header(reader)
        if check is not None:
            check(header)
        _check_size(reader, header)
        shape, expected = header.shape, header.nbytes
        try:
            x = np.empty(shape, dtype=header.dtype)
        except ValueError:  # e.g. (0, 2**31, 2**31): no data, yet too big a shape for numpy
            raise DataError(f"{path}: impossible shape {shape} (numpy cannot represent it)") from None
        except MemoryError:
            raise DataError(f"{path}: not enough memory for shape {shape} ({expected:,} bytes)") from None
        got = reader.readinto(memoryview(x.reshape(-1).view(np.uint8))) if expected else 0
        if got < expected:
            raise DataError(f"{path}: truncated: expected {expected} data bytes for shape {shape}, got {got}")
        if reader.gz and reader.read(1):
            raise DataError(f"{path}: trailing bytes: expected {expected} data bytes for shape {shape}, got more")
    if x.dtype.itemsize > 1:  # big-endian on disk: swap in place (no second copy), then view natively
        x = x.byteswap(inplace=True).view(x.dtype.newbyteorder("="))
    return x


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or .gz) into a native-endian array of its stored dtype and shape."""
    return _read(path)


def _expect(path: str | os.PathLike, kind: str, ndim: int) -> Callable[[IdxHeader], None]:
    shape_text = "(N, H, W)" if ndim == 3 else "(N,)"

    def check(header: IdxHeader) -> None:
        native = header.dtype.newbyteorder("=")
        if native != np.uint8 or len(header.shape) != ndim:
            raise DataError(f"{path}: expected uint8 {kind} of shape {shape_text}, got {native} of shape {header.shape}")

    return check


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX image file: uint8, shape (N, H, W) (a header of another dtype or rank is refused unread)."""
    return _read(path, _expect(path, "images", 3))


def read_labels(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """Read an IDX label file: uint8, shape (N,); with `num_classes`, every label must be below it."""
    y = _read(path, _expect(path, "labels", 1))
    if num_classes is not None and y.size and int(y.max()) >= num_classes:
        i = int(np.argmax(y >= num_classes))
        raise DataError(f"{path}: label {int(y[i])} at index {i} is out of range for {num_classes} classes")
    return y


def check_pair(
    images: np.ndarray, labels: np.ndarray, images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> None:
    """Raise DataError unless there is exactly one label per image."""
    if len(images) != len(labels):
        raise DataError(f"{images_path}: holds {len(images)} images but {labels_path} holds {len(labels)} labels")


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) for `array`."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("=").str[1:])
    if code is None:
        names = ", ".join(str(dt.newbyteorder("=")) for dt in IDX_DTYPES.values())
        raise DataError(f"IDX cannot store dtype {array.dtype} (supported: {names})")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    if max(array.shape) >= 2**32:
        raise DataError(f"IDX dimensions must be below 2**32, got {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compresslevel: int = 6) -> None:
    """Write `array` as IDX atomically; gzip it (deterministically, mtime 0) when `path` ends with .gz."""
    path = Path(path)
    data = encode_idx(array)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    atomic_write_bytes(path, data)
