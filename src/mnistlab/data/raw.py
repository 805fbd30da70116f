"""Decoded data sets as uint8 NumPy arrays: `load_raw` calls the loader of the data set's registry entry.

The IDX loader (`load_idx`, for every spec with `files`) finds the files, decodes and checks them
and caches the result. Decoding the 47 MB of gzipped MNIST training images takes about 0.3 s, so
the decoded arrays are cached as .npy files in the user cache (data/cache.py), keyed by the sha256
of the source files: the next load reads them back in milliseconds, and any change to the source
files changes the key.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.data.cache import entry_folder, load_npy, read_arrays, write_arrays
from mnistlab.data.download import EMBEDDED_DIR, Progress, find_local, locate, search_dirs
from mnistlab.data.idx import check_pair, read_idx_header, read_images, read_labels
from mnistlab.data.sources import SPLIT_KEYS, DatasetSpec, LoadOptions, get_dataset_spec
from mnistlab.errors import DataError

__all__ = ["RawData", "dataset_paths", "load_idx", "load_npy", "load_raw", "verify_dataset"]

_CACHE_VERSION = 1  # bump when the cached layout or the decoding changes
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


@dataclass
class RawData:
    """A decoded data set: uint8 images (N, H, W) and int64 labels (N,) (multi-hot (N, K) for multimnist)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    name: str
    notes: list[str] = field(default_factory=list)  # what loading skipped or decided (folder:/csv: data sets)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"RawData(name={self.name!r}, train={tuple(self.train_x.shape)}, test={tuple(self.test_x.shape)}, "
            f"num_classes={self.num_classes})"
        )


def _embedded_paths(spec: DatasetSpec) -> dict[str, Path]:
    return {k: EMBEDDED_DIR / spec.name / f for k, f in spec.files.items()}


