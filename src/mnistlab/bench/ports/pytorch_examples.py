"""pytorch/examples mnist/main.py, its defaults on a CPU, ported.

What the original does, followed here: torchvision MNIST with ToTensor + Normalize((0.1307,), (0.3081,))
per item, through DataLoader(batch 64, shuffle=True) for training and DataLoader(batch 1000) for the
test (no workers on a CPU); Net: conv 32@3x3 -> ReLU -> conv 64@3x3 -> ReLU -> max-pool 2 -> dropout 0.25
-> flatten -> Linear(9216, 128) -> ReLU -> dropout 0.5 -> Linear(128, 10) -> log_softmax; nll_loss;
Adadelta(lr 1.0), StepLR(step_size 1, gamma 0.7) stepped after each epoch; up to 14 epochs, a test after
each; torch.manual_seed(seed) first. It logs loss.item() every 10 batches (kept: it syncs, the print is
dropped). Unlike the original, a run stops after the first epoch whose test accuracy reaches the target
(time to target), or at `max_epochs`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR

from mnistlab.bench.ports import Clock, TorchvisionMNIST, mnist_arrays, num_params, serve

BATCH_SIZE, TEST_BATCH_SIZE, EPOCHS, LR, GAMMA, LOG_INTERVAL = 64, 1000, 14, 1.0, 0.7, 10


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))  # (B, 64, 24, 24)
        x = torch.flatten(self.dropout1(F.max_pool2d(x, 2)), 1)  # (B, 9216)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def train(model: nn.Module, loader: Any, optimizer: optim.Optimizer) -> None:
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % LOG_INTERVAL == 0:
            loss.item()  # the original prints it here


@torch.no_grad()
def test(model: nn.Module, loader: Any) -> float:
    model.eval()
    test_loss = correct = 0
    for data, target in loader:
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction="sum").item()  # the original reports it
        correct += output.argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(spec["seed"])
    train_x, train_y, test_x, test_y = mnist_arrays(spec.get("train_size"), spec.get("test_size"))
    train_loader = torch.utils.data.DataLoader(TorchvisionMNIST(train_x, train_y), batch_size=BATCH_SIZE, shuffle=True)
    test_loader = torch.utils.data.DataLoader(TorchvisionMNIST(test_x, test_y), batch_size=TEST_BATCH_SIZE)
    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=LR)
    scheduler = StepLR(optimizer, step_size=1, gamma=GAMMA)
    curve, clock = [], Clock()
    for epoch in range(1, min(EPOCHS, spec.get("max_epochs") or EPOCHS) + 1):
        with clock:
            train(model, train_loader, optimizer)
        curve.append([epoch, clock.seconds, test(model, test_loader)])
        scheduler.step()
        if curve[-1][2] >= spec["target"]:
            break
    return {"curve": curve, "params": num_params(model), "train_images": len(train_x)}


if __name__ == "__main__":
    raise SystemExit(serve(run))
