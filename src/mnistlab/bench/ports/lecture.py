"""The lectures' LeNet loop: the classic loop of mnistlab.bench at the `lecture` preset's settings.

torchvision MNIST with ToTensor + Normalize((0.1307,), (0.3081,)) per item through DataLoader(batch 64,
shuffle=True) (test: batch 1000); the lectures' LeNet (conv 10@5x5, max-pool, ReLU, conv 20@5x5,
max-pool, ReLU, Linear(320, 10)); cross-entropy; SGD(lr 0.01, momentum 0.5) at a constant rate; the
lectures' loop (move the batch, zero_grad, forward, loss, backward, step), a test after each epoch;
up to 9 epochs, stopping after the first epoch whose test accuracy reaches the target.
"""

from __future__ import annotations

from typing import Any

import torch

from mnistlab.bench import classic_test, classic_train
from mnistlab.bench.ports import TorchvisionMNIST, mnist_arrays, num_params, serve
from mnistlab.config import PRESETS
from mnistlab.models.cnn import lenet

EPOCHS, TEST_BATCH_SIZE = 9, 1000


def run(spec: dict[str, Any]) -> dict[str, Any]:
    settings = PRESETS["lecture"]
    torch.manual_seed(spec["seed"])
    train_x, train_y, test_x, test_y = mnist_arrays(spec.get("train_size"), spec.get("test_size"))
    train_loader = torch.utils.data.DataLoader(TorchvisionMNIST(train_x, train_y), batch_size=settings["batch_size"],
                                               shuffle=True)
    test_loader = torch.utils.data.DataLoader(TorchvisionMNIST(test_x, test_y), batch_size=TEST_BATCH_SIZE)
    model = lenet(10, (1, 28, 28))
    optimizer = torch.optim.SGD(model.parameters(), lr=settings["lr"], momentum=settings["momentum"])
    curve: list[list[float]] = []
    seconds = 0.0
    for epoch in range(1, min(EPOCHS, spec.get("max_epochs") or EPOCHS) + 1):
        seconds += classic_train(model, optimizer, lambda _: train_loader, 1, lambda _: settings["lr"])
        curve.append([epoch, seconds, classic_test(model, test_loader)])
        if curve[-1][2] >= spec["target"]:
            break
    return {"curve": curve, "params": num_params(model), "train_images": len(train_x)}


if __name__ == "__main__":
    raise SystemExit(serve(run))
