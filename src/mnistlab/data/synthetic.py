"""Small separable toy images with MNIST shapes, for tests, benchmarks and `--dataset synthetic`.

Each class is a fixed pattern of three thick strokes (the same for every seed, so train and test
sets drawn with different seeds share one distribution). A sample is its class pattern, shifted by
up to 2 px, scaled in brightness and covered with noise: a linear model learns it to well over 90%,
yet no two images are identical.
"""

from __future__ import annotations

import functools

import numpy as np

_PATTERN_SEED = 20240229  # fixed: class patterns must not depend on the caller's seed
_MAX_SHIFT = 2  # px


@functools.lru_cache(maxsize=8)
def _patterns(num_classes: int, size: int) -> np.ndarray:
    """(num_classes, size, size) float32 in [0, 1]: three strokes per class inside the central box."""
    rng = np.random.default_rng([_PATTERN_SEED, num_classes, size])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    lo, hi = 0.2 * size, 0.8 * size - 1  # like MNIST, the ink stays in the middle
    out = np.zeros((num_classes, size, size), np.float32)
    width = max(1.0, size / 20)  # stroke half-width, px
    for c in range(num_classes):
        for _ in range(3):
            (y0, x0), (y1, x1) = rng.uniform(lo, hi, size=(2, 2))
            # distance of every pixel to the segment (y0, x0)-(y1, x1)
            dy, dx = y1 - y0, x1 - x0
            t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
            dist = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
            out[c] = np.maximum(out[c], np.clip(width + 0.5 - dist, 0, 1))
    out.setflags(write=False)
    return out


def synthetic(n: int, num_classes: int = 10, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """`n` toy images (uint8, (n, size, size)) and balanced labels (int64, (n,)), deterministic in `seed`."""
    if n < 0 or num_classes < 1 or size < 8:
        raise ValueError(f"synthetic needs n >= 0, num_classes >= 1 and size >= 8, got {n}, {num_classes}, {size}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    s = _MAX_SHIFT
    padded = np.pad(_patterns(num_classes, size), ((0, 0), (s, s), (s, s)))
    # Random shift as a gather from the padded pattern: rows/cols (n, size) index windows.
    offsets = rng.integers(0, 2 * s + 1, size=(n, 2))
    rows = offsets[:, :1] + np.arange(size)  # (n, size)
    cols = offsets[:, 1:] + np.arange(size)  # (n, size)
    x = padded[y[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, size, size)
    x = x * rng.uniform(0.6, 1.0, size=(n, 1, 1)).astype(np.float32)
    x = x + rng.normal(0.0, 0.12, size=x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8), y
