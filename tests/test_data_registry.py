"""A new data set is one registration: a toy generated set registered here loads and trains with no other edit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistlab.data import sources
from mnistlab.data.loader import load_dataset
from mnistlab.data.raw import RawData, load_raw
from mnistlab.data.sources import DatasetSpec, LoadOptions, get_dataset_spec, list_datasets, register_dataset
from mnistlab.errors import ConfigError, DataError
from cores import THREADS

TOY = "toy-bars"


def _bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal (class 0) or vertical (class 1) bright bars on noise, 28x28."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    where = rng.integers(6, 20, size=n)
    for i in range(n):
        band = slice(where[i], where[i] + 4)
        if y[i] == 0:
            x[i, band, 4:24] = 230
        else:
            x[i, 4:24, band] = 230
    return x, y


def load_toy(spec: DatasetSpec, options: LoadOptions) -> RawData:
    train_x, train_y = _bars(1200, options.seed)
    test_x, test_y = _bars(300, options.seed + 1)
    return RawData(train_x, train_y, test_x, test_y, spec.class_names, spec.name)


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A copy of the registry for this test: what it registers is gone afterwards."""
    monkeypatch.setattr(sources, "_DATASETS", dict(sources._DATASETS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    return sources._DATASETS


@pytest.fixture
def toy(registry):
    return register_dataset(DatasetSpec(name=TOY, class_names=("horizontal", "vertical"), loader=load_toy,
                                        description="toy bars (a test's own data set)"))


def test_a_registered_generated_set_loads_through_load_dataset(toy):
    assert TOY in list_datasets() and get_dataset_spec(TOY).generated
    raw = load_raw(TOY, seed=3)
    assert raw.name == TOY and raw.class_names == ("horizontal", "vertical")
    assert raw.train_x.shape == (1200, 28, 28) and raw.test_x.shape == (300, 28, 28)
    np.testing.assert_array_equal(raw.train_x, _bars(1200, 3)[0])  # the seed reaches the loader
    data = load_dataset(TOY, device="cpu", val_size=200)
    assert (len(data.train), len(data.val), len(data.test)) == (1000, 200, 300)
    assert data.class_names == ("horizontal", "vertical") and data.in_shape == (1, 28, 28)


def test_a_registered_generated_set_trains_from_the_command_line(toy, tmp_path, capsys):
    from mnistlab.cli import main

    out = tmp_path / "runs"
    assert main(["train", "--dataset", TOY, "--model", "softmax", "--epochs", "2", "--val-size", "200",
                 "--no-figures", "--threads", str(THREADS), "--out-dir", str(out), "--name", "toy"]) == 0
    assert f"on {TOY}: 1,000 train / 200 val / 300 test" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "toy" / "metrics.jsonl").read_text().splitlines()]
    (test,) = [r for r in records if r["kind"] == "test"]
    assert test["test_acc"] > 0.95  # bars are easy: far above chance (0.5)


def test_the_test_registry_is_restored():
    assert TOY not in list_datasets()
    with pytest.raises(ConfigError, match=f"unknown data set '{TOY}'"):
        get_dataset_spec(TOY)


def test_a_spec_needs_files_or_a_loader(registry):
    with pytest.raises(ConfigError, match="give either its files or a loader"):
        register_dataset(DatasetSpec(name="nothing", class_names=("a", "b")))
    assert "nothing" not in list_datasets()


def test_a_loader_must_return_consistent_raw_data(registry):
    register_dataset(DatasetSpec(name="bad-type", class_names=("a", "b"), loader=lambda spec, options: (1, 2)))
    with pytest.raises(DataError, match="its loader returned tuple, not RawData"):
        load_raw("bad-type")
    x, y = _bars(10, 0)
    register_dataset(DatasetSpec(name="bad-len", class_names=("a", "b"),
                                 loader=lambda spec, options: RawData(x, y[:5], x, y, spec.class_names, spec.name)))
    with pytest.raises(DataError, match="10 train images but 5 labels"):
        load_raw("bad-len")


def test_built_in_sets_dispatch_on_their_spec():
    """File-backed sets use the IDX loader; the generated ones carry their own (no name is special-cased)."""
    for name in list_datasets():
        spec = get_dataset_spec(name)
        assert (spec.loader is None) == bool(spec.files), name
    assert get_dataset_spec("synthetic").loader is not None and get_dataset_spec("multimnist").loader is not None


def test_a_new_path_kind_is_one_registration(monkeypatch):
    """KIND:PATH names dispatch through the path-kind registry (folder: and csv: are two entries in it)."""
    monkeypatch.setattr(sources, "_PATH_KINDS", dict(sources._PATH_KINDS))
    seen = {}

    def load_bars(name, *, image_size, channels, test_size, seed):
        seen.update(name=name, seed=seed)
        train_x, train_y = _bars(600, seed)
        test_x, test_y = _bars(100, seed + 1)
        return RawData(train_x, train_y, test_x, test_y, ("horizontal", "vertical"), name)

    sources.register_path_kind("bars", load_bars)
    data = load_dataset("bars:/anywhere", device="cpu", val_size=100, seed=5)
    assert seen == {"name": "bars:/anywhere", "seed": 5}
    assert (len(data.train), len(data.val), len(data.test)) == (500, 100, 100)
    with pytest.raises(ConfigError, match="already registered"):
        sources.register_path_kind("bars", load_bars)
    with pytest.raises(ConfigError, match=r"bars:PATH, csv:PATH, folder:PATH"):
        get_dataset_spec("nope:x")
    assert sources.path_kind_loader("csv:x.csv") is not None and sources.path_kind_loader("mnist") is None
