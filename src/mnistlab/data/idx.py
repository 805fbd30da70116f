"""Read, write and validate IDX files (the MNIST file format), plain or gzipped.

An IDX file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the data in C order. Every fault raises `DataError` with a
one-line message that starts with the file path.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

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


def _read_bytes(path: Path) -> bytes:
    """The raw bytes of `path`, decompressed when they are gzip; OS faults become DataError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise DataError(f"{path}: empty file (0 bytes)")
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip_bounded(path, data)
        if not data:
            raise DataError(f"{path}: empty file (the .gz decompresses to 0 bytes)")
    return data


def _gunzip_bounded(path: Path, data: bytes) -> bytes:
    """Decompress no more than the IDX header declares (+1 byte to detect trailing data).

    A gzip bomb posing as a data file therefore costs at most the declared size, which is itself
    capped at MAX_IDX_BYTES, instead of whatever the stream would expand to.
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, 4 + 4 * 255)  # the longest possible header
        total = len(head) + 1
        if len(head) >= 4 and head[2] in IDX_DTYPES and len(head) >= 4 + 4 * head[3]:
            ndim = head[3]
            shape = np.frombuffer(head, dtype=">u4", count=ndim, offset=4)
            total = 4 + 4 * ndim + math.prod(int(v) for v in shape) * IDX_DTYPES[head[2]].itemsize
            if total > MAX_IDX_BYTES:
                raise DataError(f"{path}: header declares {total:,} bytes, over the {MAX_IDX_BYTES:,}-byte limit")
        out = bytearray(head)
        tail = d.unconsumed_tail
        while tail and len(out) <= total:
            out += d.decompress(tail, total + 1 - len(out))
            tail = d.unconsumed_tail
        if not d.eof and len(out) <= total:
            raise DataError(f"{path}: truncated .gz file (compressed stream ends early)")
    except zlib.error as e:
        raise DataError(f"{path}: corrupt .gz file ({e})") from None
    return bytes(out)


def _parse(path: Path, data: bytes) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX header (expected at least 4 bytes, got {len(data)})")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: wrong magic 0x{data[:4].hex()}, not an IDX file (expected 0x0000 then dtype and rank)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X} (valid: {valid})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header (expected {header} bytes, got {len(data)})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: np.prod wraps around (65536**4 -> 0)
    got = len(data) - header
    if got < expected:
        raise DataError(f"{path}: truncated: expected {expected} data bytes for shape {shape}, got {got}")
    if got > expected:
        raise DataError(
            f"{path}: trailing bytes: expected {expected} data bytes for shape {shape}, got {got} "
            f"({got - expected} extra)"
        )
    try:
        x = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)
    except ValueError:  # e.g. (0, 2**31, 2**31): no data, yet too big a shape for numpy
        raise DataError(f"{path}: impossible shape {shape} (numpy cannot represent it)") from None
    # frombuffer views immutable bytes: copy (and convert to native byte order) so callers own the array.
    return x.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or .gz) into a native-endian array of its stored dtype and shape."""
    path = Path(path)
    return _parse(path, _read_bytes(path))


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX image file: uint8, shape (N, H, W)."""
    x = read_idx(path)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise DataError(f"{path}: expected uint8 images of shape (N, H, W), got {x.dtype} of shape {x.shape}")
    return x


def read_labels(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """Read an IDX label file: uint8, shape (N,); with `num_classes`, every label must be below it."""
    y = read_idx(path)
    if y.dtype != np.uint8 or y.ndim != 1:
        raise DataError(f"{path}: expected uint8 labels of shape (N,), got {y.dtype} of shape {y.shape}")
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
