"""The data set registry: names, lookups, class names and file layouts."""

from __future__ import annotations

import pytest

from mnistlab.data.sources import SPLIT_KEYS, DatasetSpec, get_dataset_spec, list_datasets, register_dataset
from mnistlab.errors import ConfigError

EXPECTED = {
    "mnist": 10, "fashion-mnist": 10, "kmnist": 10, "synthetic": 10,
    "emnist-balanced": 47, "emnist-byclass": 62, "emnist-bymerge": 47,
    "emnist-letters": 26, "emnist-digits": 10, "emnist-mnist": 10,
}  # fmt: skip


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_list_is_sorted_and_complete():
    names = list_datasets()
    assert names == sorted(names)
    assert set(EXPECTED) <= set(names)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_consistency(name):
    spec = get_dataset_spec(name)
    assert spec.name == name
    assert len(spec.class_names) == EXPECTED[name] == spec.num_classes
    assert len(set(spec.class_names)) == spec.num_classes
    if name == "synthetic":
        assert spec.generated and not spec.files
        return
    assert set(spec.files) == set(SPLIT_KEYS)
    assert spec.mirrors and all(m.startswith("http") for m in spec.mirrors)
    assert set(spec.md5) <= set(SPLIT_KEYS) and set(spec.sha256) <= set(SPLIT_KEYS)
    assert all(len(v) == 32 for v in spec.md5.values())
    if name.startswith("emnist-"):
        split = name.split("-", 1)[1]
        assert spec.transpose and spec.archive is not None
        assert spec.archive.md5 == "58c8d27c78d21e728a6bc7b3cc06412e"
        assert spec.archive.members["train_images"] == f"gzip/emnist-{split}-train-images-idx3-ubyte.gz"
        assert spec.archive.members["test_labels"] == f"gzip/emnist-{split}-test-labels-idx1-ubyte.gz"
        assert spec.label_offset == (1 if split == "letters" else 0)
    else:
        assert not spec.transpose and spec.label_offset == 0


def test_class_names():
    assert get_dataset_spec("kmnist").class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    balanced = get_dataset_spec("emnist-balanced").class_names
    assert "".join(balanced) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    assert "".join(get_dataset_spec("emnist-byclass").class_names)[-26:] == "abcdefghijklmnopqrstuvwxyz"
    assert get_dataset_spec("emnist-letters").class_names[0] == "a"
    assert get_dataset_spec("fashion-mnist").class_names[-1] == "Ankle boot"


def test_mnist_checksums_and_urls():
    spec = get_dataset_spec("mnist")
    assert spec.embedded
    assert spec.md5["train_images"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert spec.sha256["train_labels"] == ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008)
    assert spec.urls("test_labels")[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"
    assert spec.urls("test_labels", ["http://x/y"]) == ["http://x/y/t10k-labels-idx1-ubyte.gz"]


def test_unknown_name_lists_valid():
    with pytest.raises(ConfigError, match="unknown data set 'mnits'.*fashion-mnist.*mnist"):
        get_dataset_spec("mnits")


def test_duplicate_and_bad_registration():
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(DatasetSpec(name="mnist", class_names=("a",)))
    with pytest.raises(ConfigError, match="keys"):
        register_dataset(DatasetSpec(name="half-a-dataset", class_names=("a",), files={"train_images": "x"}))
    assert "half-a-dataset" not in list_datasets()
