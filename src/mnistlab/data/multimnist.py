"""`multimnist`: one to three MNIST digits side by side on a 28x84 canvas; the label is the set of digits.

A real multi-label task built from MNIST. The canvas has three 28-pixel slots; each image draws how
many digits it holds (1, 2 or 3, equally likely), which slots they go to, and for each one an MNIST
digit and a horizontal jitter of up to `JITTER` pixels (neighbours may touch; overlapping pixels
keep the brighter value). Empty slots stay blank. The label is multi-hot over the ten digits: a
digit that appears twice is still one label.

Train images are composed only from the MNIST train split and test images only from the MNIST test
split, each from its own seeded stream, so the two never share a source digit. The result is cached
as .npy files in the user cache, keyed by version, seed and sizes: the second load reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.cache import entry_folder, read_arrays, write_arrays
from mnistlab.data.raw import load_raw
from mnistlab.errors import DataError

VERSION = 1  # bump when the composition changes: it is part of the cache key
HEIGHT, SLOT_WIDTH, NUM_SLOTS = 28, 28, 3
WIDTH = SLOT_WIDTH * NUM_SLOTS  # 84
NUM_CLASSES = 10
JITTER = 3  # largest horizontal shift of a digit inside its slot, in pixels
NUM_TRAIN, NUM_TEST = 60_000, 10_000
_ARRAYS = ("train_x", "train_y", "train_sources", "train_offsets", "test_x", "test_y", "test_sources", "test_offsets")


@dataclass
class Composed:
    """Composed images with their labels and where each digit came from.

    Args:
        sources: (N, 3) index into the MNIST split of the digit in each slot, -1 for an empty slot.
        offsets: (N, 3) left column of each slot's digit on the canvas (0 for an empty slot).
    """

    x: np.ndarray  # (N, 28, 84) uint8
    y: np.ndarray  # (N, 10) uint8 multi-hot
    sources: np.ndarray  # (N, 3) int64
    offsets: np.ndarray  # (N, 3) int64


def compose(images: np.ndarray, labels: np.ndarray, num: int, seed: int, jitter: int = JITTER) -> Composed:
    """`num` canvases of 1-3 digits drawn from `images` (N, 28, 28) with class `labels` (N,)."""
    if images.ndim != 3 or images.shape[1:] != (HEIGHT, SLOT_WIDTH):
        raise DataError(f"multimnist composes 28x28 digits, got images of shape {images.shape}")
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, NUM_SLOTS + 1, size=num)  # digits per image
    # A random slot order per image; the first `count` slots of it are filled.
    order = np.argsort(rng.random((num, NUM_SLOTS)), axis=1)
    filled = np.zeros((num, NUM_SLOTS), dtype=bool)
    np.put_along_axis(filled, order, np.arange(NUM_SLOTS)[None, :] < counts[:, None], axis=1)
    picks = rng.integers(0, len(images), size=(num, NUM_SLOTS))
    shifts = rng.integers(-jitter, jitter + 1, size=(num, NUM_SLOTS))
    sources = np.where(filled, picks, -1).astype(np.int64)
    left = np.clip(np.arange(NUM_SLOTS) * SLOT_WIDTH + shifts, 0, WIDTH - SLOT_WIDTH)
    offsets = np.where(filled, left, 0).astype(np.int64)

    x = np.zeros((num, HEIGHT, WIDTH), dtype=np.uint8)
    y = np.zeros((num, NUM_CLASSES), dtype=np.uint8)
    rows = np.arange(HEIGHT)[None, :, None]  # (1, 28, 1)
    # A block of canvases at a time: the gathers below make temporaries the size of their block,
    # which for all 60,000 at once would be about as large as x itself.
    for start in range(0, num, _BLOCK):
        block = slice(start, min(num, start + _BLOCK))
        for slot in range(NUM_SLOTS):
            idx = start + np.flatnonzero(filled[block, slot])
            cols = offsets[idx, slot][:, None, None] + np.arange(SLOT_WIDTH)[None, None, :]  # (n, 1, 28)
            img = idx[:, None, None]
            # Jittered neighbours may overlap by a few columns: keep the brighter pixel (ink over paper).
            x[img, rows, cols] = np.maximum(x[img, rows, cols], images[sources[idx, slot]])
            y[idx, labels[sources[idx, slot]]] = 1
    return Composed(x, y, sources, offsets)


_BLOCK = 4096  # canvases composed per step in `compose`


def _split_seed(seed: int, split: int) -> int:
    # Independent streams for train and test, so that test never repeats a train draw.
    return int(np.random.SeedSequence([seed, 0x4D4D, split]).generate_state(1)[0])


def cache_folder(seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> Path:
    """Where the composed arrays for this version, seed and sizes are cached."""
    return entry_folder("generated", f"multimnist-v{VERSION}-seed{seed}-{num_train}-{num_test}")


def _load_cached(folder: Path, num_train: int, num_test: int) -> tuple[Composed, Composed] | None:
    cached = read_arrays(folder, _ARRAYS)
    if cached is None:
        return None  # absent, unreadable or corrupt: compose again
    arrays = [cached[0][name] for name in _ARRAYS]
    train, test = Composed(*arrays[:4]), Composed(*arrays[4:])
    for part, n in ((train, num_train), (test, num_test)):
        if (part.x.shape != (n, HEIGHT, WIDTH) or part.x.dtype != np.uint8 or part.y.shape != (n, NUM_CLASSES)
                or part.sources.shape != (n, NUM_SLOTS) or part.offsets.shape != (n, NUM_SLOTS)):
            return None
    return train, test


def _save_cached(folder: Path, train: Composed, test: Composed, seed: int) -> None:
    arrays = (train.x, train.y, train.sources, train.offsets, test.x, test.y, test.sources, test.offsets)
    meta = {"version": VERSION, "seed": seed, "num_train": len(train.x), "num_test": len(test.x)}
    write_arrays(folder, dict(zip(_ARRAYS, arrays)), meta)  # a read-only or full disk must not break loading


def generate(seed: int = 0, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST,
             download: bool = True, use_cache: bool = True) -> tuple[Composed, Composed]:
    """(train, test) composed from the MNIST train and test splits respectively; cached after the first call."""
    folder = cache_folder(seed, num_train, num_test)
    cached = _load_cached(folder, num_train, num_test) if use_cache else None
    if cached is not None:
        return cached
    mnist = load_raw("mnist", download=download)
    train = compose(mnist.train_x, mnist.train_y, num_train, _split_seed(seed, 0))
    test = compose(mnist.test_x, mnist.test_y, num_test, _split_seed(seed, 1))
    if use_cache:
        _save_cached(folder, train, test, seed)
    return train, test
