"""The lectures' 9-layer MLP trained by the lectures' own kind of loop, outside mnistlab's trainer.

    python benchmarks/lecture_deep_mlp.py --seeds 0,1        # 9 epochs each, test accuracy per epoch

Why: `mnistlab experiment depth` gets 92-96% from the 9-layer net where the lectures report 11%.
This script removes mnistlab from the picture: plain torch.optim.SGD(lr 0.01, momentum 0.5), a
DataLoader over per-item ToTensor + Normalize((0.1307,), (0.3081,)) samples (batch 64, shuffled),
nn.Sequential of Linear + ReLU with PyTorch's default init (784-650-530-420-350-290-200-150-80-10),
cross entropy, 9 epochs, one thread. If this loop also leaves the plateau (11.35%: "1" for every
image), the lectures' 11% is where their run happened to be after 9 epochs, not a different method.
Only the MNIST arrays come from mnistlab (its embedded copy).
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = (784, 650, 530, 420, 350, 290, 200, 150, 80, 10)


def lecture_mlp() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU after the last layer: logits


def run(seed: int, epochs: int, train_size: int | None = None) -> list[float]:
    """Test accuracy after each epoch (printed as it goes)."""
    from mnistlab.bench import ClassicDataset
    from mnistlab.data.raw import load_raw

    torch.manual_seed(seed)
    raw = load_raw("mnist")
    n = train_size or len(raw.train_y)
    model = lecture_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    train = torch.utils.data.DataLoader(ClassicDataset(raw.train_x[:n], raw.train_y[:n], 0.1307, 0.3081),
                                        batch_size=64, shuffle=True)
    test = torch.utils.data.DataLoader(ClassicDataset(raw.test_x, raw.test_y, 0.1307, 0.3081), batch_size=1000)
    accs = []
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for x, y in test:
                out = model(x)
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
        accs.append(correct / len(raw.test_y))
        print(f"seed {seed} epoch {epoch}: test loss {loss / len(raw.test_y):.4f} acc {100 * accs[-1]:.2f}%", flush=True)
    return accs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=9, help="epochs per seed (default: 9, the lectures')")
    p.add_argument("--train-size", type=int, default=None, help="the first N training images (a quick check)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        run(seed, args.epochs, args.train_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
