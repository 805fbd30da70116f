"""Decoded data sets: embedded MNIST, the .npy cache, EMNIST transpose/offset, synthetic data, verification."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab.data import raw
from mnistlab.data.download import cache_dir
from mnistlab.data.idx import write_idx
from mnistlab.data.raw import RawData, dataset_paths, load_raw, verify_dataset
from mnistlab.data.sources import get_dataset_spec
from mnistlab.data.synthetic import synthetic
from mnistlab.errors import DataError, DownloadError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)


def _write_set(folder, name, train_x, train_y, test_x, test_y, gz=True):
    """Write four tiny IDX files under the file names of data set `name`."""
    spec = get_dataset_spec(name)
    arrays = {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y}
    for key, arr in arrays.items():
        f = spec.files[key] if gz else spec.files[key].removesuffix(".gz")
        write_idx(folder / f, np.asarray(arr, np.uint8))
    return folder


def _tiny(n=6, h=3, w=5, labels=None):
    x = np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)  # not square: transposition is visible
    y = np.arange(n, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    return x, y


def test_mnist_embedded_and_cached(monkeypatch):
    data = load_raw("mnist")
    assert isinstance(data, RawData) and data.name == "mnist" and data.class_names == tuple("0123456789")
    assert data.train_x.shape == (60000, 28, 28) and data.test_x.shape == (10000, 28, 28)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int64
    assert np.bincount(data.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(data.test_y).tolist() == MNIST_TEST_COUNTS
    cached = list((cache_dir() / "decoded").glob("mnist-*/*.npy"))
    assert len(cached) == 4 and not [p for p in cached[0].parent.iterdir() if p.name.startswith(".")]

    def no_decode(*a, **kw):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(raw, "_decode", no_decode)
    again = load_raw("mnist")
    np.testing.assert_array_equal(again.train_x, data.train_x)
    np.testing.assert_array_equal(again.test_y, data.test_y)
    assert again.train_x.flags.writeable and type(again.train_x) is np.ndarray
    # memory-mapped copy-on-write: nothing read up front, and a write never reaches the cache file
    assert not again.train_x.flags.owndata
    before = cached[0].parent.joinpath("train_x.npy").read_bytes()
    again.train_x[0, 0, 0] = 255 - again.train_x[0, 0, 0]
    assert cached[0].parent.joinpath("train_x.npy").read_bytes() == before


def test_cache_not_writable_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    _write_set(tmp_path / "d", "kmnist", *_tiny(), *_tiny(3))
    data = load_raw("kmnist", data_dir=tmp_path / "d", download=False)
    assert data.train_x.shape == (6, 3, 5) and data.class_names[0] == "o"


def test_corrupt_cache_is_rebuilt(tmp_path):
    d = _write_set(tmp_path / "d", "kmnist", *_tiny(), *_tiny(3))
    first = load_raw("kmnist", data_dir=d, download=False)
    (npy,) = (cache_dir() / "decoded").glob("kmnist-*/train_x.npy")
    npy.write_bytes(b"garbage")
    again = load_raw("kmnist", data_dir=d, download=False)
    np.testing.assert_array_equal(again.train_x, first.train_x)
    # changed source files give a new cache key, not stale arrays
    x, y = _tiny()
    _write_set(d, "kmnist", x + 1, y, *_tiny(3))
    np.testing.assert_array_equal(load_raw("kmnist", data_dir=d, download=False).train_x, x + 1)


def test_emnist_transpose_and_offset(tmp_path):
    x, _ = _tiny(4)
    d = _write_set(tmp_path, "emnist-letters", x, [1, 26, 5, 2], x[:2], [26, 1])
    data = load_raw("emnist-letters", data_dir=d, download=False)
    assert data.train_x.shape == (4, 5, 3)
    np.testing.assert_array_equal(data.train_x, x.transpose(0, 2, 1))
    assert data.train_x.flags.c_contiguous
    assert data.train_y.tolist() == [0, 25, 4, 1] and data.test_y.tolist() == [25, 0]
    assert [data.class_names[i] for i in data.train_y] == ["a", "z", "e", "b"]


def test_emnist_label_range_checked(tmp_path):
    x, _ = _tiny(2)
    d = _write_set(tmp_path / "a", "emnist-letters", x, [0, 3], x, [1, 2])
    with pytest.raises(DataError, match="below the label offset"):
        load_raw("emnist-letters", data_dir=d, download=False)
    d = _write_set(tmp_path / "b", "emnist-letters", x, [27, 3], x, [1, 2])
    with pytest.raises(DataError, match="label 27 at index 0"):
        load_raw("emnist-letters", data_dir=d, download=False)
    d = _write_set(tmp_path / "c", "emnist-balanced", x, [46, 3], x, [47, 2])
    with pytest.raises(DataError, match=r"test-labels.*label 47 at index 0.*47 classes"):
        load_raw("emnist-balanced", data_dir=d, download=False)
    digits = load_raw("emnist-digits", data_dir=_write_set(tmp_path / "e", "emnist-digits", x, [9, 0], x, [1, 2]))
    assert digits.train_y.tolist() == [9, 0]


def test_count_mismatch_and_missing(tmp_path):
    x, y = _tiny(4)
    d = _write_set(tmp_path, "kmnist", x, y[:3], x, y)
    with pytest.raises(DataError, match=r"train-images.* 4 images but .*train-labels.* 3 labels"):
        load_raw("kmnist", data_dir=d, download=False)
    with pytest.raises(DownloadError, match="fashion-mnist"):
        load_raw("fashion-mnist", data_dir=tmp_path / "empty", download=False)


def test_synthetic():
    data = load_raw("synthetic", num_synthetic=400, seed=3)
    assert data.train_x.shape == (400, 28, 28) and data.test_x.shape == (100, 28, 28)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int64
    assert np.bincount(data.train_y).tolist() == [40] * 10
    again = load_raw("synthetic", num_synthetic=400, seed=3)
    np.testing.assert_array_equal(again.train_x, data.train_x)
    assert not np.array_equal(data.test_x, data.train_x[:100])
    assert not np.array_equal(load_raw("synthetic", num_synthetic=400, seed=4).train_x, data.train_x)


def test_synthetic_is_learnable_by_a_linear_model():
    x, y = synthetic(1000, num_classes=10, seed=0)
    xt, yt = synthetic(500, num_classes=10, seed=1)
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)  # no duplicates
    # a ridge-regression classifier (linear, closed form) must separate the classes
    def feats(a):  # (n, 28, 28) -> (n, 785) with a bias column
        return np.hstack([a.reshape(len(a), -1) / 255.0, np.ones((len(a), 1))])

    f = feats(x)
    w = np.linalg.solve(f.T @ f + 1.0 * np.eye(f.shape[1]), f.T @ np.eye(10)[y])
    scores = feats(xt) @ w
    assert (scores.argmax(1) == yt).mean() > 0.9
    x7, y7 = synthetic(70, num_classes=7, seed=0, size=16)
    assert x7.shape == (70, 16, 16) and set(y7.tolist()) == set(range(7))


def test_verify_and_paths(tmp_path):
    paths = dataset_paths("mnist")
    assert all(p is not None and p.is_file() for p in paths.values())
    rows = verify_dataset("mnist")
    assert [r[0] for r in rows] == ["train_images", "train_labels", "test_images", "test_labels"]
    assert all(ok for _, _, ok, _ in rows), rows
    assert "sha256 ok" in rows[0][3]

    x, y = _tiny()
    d = _write_set(tmp_path / "k", "kmnist", x, y, x, y)
    rows = verify_dataset("kmnist", data_dir=d)
    assert not any(ok for _, _, ok, _ in rows) and "md5 mismatch" in rows[0][3]
    d = _write_set(tmp_path / "u", "kmnist", x, y, x, y, gz=False)
    rows = verify_dataset("kmnist", data_dir=d)
    assert all(ok for _, _, ok, _ in rows) and "no checksum" in rows[0][3]
    d = _write_set(tmp_path / "f", "fashion-mnist", x, y, x, y)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    rows = {r[0]: r for r in verify_dataset("fashion-mnist", data_dir=d)}
    assert "sha256 mismatch" in rows["train_images"][3]
    assert rows["test_labels"][2] is False and "missing" in rows["test_labels"][3]
    assert dataset_paths("fashion-mnist", data_dir=d)["test_labels"] is None
    assert verify_dataset("synthetic") == []


def test_real_fashion_mnist(shared_data):
    data = load_raw("fashion-mnist", data_dir=shared_data, download=False)
    assert data.train_x.shape == (60000, 28, 28) and data.test_y.shape == (10000,)
    assert np.bincount(data.train_y).tolist() == [6000] * 10
