"""Train / validation / test splits of label arrays: stratified, seeded, sized by --val-size / --test-size.

Pure NumPy (no torch), so that the NumPy engine and the folder:/csv: loaders can split without
importing the device loader.
"""

from __future__ import annotations

import warnings

import numpy as np

from mnistlab.errors import ConfigError, MnistlabWarning

DEFAULT_HOLDOUT = 0.1  # share of a pool held out (validation, or test of a single-tree data set) by default
MAX_VAL_SIZE = 5000  # the default validation split's cap: MNIST keeps 55,000 / 5,000
MAX_TEST_SIZE = 10_000  # the default test split's cap (folder:/csv: data sets): MNIST's own test size
MIN_TRAIN_IMAGES = 1000  # fewer left to train on gets a warning


def holdout_size(size: float | None, pool: int, cap: int, flag: str) -> int:
    """How many of `pool` items a --val-size or --test-size value holds out.

    `size` is a fraction (0 < f < 1, at least one item), a count (a whole number), 0 for none, or
    None for the default: DEFAULT_HOLDOUT of the pool, at most `cap`. A hold-out that leaves
    nothing to train on is a ConfigError naming the pool size.
    """
    if size is None:
        num = min(cap, max(1, round(DEFAULT_HOLDOUT * pool))) if pool >= 2 else 0
    elif 0 < size < 1:
        num = max(1, round(size * pool))
    else:
        num = int(size)
    if num and num >= pool:  # only an explicit size can: the default leaves at least one
        raise ConfigError(
            f"{flag} {size:g} holds out {num:,} of the {pool:,} images in the pool, leaving none to train on; "
            f"use a smaller {flag} (a fraction such as 0.1, or a count)" + (", or 0" if flag == "--val-size" else "")
        )
    return num


class SplitWarning(MnistlabWarning):
    """A split that will train poorly: very few training images, or validation larger than training."""


def split_train_val(labels: np.ndarray, val_size: float | None, train_size: int | None, seed: int,
                    warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a training pool: `val_size` (see `holdout_size`) held out, stratified,
    then `train_size` of the rest, stratified.

    `--train-size` beyond what is left is a ConfigError naming the pool. With `warn`, one
    SplitWarning when fewer than MIN_TRAIN_IMAGES are left to train on or validation outgrows
    training (not when `train_size` chose the training size on purpose).
    """
    pool = len(labels)
    num_val = holdout_size(val_size, pool, MAX_VAL_SIZE, "--val-size")
    train_idx, val_idx = stratified_split(labels, num_val, seed)
    left = len(train_idx)
    if train_size is not None:
        if train_size > left:
            held = f" minus {num_val:,} held out for validation" if num_val else ""
            raise ConfigError(f"--train-size {train_size:,} is more than the {left:,} images there are to train on "
                              f"(the training pool of {pool:,}{held})")
        train_idx = train_idx[stratified_subset(labels[train_idx], train_size, seed)]
    elif warn and num_val > left:
        warnings.warn(f"validation ({num_val:,} images) is larger than training ({left:,}) in a pool of {pool:,}: "
                      "lower --val-size (e.g. 0.1)", SplitWarning, stacklevel=2)
    elif warn and left < MIN_TRAIN_IMAGES:
        warnings.warn(f"only {left:,} images left to train on (a pool of {pool:,}, {num_val:,} held out for "
                      "validation): expect low accuracy", SplitWarning, stacklevel=2)
    return train_idx, val_idx


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): val has `val_size` items with the class proportions of `labels`."""
    n = len(labels)
    if val_size <= 0:
        return np.arange(n), np.arange(0)
    if val_size >= n:
        raise ConfigError(
            f"--val-size {val_size} leaves no training data (the training split has {n} images); "
            "use a smaller --val-size, or 0"
        )
    val = _stratified_sample(labels, val_size, seed)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def _stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of `size` items drawn per class in proportion to the class counts."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder rounding: per-class quotas that sum exactly to size.
    exact = counts * (size / len(labels))
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[i] += 1
    parts = [rng.choice(np.flatnonzero(labels == cls), size=q, replace=False) for cls, q in zip(classes, quota)]
    return np.sort(np.concatenate(parts))


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a stratified subset of `size` items (for `--train-size`, e.g. the overfit lesson)."""
    if size >= len(labels):
        return np.arange(len(labels))
    return _stratified_sample(labels, size, seed)
