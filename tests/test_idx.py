"""IDX reading and writing: round trips, every fault as a one-line DataError naming the file, real data."""

from __future__ import annotations

import builtins
import gzip
import os
import time

import numpy as np
import pytest

from mnistlab.data.idx import check_pair, read_idx, read_images, read_labels, write_idx
from mnistlab.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _raises(path, phrase, fn=read_idx, **kw):
    with pytest.raises(DataError) as info:
        fn(path, **kw)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert phrase in msg, msg
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "dtype, shape",
    [("u1", (5, 3, 4)), ("i1", (7,)), (">i2", (2, 3)), ("<i4", (4, 1, 2, 3)), ("f4", (3, 3)), ("f8", (6,))],
)
def test_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, x)
    y = read_idx(path)
    assert y.shape == x.shape and y.dtype == x.dtype.newbyteorder("=")
    np.testing.assert_array_equal(y, x)
    assert y.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_header_bytes_and_deterministic_gzip(tmp_path):
    write_idx(tmp_path / "l", np.array([1, 2, 3], np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", x)
    time.sleep(0.01)
    write_idx(tmp_path / "b.gz", x)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert read_images(tmp_path / "a.gz").shape == (2, 3, 4)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(DataError, match="dimensions"):
        write_idx(tmp_path / "x", np.array(3, np.uint8))


def _good_header(n=2, h=2, w=2):
    return bytes([0, 0, 8, 3]) + np.array([n, h, w], ">u4").tobytes()


def test_faults(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"")
    _raises(p, "empty file")
    p.write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    _raises(p, "wrong magic")
    p.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 0]))
    _raises(p, "unknown IDX dtype code 0x0A")
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    _raises(p, "truncated IDX header")
    p.write_bytes(_good_header() + b"\1" * 5)
    msg = _raises(p, "truncated")
    assert "expected 8" in msg and "got 5" in msg
    p.write_bytes(_good_header() + b"\1" * 11)
    _raises(p, "trailing bytes")
    _raises(tmp_path / "nope.gz", "file not found")
    (tmp_path / "dir").mkdir()
    _raises(tmp_path / "dir", "is a directory")


def test_gzip_faults(tmp_path):
    payload = gzip.compress(_good_header() + b"\1" * 8, mtime=0)
    p = tmp_path / "x.gz"
    p.write_bytes(payload[: len(payload) // 2])
    _raises(p, "truncated .gz")
    corrupt = bytearray(payload)
    corrupt[-6] ^= 0xFF  # inside the CRC32 trailer
    p.write_bytes(bytes(corrupt))
    _raises(p, "corrupt .gz")
    p.write_bytes(gzip.compress(b"", mtime=0))
    _raises(p, "empty file")
    # a gzip whose content is not IDX
    p.write_bytes(gzip.compress(b"hello world", mtime=0))
    _raises(p, "wrong magic")


def test_permission_denied(tmp_path, monkeypatch):
    p = tmp_path / "locked.gz"
    write_idx(p, np.zeros((1, 2, 2), np.uint8))
    if os.geteuid() == 0:  # root reads anything: simulate the OS refusing
        real_open = builtins.open

        def fake_open(file, *a, **kw):
            if str(file) == str(p):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", fake_open)
    else:
        p.chmod(0)
    _raises(p, "permission denied")


def test_images_and_labels_shape_checks(tmp_path):
    write_idx(tmp_path / "lab", np.array([0, 3, 9, 2], np.uint8))
    _raises(tmp_path / "lab", "expected uint8 images", fn=read_images)
    assert read_labels(tmp_path / "lab", num_classes=10).tolist() == [0, 3, 9, 2]
    msg = _raises(tmp_path / "lab", "label 9 at index 2", fn=read_labels, num_classes=5)
    assert "5 classes" in msg
    write_idx(tmp_path / "img", np.zeros((4, 2, 2), np.uint8))
    _raises(tmp_path / "img", "expected uint8 labels", fn=read_labels)
    write_idx(tmp_path / "f", np.zeros((4, 2, 2), np.float32))
    _raises(tmp_path / "f", "expected uint8 images", fn=read_images)


def test_check_pair(tmp_path):
    check_pair(np.zeros((3, 2, 2)), np.zeros(3), "i", "l")
    with pytest.raises(DataError, match=r"^imgs\.gz: holds 3 images but labs\.gz holds 2 labels$"):
        check_pair(np.zeros((3, 2, 2)), np.zeros(2), "imgs.gz", "labs.gz")


def test_real_mnist_labels(shared_data):
    y = read_labels(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", num_classes=10)
    assert y.shape == (60000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == MNIST_TRAIN_COUNTS


def test_real_mnist_images_fast(shared_data):
    t = time.process_time()  # CPU seconds: the other test worker may hold the cores meanwhile
    x = read_images(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
    elapsed = time.process_time() - t
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert elapsed < 1.5, f"decoding 60k images took {elapsed:.2f} s"


def test_gzip_bomb_is_bounded_by_the_declared_size(tmp_path):
    """A .gz that expands far beyond what its IDX header declares is refused after header + 1 byte."""
    import gzip
    import struct
    import zlib

    header = struct.pack(">BBBBIII", 0, 0, 0x08, 3, 1, 28, 28)
    body = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    compressed = body.compress(header) + b"".join(body.compress(chunk) for _ in range(200)) + body.flush()
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(compressed)  # ~200 KB on disk, 200 MB decompressed
    assert len(compressed) < 1_000_000
    with pytest.raises(DataError, match="trailing bytes"):
        read_images(path)
    declared_huge = gzip.compress(struct.pack(">BBBBIII", 0, 0, 0x08, 3, 2**31, 2**16, 2**16))
    (tmp_path / "huge.gz").write_bytes(declared_huge)
    with pytest.raises(DataError, match="limit"):
        read_images(tmp_path / "huge.gz")