def dataset_paths(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """The file each split key of data set `name` would be loaded from (None: not on this machine)."""
    spec = get_dataset_spec(name)
    if spec.embedded and data_dir is None:
        return dict(_embedded_paths(spec))
    return find_local(spec, data_dir)


def _source_paths(spec: DatasetSpec, data_dir, download: bool, progress: Progress) -> dict[str, Path]:
    # The embedded copy is the reproducible default; an explicit data_dir may replace it.
    if spec.embedded and data_dir is None:
        return _embedded_paths(spec)
    return locate(spec, data_dir, download=download, progress=progress)


def _files_key(spec: DatasetSpec, paths: dict[str, Path]) -> str:
    """sha256 over the source files' bytes (and how they are decoded): the decoded-cache key."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{spec.transpose}:{spec.label_offset}:".encode())
    for key in SPLIT_KEYS:
        try:
            with open(paths[key], "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest() if hasattr(hashlib, "file_digest")
                         else hashlib.sha256(f.read()).digest())  # fmt: skip
        except OSError:
            return ""  # unreadable: let the decoder report it with a proper message
    return h.hexdigest()


def _cache_folder(spec: DatasetSpec, key: str) -> Path:
    return entry_folder("decoded", f"{spec.name}-{key[:24]}")


def _load_cached(folder: Path) -> tuple[np.ndarray, ...] | None:
    # Memory-mapped: a registered set loads in milliseconds, and only the images used are read.
    cached = read_arrays(folder, _ARRAYS, mmap=True)
    if cached is None:
        return None  # absent, unreadable or corrupt: decode again
    arrays = tuple(cached[0][a] for a in _ARRAYS)
    train_x, train_y, test_x, test_y = arrays
    ok = (
        train_x.dtype == test_x.dtype == np.uint8 and train_x.ndim == test_x.ndim == 3
        and train_y.dtype == test_y.dtype == np.int64 and train_y.ndim == test_y.ndim == 1
        and len(train_x) == len(train_y) and len(test_x) == len(test_y)
    )  # fmt: skip
    return arrays if ok else None


def _save_cached(folder: Path, spec: DatasetSpec, arrays: tuple[np.ndarray, ...]) -> None:
    # A read-only or full disk must not break loading: the error is dropped, the arrays decoded again next time.
    write_arrays(folder, dict(zip(_ARRAYS, arrays)), {"dataset": spec.name, "version": _CACHE_VERSION})


def _check_headers(spec: DatasetSpec, paths: dict[str, Path]) -> None:
    """Compare what the four headers declare, before any data is decompressed.

    A header that declares more items than the data set holds, or image and label counts that
    differ, would otherwise cost the declared size in memory (gigabytes) before failing.
    """
    for i, split in enumerate(("train", "test")):
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        num_x, num_y = read_idx_header(xp).shape[0], read_idx_header(yp).shape[0]
        if spec.counts is not None:
            most = spec.counts[i]
            for path, n, kind in ((xp, num_x, "images"), (yp, num_y, "labels")):
                if n > most:
                    raise DataError(f"{path}: header declares {n:,} {kind}, but the {spec.name} {split} split "
                                    f"holds {most:,}: the file is damaged or belongs to another data set")
        if num_x != num_y:
            raise DataError(f"{xp}: holds {num_x} images but {yp} holds {num_y} labels")


def _decode(spec: DatasetSpec, paths: dict[str, Path]) -> tuple[np.ndarray, ...]:
    """Read and check the four IDX files; apply the spec's transpose and label offset."""
    _check_headers(spec, paths)
    out = []
    max_label = spec.num_classes + spec.label_offset
    for split in ("train", "test"):
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        x, y = read_images(xp), read_labels(yp, max_label)
        check_pair(x, y, xp, yp)
        if spec.label_offset and len(y) and int(y.min()) < spec.label_offset:
            i = int(np.argmin(y))
            raise DataError(f"{yp}: label {int(y[i])} at index {i} is below the label offset {spec.label_offset}")
        if spec.transpose:
            x = _transpose_in_place(x)  # EMNIST is stored transposed
        labels = y.astype(np.int64)
        labels -= spec.label_offset  # in place: no second int64 copy
        out += [x, labels]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(
            f"{paths['test_images']}: images are {out[2].shape[1:]} but {paths['train_images']} has {out[0].shape[1:]}"
        )
    return tuple(out)


def _transpose_in_place(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, H, W) -> (N, W, H) in the same buffer, a chunk of images at a time (no full-size copy)."""
    n, h, w = x.shape
    flat = x.reshape(n, h * w)  # a view: x is C-contiguous
    for start in range(0, n, chunk):
        flat[start : start + chunk] = x[start : start + chunk].transpose(0, 2, 1).reshape(-1, h * w)
    return flat.reshape(n, w, h)


def load_idx(spec: DatasetSpec, options: LoadOptions) -> RawData:
    """The loader of every data set with `files`: find (or download) the four IDX files, decode, check, cache."""
    paths = _source_paths(spec, options.data_dir, options.download, options.progress)
    key = _files_key(spec, paths)
    arrays = _load_cached(_cache_folder(spec, key)) if key else None
    if arrays is None:
        arrays = _decode(spec, paths)
        if key:
            _save_cached(_cache_folder(spec, key), spec, arrays)
    train_x, train_y, test_x, test_y = arrays
    for y, k in ((train_y, "train_labels"), (test_y, "test_labels")):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
            raise DataError(f"{paths[k]}: labels outside 0..{spec.num_classes - 1}")
    return RawData(train_x, train_y, test_x, test_y, spec.class_names, spec.name)


def load_raw(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    num_synthetic: int = 2048,
    seed: int = 0,
    progress: Progress = False,
) -> RawData:
    """Load data set `name` as uint8 images and int64 labels, with the loader of its registry entry.

    Args:
        data_dir: a folder to search first (see `download.search_dirs`); for mnist it replaces the
            embedded copy when it holds the files.
        download: fetch missing files from the mirrors into the user cache.
        num_synthetic, seed: size (train; test is a quarter) and seed of the `synthetic` data set
            (seed: of any generated set).
        progress: report downloads (True: a tqdm bar on stderr; or a callable(done_bytes, total_bytes)).
    """
    spec = get_dataset_spec(name)
    options = LoadOptions(data_dir=data_dir, download=download, seed=seed, num_synthetic=num_synthetic,
                          progress=progress)
    raw = (spec.loader or load_idx)(spec, options)
    if not isinstance(raw, RawData):
        raise DataError(f"data set {spec.name!r}: its loader returned {type(raw).__name__}, not RawData")
    for part, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        if len(x) != len(y):
            raise DataError(f"data set {spec.name!r}: {len(x)} {part} images but {len(y)} labels")
    return raw


def _file_digest(path: Path, algorithm: str, decompress: bool) -> tuple[str, int]:
    """(hex digest, size) of the file's bytes, or of its decompressed bytes."""
    h = hashlib.new(algorithm)
    size = 0
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def verify_dataset(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path, bool, str]]:
    """Check each file of data set `name` against its known checksum: (key, path, ok, detail) rows.

    The sha256 of the decompressed bytes is used when known (it survives recompression), else the
    md5 of the official .gz; a missing file is a row with ok=False.
    """
    spec = get_dataset_spec(name)
    rows: list[tuple[str, Path, bool, str]] = []
    for key, path in dataset_paths(name, data_dir).items():
        if path is None:
            where = ", ".join(str(d) for d in search_dirs(name, data_dir))
            rows.append((key, Path(spec.files[key]), False, f"missing: not found in {where}"))
            continue
        try:
            gz = _is_gzip(path)
            if key in spec.sha256:
                want, want_size = spec.sha256[key]
                got, size = _file_digest(path, "sha256", decompress=gz)
                ok = got == want and size == want_size
                detail = (
                    f"sha256 ok ({size} bytes decompressed)" if ok
                    else f"sha256 mismatch: expected {want} ({want_size} bytes), got {got} ({size} bytes)"
                )  # fmt: skip
            elif key in spec.md5 and gz:
                want = spec.md5[key]
                got, _ = _file_digest(path, "md5", decompress=False)
                ok = got == want
                detail = "md5 ok" if ok else f"md5 mismatch: expected {want}, got {got}"
            else:
                (read_labels if key.endswith("labels") else read_images)(path)
                ok, detail = True, "no checksum known; IDX structure ok"
        except (OSError, EOFError, DataError) as e:
            ok, detail = False, f"unreadable: {e}"
        rows.append((key, path, ok, detail))
    return rows
