"""Data sets made in code: their registry entries and loaders (`synthetic`, `multimnist`).

Each is one `register_dataset(DatasetSpec(..., loader=...))` call: the loader gets the spec and the
`LoadOptions` that `load_raw` was given and returns a RawData. A new generated set is one more
registration like these (here or in a module of its own imported from data/__init__.py).
"""

from __future__ import annotations

import numpy as np

from mnistlab.data.multimnist import generate as generate_multimnist
from mnistlab.data.raw import RawData
from mnistlab.data.sources import DIGITS, DatasetSpec, LoadOptions, register_dataset
from mnistlab.data.synthetic import synthetic


def load_synthetic(spec: DatasetSpec, options: LoadOptions) -> RawData:
    """`options.num_synthetic` train images and a quarter as many test images, seeded by `options.seed`."""
    train_x, train_y = synthetic(options.num_synthetic, spec.num_classes, seed=options.seed)
    # A seed from another stream, so that test never repeats a train seed.
    test_seed = int(np.random.SeedSequence([options.seed, 1]).generate_state(1)[0])
    test_x, test_y = synthetic(options.num_synthetic // 4, spec.num_classes, seed=test_seed)
    return RawData(train_x, train_y, test_x, test_y, spec.class_names, spec.name)


def load_multimnist(spec: DatasetSpec, options: LoadOptions) -> RawData:
    """60,000 train and 10,000 test canvases composed from MNIST (cached; see data/multimnist.py)."""
    train, test = generate_multimnist(seed=options.seed, download=options.download)
    return RawData(train.x, train.y, test.x, test.y, spec.class_names, spec.name)


register_dataset(
    DatasetSpec(
        name="synthetic",
        class_names=DIGITS,
        description="generated separable toy images with MNIST shapes (no download)",
        license="MIT",
        loader=load_synthetic,
    )
)

register_dataset(
    DatasetSpec(
        name="multimnist",
        class_names=DIGITS,
        description="1-3 MNIST digits side by side on 28x84; label: the set of digits (multi-label)",
        license="CC BY-SA 3.0 (built from MNIST)",
        multilabel=True,
        loader=load_multimnist,
    )
)
