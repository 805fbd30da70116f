"""The data set registry: file names, checksums, mirrors, class names and the loader of each data set.

Adding a data set is one `register_dataset(DatasetSpec(...))` call, with no edit elsewhere. A spec
with `files` is loaded by the IDX loader (find or download, verify, decode, cache: data/raw.py); a
spec with a `loader` is loaded by calling it (generated sets register theirs in data/generated.py).
`load_raw` dispatches on the spec alone: no module special-cases a data set's name.

Checksums and mirrors come from ../shared/data/README.md: `md5` is the md5 of the official .gz on
the mirrors, `sha256` the sha256 and size of the *decompressed* file (the embedded and shared
copies were recompressed, so only the decompressed bytes can be checked against them).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mnistlab.errors import ConfigError

SPLIT_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

_MNIST_COUNTS = (60_000, 10_000)
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class ArchiveSpec:
    """A zip that holds the data files (EMNIST): downloaded from `<mirror>/<file_name>`."""

    file_name: str  # e.g. "gzip.zip"
    md5: str  # md5 of the whole zip
    members: dict[str, str]  # split key -> member path inside the zip

    def urls(self, mirrors: tuple[str, ...] | list[str]) -> list[str]:
        """The zip's URL on each mirror, in order."""
        return [f"{m.rstrip('/')}/{self.file_name}" for m in mirrors]


@dataclass(frozen=True)
class LoadOptions:
    """What `load_raw` was asked for, passed to a data set's loader (each uses the fields it needs)."""

    data_dir: str | os.PathLike | None = None  # a folder to search first (file-backed data sets)
    download: bool = True  # fetch missing files (or the files a generated set is built from)
    seed: int = 0  # generated sets: the seed of what they generate
    num_synthetic: int = 2048  # `synthetic`: training images (test: a quarter)
    progress: Any = False  # download progress: True (a tqdm bar) or a callable(done_bytes, total_bytes)


# loader(spec, options) -> RawData (data/raw.py): uint8 images and int64 labels (multi-hot for multilabel sets)
Loader = Callable[["DatasetSpec", LoadOptions], Any]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, fetch, verify and decode one data set."""

    name: str
    class_names: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)  # split key -> file name (.gz)
    md5: dict[str, str] = field(default_factory=dict)  # split key -> md5 of the official .gz
    sha256: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (sha256, size) decompressed
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order
    embedded: bool = False  # shipped inside the package (data/<name>/)
    transpose: bool = False  # images are stored transposed (EMNIST): (N, H, W) -> (N, W, H)
    label_offset: int = 0  # subtracted from the stored labels (emnist-letters stores 1-26)
    archive: ArchiveSpec | None = None  # files come out of one zip instead of one URL each
    description: str = ""
    license: str = ""
    multilabel: bool = False  # labels are sets: multi-hot (N, K) arrays instead of class indices (N,)
    mirror_safe: bool = False  # a left-right mirrored image keeps its class (clothes: yes; digits, letters: no)
    # (train, test) items in the official files: an IDX header declaring more is refused before
    # anything is decompressed (smaller files, e.g. test fixtures, are fine)
    counts: tuple[int, int] | None = None
    # How the data set is loaded: None for the IDX files named in `files`; a generated set (no files) gives its own.
    loader: Loader | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def generated(self) -> bool:
        """True for data sets made in code (no files)."""
        return not self.files

    def urls(self, key: str, mirrors: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """The URL of file `key` on each mirror, in order."""
        return [f"{m.rstrip('/')}/{self.files[key]}" for m in (self.mirrors if mirrors is None else mirrors)]


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add `spec` to the registry; a duplicate name is an error."""
    if spec.name in _DATASETS:
        raise ConfigError(f"data set {spec.name!r} is already registered")
    if spec.files and set(spec.files) != set(SPLIT_KEYS):
        raise ConfigError(f"data set {spec.name!r}: files must have exactly the keys {SPLIT_KEYS}")
    if not spec.files and spec.loader is None:
        raise ConfigError(f"data set {spec.name!r}: give either its files or a loader")
    _DATASETS[spec.name] = spec
    return spec


# Data sets named by a path instead of a registry name, as KIND:PATH (folder:~/digits, csv:train.csv).
# loader(name, image_size=, channels=, test_size=, seed=) -> RawData; data/custom.py registers its kinds.
PathLoader = Callable[..., Any]
_PATH_KINDS: dict[str, PathLoader] = {}


