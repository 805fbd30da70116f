"""Device-resident data: each split is one tensor, batched by slicing a permutation.

The classic loop (a DataLoader over per-sample tensors with ToTensor + Normalize) spends more time
on data than on a small model. Here a whole split lives on the device as one tensor and a batch is
`x[perm[i:i+B]]`: one gather, no Python per sample. The loaded data sets keep their uint8 pixels
there and normalise each batch as it is taken (a quarter of the memory of float32 images, and the
same float values: the same operations in the same order); a float split is built only for code
that asks for all of `Split.x`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.data.sources import path_kind_loader
from mnistlab.data.splits import split_train_val
from mnistlab.data.splits import stratified_split  # noqa: F401  re-exported: lessons/tabular.py imports it from here
from mnistlab.errors import ConfigError

NORMALIZATIONS = ("standard", "unit", "symmetric")


class Split:
    """One split on the device: images (N, C, H, W) and labels (N,) int64.

    `Split(x, y)` holds float32 images, already normalised. `Split.from_pixels(pixels, y, mean, std)`
    holds uint8 (N, C, H, W) pixels and normalises what `take` and `rows` return, batch by batch;
    its `x` is the whole split normalised, made on first use and kept.
    """

    def __init__(self, x: torch.Tensor | None, y: torch.Tensor, pixels: torch.Tensor | None = None,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = ()):
        if (x is None) == (pixels is None):
            raise ValueError("a Split holds either float images (x) or uint8 pixels, not both or neither")
        self._x, self.y, self.pixels = x, y, pixels
        self.mean, self.std = tuple(mean), tuple(std)
        if pixels is not None:
            if pixels.dtype != torch.uint8 or pixels.dim() != 4 or not len(self.mean) == pixels.shape[1] == len(self.std):
                raise ValueError("pixels must be uint8 (N, C, H, W) with one mean and std per channel")
            self._m = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
            self._s = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)

    @classmethod
    def from_pixels(cls, pixels: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> "Split":
        return cls(None, y, pixels=pixels, mean=mean, std=std)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().div_(255.0).sub_(self._m).div_(self._s)

    @property
    def x(self) -> torch.Tensor:
        """All images, float32 and normalised (built once from the pixels, chunk by chunk, when needed)."""
        if self._x is None:
            x = torch.empty(self.pixels.shape, dtype=torch.float32, device=self.pixels.device)
            for start in range(0, len(x), _CHUNK):
                x[start : start + _CHUNK] = self._normalise(self.pixels[start : start + _CHUNK])
            self._x = x
        return self._x

    @property
    def device(self) -> torch.device:
        return (self._x if self._x is not None else self.pixels).device

    @property
    def shape(self) -> torch.Size:
        """(N, C, H, W) of the images, without building them."""
        return (self._x if self._x is not None else self.pixels).shape

    def take(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) at the indices (or slice) `idx`, normalised."""
        if self._x is not None:
            return self._x[idx], self.y[idx]
        return self._normalise(self.pixels[idx]), self.y[idx]

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of rows start..stop, normalised (views of a float split)."""
        return self.take(slice(start, stop))

    def part(self, start: int, stop: int) -> "Split":
        """Rows start..stop as a Split of the same kind (views, no copy)."""
        if self._x is not None:
            return Split(self._x[start:stop], self.y[start:stop])
        return Split.from_pixels(self.pixels[start:stop], self.y[start:stop], self.mean, self.std)

    def __len__(self) -> int:
        return self.y.shape[0]

    def __repr__(self) -> str:
        kind = "float" if self._x is not None else "uint8 pixels"
        return f"Split({len(self)} images {tuple(self.shape[1:])}, {kind}, on {self.device})"

    def flat(self) -> torch.Tensor:
        """The images as (N, C*H*W) rows: a view, for code that wants flat vectors (models flatten themselves)."""
        return self.x.flatten(1)


@dataclass
class DataBundle:
    """Train / validation / test splits plus what a model and a report need to know about them."""

    train: Split
    val: Split | None
    test: Split
    class_names: tuple[str, ...]
    in_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    test_images: np.ndarray | None = field(default=None, repr=False)  # raw uint8, for figures

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def to_nchw(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        return images.transpose(0, 3, 1, 2)
    raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, C), got {images.shape}")


def normalization_stats(images: np.ndarray, mode: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units that map the images to the requested range.

    `images` are uint8 (N, H, W) or (N, H, W, C) as stored, or float (N, C, H, W) already in [0, 1]
    (what the estimator fits on).
    """
    if mode not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {mode!r} (choose from {', '.join(NORMALIZATIONS)})")
    as_stored = images.dtype == np.uint8
    channels = to_nchw(images[:1]).shape[1] if as_stored else images.shape[1]
    if mode == "unit":
        return (0.0,) * channels, (1.0,) * channels
    if mode == "symmetric":  # [-1, 1], as seed lecture 002 does with Normalize((0.5,), (0.5,))
        return (0.5,) * channels, (0.5,) * channels
    # Mean and std of the training images, per channel, computed in float64 on a strided sample
    # of at most 10,000 images (the result agrees with the full set to 4 decimals).
    sample = images[:: max(1, len(images) // 10000)]
    if as_stored:  # from a histogram of the 256 pixel values: exact in float64, and no float copy of the sample
        values = np.arange(256, dtype=np.float64) / 255.0
        hist = np.stack([_histogram(np.ascontiguousarray(c).ravel()) for c in to_nchw(sample).swapaxes(0, 1)])
        count = hist.sum(axis=1)
        mean = hist @ values / count
        std = np.sqrt((hist * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / count)
    else:
        sample = sample.astype(np.float64)
        mean = sample.mean(axis=(0, 2, 3))
        std = sample.std(axis=(0, 2, 3))
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _histogram(pixels: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Counts of the 256 values of uint8 `pixels`, a million at a time: bincount widens its input to
    int64, and one 8 MB buffer reused beats a 60 MB one touched once (page faults cost 0.5 s here)."""
    hist = np.zeros(256, dtype=np.int64)
    for start in range(0, len(pixels), chunk):
        hist += np.bincount(pixels[start : start + chunk], minlength=256)
    return hist


def to_device_split(
    images: np.ndarray,
    labels: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str,
    index: np.ndarray | None = None,
) -> Split:
    """uint8 images (optionally `images[index]`) on the device, normalised as batches are taken.

    The pixels stay uint8 (N, C, H, W), a quarter of float32's memory (188 MB less for MNIST's
    training split); `Split` normalises each batch with the same operations the float split used
    to be built with, so every value is the same.
    """
    if index is not None and len(index) == len(images) and np.array_equal(index, np.arange(len(images))):
        index = None  # every image in order: no copy (a memory-mapped cache stays mapped)
    part = images if index is None else images[index]
    pixels = torch.from_numpy(np.ascontiguousarray(to_nchw(part))).to(device)
    y = np.asarray(labels if index is None else labels[index], dtype=np.int64)
    return Split.from_pixels(pixels, torch.from_numpy(y).to(device), mean, std)


_CHUNK = 8192  # images per step when a pixel split builds its float images (Split.x)


def select_classes(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], classes: tuple[int, ...] | None, positive: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Restrict to a subset of classes (relabelled 0..k-1) or make one class positive against the rest."""
    if classes:
        bad = [c for c in classes if not 0 <= c < len(class_names)]
        if bad:
            raise ConfigError(f"--classes {bad} out of range: this data set has classes 0-{len(class_names) - 1}")
        keep = np.isin(labels, classes)
        remap = np.full(len(class_names), -1, dtype=np.int64)
        remap[list(classes)] = np.arange(len(classes))
        return images[keep], remap[labels[keep]], tuple(class_names[c] for c in classes)
    if positive is not None:
        if not 0 <= positive < len(class_names):
            raise ConfigError(f"--positive {positive} out of range: classes are 0-{len(class_names) - 1}")
        return images, (labels == positive).astype(np.int64), (f"not {class_names[positive]}", class_names[positive])
    return images, labels, class_names


def iterate_batches(
    split: Split,
    batch_size: int,
    perm: torch.Tensor | None = None,
    start: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches in `perm` order (or in order), starting at batch number `start`."""
    n = len(split)
    stop = (n // batch_size) * batch_size if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        yield split.rows(i, i + batch_size) if perm is None else split.take(perm[i : i + batch_size])


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device | str) -> torch.Tensor:
    """The shuffling order of epoch `epoch`: a pure function of (seed, epoch), so resuming needs no RNG state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, max_shift: float = 2.0, max_rotate: float = 0.0, max_scale: float = 0.0,
    flip: bool = False, rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random shifts (pixels), rotations (degrees), scalings and (if `flip`) left-right mirroring of
    half the images, as one affine warp for the whole batch.

    Flip only data whose classes survive mirroring (clothes): a mirrored digit is a different
    character. `x` must be normalised so that the background is its minimum value, which is what
    the warp fills the border with. `rows` (first, total): `x` is rows first.. of a batch of `total`
    (a data-parallel rank's share): the whole batch's numbers are drawn and this share's used.
    """
    b, _, h, w = x.shape
    first, total = rows or (0, b)
    # Draw on the CPU generator so that results do not depend on the device.
    r = (torch.rand(total, 4, generator=generator) * 2 - 1)[first : first + b]
    angle = r[:, 0] * math.radians(max_rotate)
    scale = 1 + r[:, 3] * max_scale
    tx = r[:, 1] * max_shift * 2 / w  # affine_grid works in [-1, 1] coordinates
    ty = r[:, 2] * max_shift * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # A mirror negates the x column of the sampling matrix (drawn only when asked, so that runs
    # without flips keep their random stream).
    mirror = 1 - 2 * (torch.rand(total, generator=generator)[first : first + b] < 0.5).float() if flip else torch.ones(b)
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1), torch.stack([sin * mirror, cos, ty], 1)], 1)
    theta = theta.to(x.device, x.dtype)
    background = x.amin()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with zeros; shift so the background is zero, warp, shift back.
    return F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background


class ImageDataset(torch.utils.data.Dataset):
    """A `torch.utils.data.Dataset` view of a split for DataLoader interop: (image (C,H,W) float, label)."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.split.x[i], int(self.split.y[i])


def build_bundle(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    class_names: tuple[str, ...],
    *,
    name: str = "",
    val_size: float | None = None,
    normalize: str = "standard",
    device: torch.device | str = "cpu",
    seed: int = 0,
    classes: tuple[int, ...] | None = None,
    positive: int | None = None,
    train_size: int | None = None,
    warn: bool = True,
) -> DataBundle:
    """Select classes, carve a stratified validation split, normalise once and move to the device.

    Args:
        val_size, train_size: see `split_train_val` (None: 10% of the training pool, at most 5,000).
        warn: warn about a split that will train poorly (off when only evaluating).
    """
    train_x, train_y, names = select_classes(train_x, np.asarray(train_y), class_names, classes, positive)
    test_x, test_y, _ = select_classes(test_x, np.asarray(test_y), class_names, classes, positive)
    strat = train_y if train_y.ndim == 1 else train_y.argmax(1)  # multi-hot labels: stratify by first label
    train_idx, val_idx = split_train_val(strat, val_size, train_size, seed, warn=warn)
    # The statistics need only a strided sample: avoid copying the whole training split for them.
    mean, std = normalization_stats(train_x[train_idx[:: max(1, len(train_idx) // 10000)]], normalize)
    train = to_device_split(train_x, train_y, mean, std, device, index=train_idx)
    val = to_device_split(train_x, train_y, mean, std, device, index=val_idx) if len(val_idx) else None
    test = to_device_split(test_x, test_y, mean, std, device)
    in_shape = tuple(train.shape[1:])
    return DataBundle(train, val, test, tuple(names), in_shape, mean, std, name=name, test_images=test_x)


def load_any(name: str, *, data_dir: str | None = None, download: bool = True, image_size: int = 28,
             channels: int | None = None, test_size: float | None = None, seed: int = 0):
    """RawData of a registered data set, or of a folder:PATH / csv:PATH one."""
    path_loader = path_kind_loader(name)
    if path_loader is not None:
        return path_loader(name, image_size=image_size, channels=channels, test_size=test_size, seed=seed)
    from mnistlab.data.raw import load_raw

    return load_raw(name, data_dir=data_dir, download=download)


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | None = None,
    download: bool = True,
    val_size: float | None = None,
    normalize: str = "standard",
    device: torch.device | str = "auto",
    seed: int = 0,
    classes: tuple[int, ...] | None = None,
    positive: int | None = None,
    train_size: int | None = None,
    image_size: int = 28,
    channels: int | None = None,
    test_size: float | None = None,
) -> DataBundle:
    """Load a registered data set (or folder:PATH / csv:PATH) as device-resident, normalised splits.

    Args:
        device: 'auto' (the default, as in Config) picks CUDA, then MPS, then the CPU.
        val_size, train_size: see `split_train_val` (None: 10% of the training pool, at most 5,000).
        image_size, channels, test_size: for folder:/csv: data sets only (see data/custom.py; test_size
            None: 10% of the images, at most 10,000).
    """
    from mnistlab.device import resolve_device  # the one meaning of 'auto', shared with Config and the trainer

    device = resolve_device(device)
    raw = load_any(name, data_dir=data_dir, download=download, image_size=image_size, channels=channels,
                   test_size=test_size, seed=seed)
    return build_bundle(
        raw.train_x, raw.train_y, raw.test_x, raw.test_y, raw.class_names, name=name, val_size=val_size,
        normalize=normalize, device=device, seed=seed, classes=classes, positive=positive, train_size=train_size,
    )
