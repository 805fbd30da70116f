"""The data set registry: names, lookups, class names and file layouts."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from mnistlab.data.download import download_file
from mnistlab.data.raw import verify_dataset
from mnistlab.data.sources import SPLIT_KEYS, DatasetSpec, get_dataset_spec, list_datasets, register_dataset
from mnistlab.errors import ConfigError, DownloadError

EXPECTED = {
    "mnist": 10, "fashion-mnist": 10, "kmnist": 10, "synthetic": 10,
    "emnist-balanced": 47, "emnist-byclass": 62, "emnist-bymerge": 47,
    "emnist-letters": 26, "emnist-digits": 10, "emnist-mnist": 10,
}  # fmt: skip


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
        archive = get_dataset_spec("emnist-balanced").archive  # one download serves every split
        assert (spec.archive.file_name, spec.archive.md5) == (archive.file_name, archive.md5)
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


def test_mnist_urls():
    spec = get_dataset_spec("mnist")
    assert spec.embedded
    assert spec.urls("test_labels")[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"
    assert spec.urls("test_labels", ["http://x/y"]) == ["http://x/y/t10k-labels-idx1-ubyte.gz"]


def test_registry_checksums_verify_the_shipped_mnist_and_catch_corruption(tmp_path):
    """The registry's sha256 (of the IDX bytes) accepts the shipped files and rejects a changed one; its md5
    (of the official .gz) refuses any other .gz from a mirror, even a recompressed copy of the same bytes."""
    spec = get_dataset_spec("mnist")
    rows = {key: (path, ok, detail) for key, path, ok, detail in verify_dataset("mnist")}
    assert set(rows) == set(SPLIT_KEYS)
    for key, (path, ok, detail) in rows.items():
        assert ok, detail
        assert detail == f"sha256 ok ({spec.sha256[key][1]} bytes decompressed)"

    # One changed label in a re-compressed copy: a different .gz and different IDX bytes.
    original = rows["test_labels"][0]
    idx = bytearray(gzip.decompress(original.read_bytes()))
    idx[-1] = (idx[-1] + 1) % 10
    bad = tmp_path / spec.files["test_labels"]
    bad.write_bytes(gzip.compress(bytes(idx)))
    rows = {key: (path, ok, detail) for key, path, ok, detail in verify_dataset("mnist", data_dir=tmp_path)}
    path, ok, detail = rows["test_labels"]
    assert path == bad and not ok and detail.startswith("sha256 mismatch")
    assert all(rows[k][1] for k in SPLIT_KEYS if k != "test_labels")  # the other files still come from the package

    # Downloads: a file is kept only when its md5 is the one asked for; a refused one leaves nothing behind.
    own_md5 = hashlib.md5(original.read_bytes()).hexdigest()
    assert own_md5 != spec.md5["test_labels"]  # the package's copy was recompressed
    good = download_file([original.as_uri()], tmp_path / "dl" / "ok.gz", own_md5)
    assert good.read_bytes() == original.read_bytes()
    for served in (original, bad):
        with pytest.raises(DownloadError, match="md5 mismatch"):
            download_file([served.as_uri()], tmp_path / "dl" / "refused.gz", spec.md5["test_labels"])
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["ok.gz"]


def test_unknown_name_lists_valid():
    with pytest.raises(ConfigError, match="unknown data set 'mnits'.*fashion-mnist.*mnist"):
        get_dataset_spec("mnits")


def test_duplicate_and_bad_registration():
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(DatasetSpec(name="mnist", class_names=("a",)))
    with pytest.raises(ConfigError, match="keys"):
        register_dataset(DatasetSpec(name="half-a-dataset", class_names=("a",), files={"train_images": "x"}))
    assert "half-a-dataset" not in list_datasets()