def register_path_kind(kind: str, loader: PathLoader) -> None:
    """Make `--dataset KIND:PATH` load through `loader`; a duplicate kind is an error."""
    if kind in _PATH_KINDS:
        raise ConfigError(f"data set kind {kind!r} is already registered")
    _PATH_KINDS[kind] = loader


def path_kind_loader(name: str) -> PathLoader | None:
    """The loader of a KIND:PATH name, or None for a registry name."""
    kind, colon, _ = name.partition(":")
    return _PATH_KINDS.get(kind) if colon else None


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec registered as `name`; ConfigError listing the valid names otherwise."""
    try:
        return _DATASETS[name]
    except KeyError:
        kinds = ", ".join(f"{kind}:PATH" for kind in sorted(_PATH_KINDS))
        raise ConfigError(f"unknown data set {name!r} (choose from {', '.join(list_datasets())}"
                          f"{', or ' + kinds if kinds else ''})") from None


def list_datasets() -> list[str]:
    """Registered data set names, sorted."""
    return sorted(_DATASETS)


DIGITS = tuple(string.digits)

register_dataset(
    DatasetSpec(
        name="mnist",
        class_names=DIGITS,
        files=dict(_MNIST_FILES),
        md5={
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        sha256={
            "train_images": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
            "train_labels": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
            "test_images": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
            "test_labels": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        embedded=True,
        counts=_MNIST_COUNTS,
        description="MNIST handwritten digits: 60,000 train + 10,000 test, 28x28 grey",
        license="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
    )
)

register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),  # fmt: skip
        files=dict(_MNIST_FILES),
        md5={
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        sha256={
            "train_images": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
            "train_labels": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
            "test_images": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
            "test_labels": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        counts=_MNIST_COUNTS,
        description="Fashion-MNIST (Zalando): 10 clothing classes, MNIST shapes",
        license="MIT",
        mirror_safe=True,
    )
)

register_dataset(
    DatasetSpec(
        name="kmnist",
        # the ten hiragana お き す つ な は ま や れ を, romanised
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        files=dict(_MNIST_FILES),
        md5={
            "train_images": "bdb82020997e1d708af4cf47b453dcf7",
            "train_labels": "e144d726b3acfaa3e44228e80efcd344",
            "test_images": "5c965bf0a639b31b8f53240b1b52f4d7",
            "test_labels": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        counts=_MNIST_COUNTS,
        description="Kuzushiji-MNIST: 10 cursive hiragana, MNIST shapes",
        license="CC BY-SA 4.0 (ROIS-DS CODH)",
    )
)

_EMNIST_CLASSES = {
    "byclass": DIGITS + tuple(string.ascii_uppercase) + tuple(string.ascii_lowercase),
    "bymerge": DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"),
    "balanced": DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"),
    "letters": tuple(string.ascii_lowercase),
    "digits": DIGITS,
    "mnist": DIGITS,
}
# (train, test) sizes of each EMNIST split (Cohen et al. 2017, table II)
_EMNIST_COUNTS = {
    "byclass": (697_932, 116_323), "bymerge": (697_932, 116_323), "balanced": (112_800, 18_800),
    "letters": (124_800, 20_800), "digits": (240_000, 40_000), "mnist": (60_000, 10_000),
}
EMNIST_MIRRORS = ("https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/",)
EMNIST_ZIP_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"

for _split, _classes in _EMNIST_CLASSES.items():
    _files = {
        key: f"emnist-{_split}-{'train' if key.startswith('train') else 'test'}-"
        f"{'images-idx3' if key.endswith('images') else 'labels-idx1'}-ubyte.gz"
        for key in SPLIT_KEYS
    }
    register_dataset(
        DatasetSpec(
            name=f"emnist-{_split}",
            class_names=_classes,
            files=_files,
            mirrors=EMNIST_MIRRORS,
            transpose=True,
            label_offset=1 if _split == "letters" else 0,
            counts=_EMNIST_COUNTS[_split],
            archive=ArchiveSpec("gzip.zip", EMNIST_ZIP_MD5, {k: f"gzip/{f}" for k, f in _files.items()}),
            description=f"EMNIST {_split}: {len(_classes)} classes of handwritten characters, 28x28",
            license="NIST terms, see https://www.nist.gov/itl/products-and-services/emnist-dataset",
        )
    )
