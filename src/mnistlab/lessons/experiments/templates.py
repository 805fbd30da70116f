"""Softmax regression's ten weight vectors drawn as 28x28 images: one "template" per digit.

The logit of class k is the dot product of the image with row k of W, so each row is the pattern
the class responds to: positive (red) where that digit has ink and others do not, negative (blue)
where ink argues against it.
"""

from __future__ import annotations

import torch

from mnistlab.reporting import plots
from mnistlab.evaluation.metrics import confusion_matrix
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, save_figure, train


@register_experiment("templates", "softmax regression's ten weight vectors drawn as 28x28 images")
def run(opts: Options) -> Result:
    """Train softmax regression; draw its weights, and compare each with its class's mean image."""
    epochs = opts.epochs_for(default=2.0, quick=2.0)
    cfg = make_config(opts, model="softmax", epochs=epochs)
    data = load(opts, cfg)
    trained = train(cfg, data, tensorboard=opts.arm_log("softmax regression"))
    weights = trained.model.linear.weight.detach().cpu()  # (K, C*H*W)
    side = data.in_shape[1:]
    x, y = data.train.x.cpu().flatten(1), data.train.y.cpu()  # (N, C, H, W) -> (N, C*H*W)
    cm = confusion_matrix(trained.test_preds, data.test.y.cpu(), data.num_classes)
    recall = cm.diag().double() / cm.sum(1).clamp(min=1).double()
    means = torch.stack([x[y == k].mean(0) for k in range(data.num_classes)])  # (K, C*H*W) class mean images
    rows = []
    for k, name in enumerate(data.class_names):
        rows.append({
            "class": name, "test_acc": float(recall[k]), "weight_min": float(weights[k].min()),
            "weight_max": float(weights[k].max()), "corr_with_class_mean": _corr(weights[k], means[k]),
        })
    figures = [
        plots.plot_weight_templates(weights.reshape(-1, *side), opts.out_dir / "templates.png", data.class_names).name,
        _plot_means(means.reshape(-1, *side), data.class_names, opts.out_dir / "templates_class_means.png").name,
    ]
    notes = [
        f"softmax regression (Linear(784, 10)) trained {epochs:g} epoch(s) with the lectures' SGD; "
        f"test accuracy {100 * trained.history.test.acc:.2f}%.",
        "test_acc per class is its recall; corr_with_class_mean: Pearson correlation between the template and "
        "the mean (normalised) training image of that class.",
    ]
    return Result("templates", "weight templates of softmax regression", {"templates": rows}, figures, notes,
                  opts.quick, {"softmax regression": cfg.to_dict()})


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12))


def _plot_means(means: torch.Tensor, names, path) -> object:
    from matplotlib.figure import Figure

    k = means.shape[0]
    cols = min(k, 5)
    fig = Figure(figsize=(2.0 * cols + 1, 2.1 * ((k + cols - 1) // cols) + 0.4))
    axes = fig.subplots((k + cols - 1) // cols, cols, squeeze=False).ravel()
    im = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < k:
            im = ax.imshow(means[i].numpy(), cmap="gray")
            ax.set_title(str(names[i]), fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="mean pixel value (normalised units)")
    fig.suptitle("mean training image per class, for comparison with the templates")
    return save_figure(fig, path)
