"""The one array cache (data/cache.py) and its three users: decoded IDX sets, multimnist, folder:/csv: sets."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest

from mnistlab.data import cache, custom, multimnist, raw
from mnistlab.data.cache import entry_folder, load_npy, read_arrays, write_arrays
from mnistlab.data.download import cache_dir
from mnistlab.data.raw import load_raw


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)


def _arrays():
    return {"x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "y": np.array([3, 1], np.int64)}


def test_round_trip_under_the_user_cache(tmp_path):
    folder = entry_folder("decoded", "toy-abc")
    assert folder == tmp_path / "cache" / "mnistlab" / "decoded" / "toy-abc" and folder.is_relative_to(cache_dir())
    assert write_arrays(folder, _arrays(), {"note": "hi"}) is None
    arrays, meta = read_arrays(folder, ("x", "y"))
    assert meta == {"note": "hi"}
    np.testing.assert_array_equal(arrays["x"], _arrays()["x"])
    assert arrays["y"].dtype == np.int64
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "x.npy", "y.npy"]  # no temporary left


def test_an_entry_without_its_meta_is_not_read():
    folder = entry_folder("decoded", "half")
    write_arrays(folder, _arrays())
    (folder / "meta.json").unlink()  # what a crash before the last write leaves
    assert read_arrays(folder, ("x", "y")) is None
    assert read_arrays(entry_folder("decoded", "absent"), ("x",)) is None
    write_arrays(folder, _arrays())
    (folder / "meta.json").write_text("[1, 2")  # not JSON
    assert read_arrays(folder, ("x", "y")) is None


def test_a_rewrite_that_fails_halfway_leaves_no_readable_entry(monkeypatch):
    folder = entry_folder("custom", "entry")
    write_arrays(folder, _arrays(), {"v": 1})
    real_save, calls = np.save, []

    def full_disk(f, arr, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(f, arr, **kwargs)

    monkeypatch.setattr(cache.np, "save", full_disk)
    error = write_arrays(folder, {"x": _arrays()["x"] + 1, "y": _arrays()["y"]}, {"v": 2})
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert read_arrays(folder, ("x", "y")) is None  # the old meta.json went first: x.npy is new, y.npy old
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_planted_header_is_refused_before_allocating():
    folder = entry_folder("generated", "planted")
    write_arrays(folder, _arrays())
    with open(folder / "x.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)})
        f.write(bytes(100))
    with pytest.raises(ValueError, match="does not match the file's size"):
        load_npy(folder / "x.npy")
    assert read_arrays(folder, ("x", "y")) is None


def test_a_read_only_cache_never_breaks_loading(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert isinstance(write_arrays(entry_folder("decoded", "x"), _arrays()), OSError)
    assert load_raw("synthetic", num_synthetic=40).train_x.shape == (40, 28, 28)
    train, test = multimnist.generate(seed=5, num_train=30, num_test=10)
    assert train.x.shape == (30, 28, 84) and test.y.shape == (10, 10)
    csv = tmp_path / "pixels.csv"
    rows = [",".join(["label", *(f"pixel{i}" for i in range(16))])]
    rows += [",".join(str(v) for v in [i % 2, *([i * 10 % 256] * 16)]) for i in range(20)]
    csv.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="mnistlab"):
        x, y = custom.read_pixel_csv(csv)
    assert x.shape == (20, 4, 4) and y.tolist() == [i % 2 for i in range(20)]
    assert "could not cache decoded images in " in caplog.text  # the custom loader says so; nothing raised


def test_a_decoded_cache_of_the_old_layout_is_rebuilt(monkeypatch):
    """Entries written before meta.json existed (four .npy files only) are decoded again, once."""
    spec = raw.get_dataset_spec("mnist")
    folder = raw._cache_folder(spec, raw._files_key(spec, raw._embedded_paths(spec)))
    first = load_raw("mnist")
    (folder / "meta.json").unlink()
    decoded = []
    real = raw._decode
    monkeypatch.setattr(raw, "_decode", lambda *a: decoded.append(1) or real(*a))
    again = load_raw("mnist")
    np.testing.assert_array_equal(again.test_x, first.test_x)
    assert decoded == [1] and (folder / "meta.json").is_file()
    load_raw("mnist")
    assert decoded == [1]  # read back from the rebuilt entry
