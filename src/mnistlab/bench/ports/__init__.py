"""Ports of the peers' published MNIST recipes, each run as its own process by `mnistlab bench --against`.

Each port is a small module that does what the original script does when a user runs it: its own
imports, its own data handling, its own model, optimiser and loop, written against plain torch (not
mnistlab's trainer). torchvision is not installed here, so the images come from mnistlab's embedded
MNIST as uint8 arrays, and `TorchvisionMNIST` below redoes torchvision's per-item work (a PIL image
per sample, ToTensor, Normalize) where the original had it.

A port is started as `python -m mnistlab.bench.ports.NAME` with its spec as JSON on stdin:
{"seed", "target", "max_epochs", "train_size", "test_size", "out"}; it writes its result as JSON to
"out" (never printing: the parent measures the process around it). The result:
{"curve": [[epoch, training seconds so far, test accuracy], ...], "params": ..., "train_images": ...}.
Training seconds exclude the test evaluations, as time-to-target does for mnistlab.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the constants torchvision's MNIST examples normalise with


def mnist_arrays(train_size: int | None = None, test_size: int | None = None) -> tuple[np.ndarray, ...]:
    """MNIST as uint8 (N, 28, 28) images and int64 labels: (train_x, train_y, test_x, test_y).

    `train_size` / `test_size` keep the first N of each split (for quick checks, not for figures).
    """
    from mnistlab.data.raw import load_raw

    raw = load_raw("mnist", download=False)
    return (raw.train_x[:train_size], raw.train_y[:train_size], raw.test_x[:test_size], raw.test_y[:test_size])


def to_tensor(image: Any) -> torch.Tensor:
    """torchvision's ToTensor for a mode-L PIL image: a (1, H, W) float tensor in [0, 1]."""
    array = np.array(image, np.uint8, copy=True)
    x = torch.from_numpy(array).view(image.size[1], image.size[0], 1).permute(2, 0, 1).contiguous()
    return x.float().div(255)


def normalize(x: torch.Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """torchvision's Normalize on one (C, H, W) tensor (it works on a copy)."""
    return x.clone().sub_(mean).div_(std)


class TorchvisionMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST with transforms.Compose([ToTensor(), Normalize(...)]): the same work per item.

    torchvision keeps the split as a uint8 tensor, turns item i into a PIL image (mode L), and runs the
    transforms on it; the label is a Python int.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: bool = True):
        self.data, self.targets, self.transform = torch.from_numpy(images), torch.from_numpy(labels), transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        image, target = self.data[index], int(self.targets[index])
        image = Image.fromarray(image.numpy(), mode="L")
        return (normalize(to_tensor(image)) if self.transform else image), target


class Clock:
    """Training seconds, summed over the timed stretches (test evaluations stay outside)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "Clock":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def serve(run: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """A port's entry point: the spec from stdin, run it, the result to spec["out"] (atomically)."""
    from mnistlab.fileio import atomic_write_json

    spec = json.loads(sys.stdin.read())
    atomic_write_json(spec["out"], run(spec))
    return 0
