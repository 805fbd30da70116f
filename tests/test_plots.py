"""Every plot function writes a real PNG of reasonable size, atomically, and leaves no figure open."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab.reporting import plots


def _check_png(path, min_side=200):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_side <= w <= 4000 and min_side <= h <= 4000
        # Not a blank canvas: more than one colour.
        assert len(im.convert("L").getcolors(maxcolors=1 << 16) or [0, 0]) > 1
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    assert plt.get_fignums() == []


def _records():
    out = []
    for step in range(0, 200, 10):
        out.append({"kind": "step", "step": step, "epoch": step / 100, "loss": 2.3 / (1 + step / 50),
                    "acc": min(0.99, 0.1 + step / 220), "lr": 1e-3})
        if step and step % 100 == 0:
            out.append({"kind": "epoch", "epoch": step // 100, "step": step, "train_loss": 0.5,
                        "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.78, "time_s": 1.5})
    out.append({"kind": "epoch", "epoch": 2, "step": 200, "train_loss": 0.3, "train_acc": 0.9,
                "val_loss": None, "val_acc": None, "time_s": 1.4})
    out.append({"kind": "test", "test_loss": 0.4, "test_acc": 0.88})
    return out


def test_training_curves(tmp_path):
    path = plots.plot_training_curves(_records(), tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    _check_png(path)


def test_training_curves_from_epoch_records_only(tmp_path):
    records = [r for r in _records() if r["kind"] == "epoch"]
    _check_png(plots.plot_training_curves(records, tmp_path / "sub" / "curves.png"))
    with pytest.raises(ValueError, match="no 'step' or 'epoch'"):
        plots.plot_training_curves([{"kind": "test", "test_acc": 0.5}], tmp_path / "x.png")


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix(tmp_path, normalize):
    cm = torch.tensor([[5, 1, 0], [0, 3, 2], [0, 0, 0]])  # an empty row must not divide by zero
    _check_png(plots.plot_confusion_matrix(cm, ["zero", "one", "two"], tmp_path / "cm.png", normalize))


def test_prediction_grid_and_mistakes(tmp_path, seeded):
    n, k = 20, 10
    images = np.random.randint(0, 256, size=(n, 28, 28), dtype=np.uint8)
    probs = torch.softmax(torch.randn(n, k) * 3, dim=1)
    preds = probs.argmax(1)
    labels = preds.clone()
    labels[::3] = (labels[::3] + 1) % k
    names = [f"c{i}" for i in range(k)]
    _check_png(plots.plot_prediction_grid(images, preds, probs, tmp_path / "grid.png",
                                          labels=labels, class_names=names, title="test set"))
    _check_png(plots.plot_prediction_grid(images[:5], preds[:5], probs.max(1).values, tmp_path / "g5.png"),
               min_side=100)
    rgb = np.random.randint(0, 256, size=(4, 28, 28, 3), dtype=np.uint8)
    _check_png(plots.plot_prediction_grid(rgb, preds[:4], probs[:4], tmp_path / "rgb.png"), min_side=100)
    _check_png(plots.plot_confident_mistakes(images, labels, preds, probs, tmp_path / "mistakes.png",
                                             names, k=4), min_side=100)
    # No mistakes at all still gives a picture rather than an error.
    _check_png(plots.plot_confident_mistakes(images, preds, preds, probs, tmp_path / "none.png", names),
               min_side=50)


def test_series_bars_and_weights(tmp_path):
    xs = np.arange(1, 11)
    _check_png(plots.plot_series(xs, {"sgd": 1 / xs, "adam": 0.5 / xs}, tmp_path / "s.png",
                                 "loss", "epoch", "loss (nats)", logy=True))
    _check_png(plots.plot_bars(["linear", "mlp", "cnn"], [0.92, 0.98, 0.992], tmp_path / "b.png",
                               "test accuracy", "accuracy (fraction)"))
    w = torch.randn(10, 784)
    _check_png(plots.plot_weight_templates(w, tmp_path / "w.png", [str(i) for i in range(10)]))
    _check_png(plots.plot_weight_templates(w.reshape(10, 28, 28).numpy(), tmp_path / "w3.png"))
    with pytest.raises(ValueError, match="square"):
        plots.plot_weight_templates(torch.randn(3, 10), tmp_path / "bad.png")


def test_overwrite_is_atomic_replacement(tmp_path):
    path = tmp_path / "b.png"
    path.write_bytes(b"old")
    plots.plot_bars(["a"], [1.0], path, "t", "y")
    assert path.read_bytes().startswith(b"\x89PNG")
