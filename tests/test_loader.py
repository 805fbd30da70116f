"""The device-resident loader: normalisation, splits, class selection, augmentation, Dataset view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab.data.loader import (
    ImageDataset,
    augment_batch,
    build_bundle,
    normalization_stats,
    select_classes,
    to_device_split,
)
from mnistlab.data.splits import stratified_split
from mnistlab.data.synthetic import synthetic
from mnistlab.errors import ConfigError


@pytest.fixture(scope="module")
def arrays():
    x, y = synthetic(600, seed=0)
    tx, ty = synthetic(100, seed=1)
    return x, y, tx, ty


@pytest.mark.parametrize("mode, lo, hi", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0)])
def test_fixed_ranges(arrays, mode, lo, hi):
    x, y, tx, ty = arrays
    mean, std = normalization_stats(x, mode)
    split = to_device_split(x, y, mean, std, "cpu")
    assert split.x.dtype == torch.float32 and split.x.shape == (600, 1, 28, 28)
    assert split.x.min().item() >= lo - 1e-6 and split.x.max().item() <= hi + 1e-6
    assert torch.allclose(split.x[:, 0], torch.from_numpy(x).float() / 255 * (hi - lo) + lo, atol=1e-6)


def test_chunked_copy_matches_one_shot(arrays, monkeypatch):
    import mnistlab.data.loader as loader

    x, y, *_ = arrays
    index = np.random.default_rng(0).permutation(len(x))[:500]
    whole = to_device_split(x, y, (0.1,), (0.3,), "cpu", index=index)
    monkeypatch.setattr(loader, "_CHUNK", 7)
    chunked = to_device_split(x, y, (0.1,), (0.3,), "cpu", index=index)
    assert torch.equal(whole.x, chunked.x) and torch.equal(whole.y, chunked.y)
    assert torch.equal(whole.y, torch.from_numpy(y[index]))


def test_stratified_split_keeps_proportions_and_is_seeded():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    train, val = stratified_split(labels, 100, seed=3)
    assert np.bincount(labels[val]).tolist() == [10, 20, 30, 40]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1000
    assert np.array_equal(val, stratified_split(labels, 100, seed=3)[1])
    assert not np.array_equal(val, stratified_split(labels, 100, seed=4)[1])
    with pytest.raises(ConfigError, match="leaves no training data"):
        stratified_split(labels, 1000, seed=0)


def test_select_classes_and_positive(arrays):
    x, y, *_ = arrays
    names = tuple("0123456789")
    sx, sy, snames = select_classes(x, y, names, (3, 8), None)
    assert snames == ("3", "8") and set(sy.tolist()) == {0, 1} and len(sx) == int(np.isin(y, (3, 8)).sum())
    _, py, pnames = select_classes(x, y, names, None, 7)
    assert pnames == ("not 7", "7") and py.sum() == (y == 7).sum()


def test_augmentation_keeps_shape_dtype_and_background(arrays):
    x, y, tx, ty = arrays
    bundle = build_bundle(x, y, tx, ty, tuple("0123456789"), val_size=0)
    batch = bundle.train.x[:64]
    g = torch.Generator().manual_seed(0)
    out = augment_batch(batch, g, max_shift=2, max_rotate=10, max_scale=0.1)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert not torch.equal(out, batch)
    assert out.min() >= batch.min() - 1e-5  # the border is filled with background, not zeros
    identity = augment_batch(batch, torch.Generator().manual_seed(0), max_shift=0, max_rotate=0, max_scale=0)
    assert torch.allclose(identity, batch, atol=1e-5)


def test_flip_mirrors_about_half_the_images_exactly(arrays):
    x, y, tx, ty = arrays
    batch = build_bundle(x, y, tx, ty, tuple("0123456789"), val_size=0).train.x[:200]
    out = augment_batch(batch, torch.Generator().manual_seed(0), max_shift=0, max_rotate=0, max_scale=0, flip=True)
    mirrored = [torch.allclose(o, b.flip(-1), atol=1e-5) for o, b in zip(out, batch)]
    unchanged = [torch.allclose(o, b, atol=1e-5) for o, b in zip(out, batch)]
    assert all(m or u for m, u in zip(mirrored, unchanged))  # each image is itself or its exact mirror
    assert 60 <= sum(m and not u for m, u in zip(mirrored, unchanged)) <= 140
    # Without flips, the warp is exactly the one of the version before flips existed (same draws,
    # same matrix), so runs of earlier versions reproduce bit for bit.
    import math

    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    r = torch.rand(len(batch), 4, generator=g) * 2 - 1
    angle, scale = r[:, 0] * math.radians(10), 1 + r[:, 3] * 0.1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    tx, ty = r[:, 1] * 2 * 2 / 28, r[:, 2] * 2 * 2 / 28
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    bg = batch.amin()
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    before = F.grid_sample(batch - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
    now = augment_batch(batch, torch.Generator().manual_seed(0), max_shift=2, max_rotate=10, max_scale=0.1)
    assert torch.equal(now, before)


def test_dataset_view_works_with_a_dataloader(arrays):
    x, y, tx, ty = arrays
    bundle = build_bundle(x, y, tx, ty, tuple("0123456789"), val_size=100)
    loader = torch.utils.data.DataLoader(ImageDataset(bundle.train), batch_size=50, shuffle=False)
    xb, yb = next(iter(loader))
    assert xb.shape == (50, 1, 28, 28) and yb.dtype == torch.int64
    assert torch.equal(xb, bundle.train.x[:50]) and len(ImageDataset(bundle.val)) == 100
    flat = bundle.train.flat()
    assert flat.shape == (500, 784) and flat.data_ptr() == bundle.train.x.data_ptr()


def test_pixel_split_batches_equal_the_eagerly_normalised_float_split():
    import numpy as np
    import torch

    from mnistlab.data.loader import Split, to_device_split

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50)
    mean, std = (0.1307,), (0.3081,)
    split = to_device_split(images, labels, mean, std, "cpu", index=np.arange(50)[::-1].copy())
    assert split.pixels.dtype == torch.uint8 and split._x is None  # nothing float built yet
    eager = (torch.from_numpy(images[::-1].copy())[:, None].float().div_(255.0) - mean[0]) / std[0]
    idx = torch.tensor([3, 0, 49, 7])
    x, y = split.take(idx)
    assert torch.equal(x, eager[idx]) and torch.equal(y, torch.from_numpy(labels[::-1].copy())[idx])
    assert torch.equal(split.rows(10, 20)[0], eager[10:20])
    part = split.part(5, 15)
    assert len(part) == 10 and torch.equal(part.take(torch.tensor([0]))[0], eager[5:6])
    assert split.shape == (50, 1, 28, 28) and torch.equal(split.x, eager)  # x: built on first use
    with pytest.raises(ValueError, match="uint8"):
        Split.from_pixels(torch.zeros(2, 1, 3, 3), torch.zeros(2), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="either"):
        Split(None, torch.zeros(2))
