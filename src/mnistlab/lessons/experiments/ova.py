"""One-vs-all against softmax: K binary logistic classifiers, each "is it a k?", predict the most probable.

Two ways to build one-vs-all: ten separate `logistic --positive k` models trained one after the
other, and the softmax-shaped Linear(784, 10) trained with `loss='bce'` (a sigmoid per class: ten
independent binary classifiers that happen to be trained in the same steps). Softmax regression
couples the ten scores through the normalisation instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mnistlab.data.loader import DataBundle, Split
from mnistlab.evaluation.metrics import confusion_matrix
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, save_figure, train


def one_vs_rest(data: DataBundle, k: int) -> DataBundle:
    """The same images with binary labels: 1 for class `k`, 0 for every other class."""

    def binary(split: Split | None) -> Split | None:
        return None if split is None else Split(split.x, (split.y == k).long())

    names = (f"not {data.class_names[k]}", data.class_names[k])
    return dataclasses.replace(data, train=binary(data.train), val=binary(data.val), test=binary(data.test), class_names=names)


@register_experiment("ova", "one-vs-all (K binary logistic classifiers) against softmax: accuracy, time, confusion")
def run(opts: Options) -> Result:
    """Train softmax regression, joint one-vs-all (bce) and ten separate logistic models on the same data."""
    epochs = opts.epochs_for(default=1.0, quick=2.0)
    data = load(opts, make_config(opts, model="softmax"))
    y = data.test.y.cpu()
    k = data.num_classes
    rows, matrices, configs = [], {}, {}

    for name, loss in (("softmax regression (ce)", "ce"), ("one-vs-all, joint (bce, one sigmoid per class)", "bce")):
        cfg = make_config(opts, model="softmax", loss=loss, epochs=epochs)
        trained = train(cfg, data, tensorboard=opts.arm_log(name))
        logits = trained.history.test.logits
        probs = torch.softmax(logits, 1) if loss == "ce" else torch.sigmoid(logits)
        rows.append(_row(name, 1, loss, probs, y, trained.history.train_seconds))
        matrices[name] = confusion_matrix(probs.argmax(1), y, k)
        configs[name] = cfg.to_dict()

    scores, seconds = [], 0.0
    for c in range(k):
        cfg = make_config(opts, model="logistic", positive=c, epochs=epochs)
        trained = train(cfg, one_vs_rest(data, c), tensorboard=opts.arm_log(f"logistic, {c} vs rest"))
        scores.append(torch.sigmoid(trained.history.test.logits[:, 0]))  # (N,) P(image is a c)
        seconds += trained.history.train_seconds
        configs[f"logistic --positive {c}"] = cfg.to_dict()
    probs = torch.stack(scores, 1)  # K x (N,) -> (N, K)
    name = f"one-vs-all, {k} separate logistic models"
    rows.append(_row(name, k, "bce", probs, y, seconds))
    matrices[name] = confusion_matrix(probs.argmax(1), y, k)

    accs = {r["method"]: r["test_acc"] for r in rows}
    figures = [_plot_confusions(matrices, accs, data.class_names, opts.out_dir / "ova_confusion.png").name,
               _plot_summary(rows, opts.out_dir / "ova_accuracy_time.png").name]
    notes = [
        f"the lectures' SGD (lr 0.01, momentum 0.5, batch 64), {epochs:g} epoch(s) per model; train_s is training "
        "time only (the separate models' times are summed).",
        "one-vs-all predicts the class whose binary classifier is most confident; its probabilities need not sum "
        "to 1 (prob_sum_mean: mean over test images of the sum of the K probabilities).",
    ]
    return Result("ova", "one-vs-all against softmax", {"one-vs-all vs softmax": rows}, figures, notes, opts.quick, configs)


def _row(method: str, models: int, loss: str, probs: torch.Tensor, y: torch.Tensor, seconds: float) -> dict:
    return {
        "method": method, "models": models, "loss": loss, "test_acc": float((probs.argmax(1) == y).float().mean()),
        "prob_sum_mean": float(probs.sum(1).mean()), "train_s": seconds,
    }


def _plot_confusions(matrices: dict[str, torch.Tensor], accs: dict[str, float], names, path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(matrices), 5.5))
    axes = fig.subplots(1, len(matrices))
    im = None
    for ax, (name, cm) in zip(axes, matrices.items()):
        counts = cm.double().numpy()
        rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rows[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{name}\ntest accuracy {100 * accs[name]:.2f}%", fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="fraction of the true class (row-normalised)")
    fig.suptitle("confusion matrices on the test set")
    return save_figure(fig, path)


def _plot_summary(rows: list[dict], path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax_acc, ax_time = fig.subplots(1, 2)
    labels = [r["method"].replace(", ", ",\n", 1) for r in rows]
    for ax, key, ylabel, scale in ((ax_acc, "test_acc", "test accuracy (%)", 100.0), (ax_time, "train_s", "training time (s)", 1.0)):
        values = [scale * r[key] for r in rows]
        bars = ax.bar(range(len(rows)), values, color=[f"C{i}" for i in range(len(rows))], label=labels)
        ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize=8)
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0])
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.suptitle("one-vs-all against softmax")
    return save_figure(fig, path)
