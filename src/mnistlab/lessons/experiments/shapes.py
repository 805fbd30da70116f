"""Where the lectures' 320 comes from: LeNet's shapes layer by layer, and a mismatched head explained.

1x28x28 -> conv 5x5 -> 10x24x24 -> pool 2 -> 10x12x12 -> conv 5x5 -> 20x8x8 -> pool 2 -> 20x4x4,
which flattens to 20 * 4 * 4 = 320 features. A head written as Linear(100, 10) fails; PyTorch says
only which matrices did not multiply, `check_head` says why and what to write instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mnistlab.errors import ConfigError
from mnistlab.models import create_model
from mnistlab.models.summary import check_head, layer_shapes
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, save_figure, train

IN_SHAPE = (1, 28, 28)
BAD_HEAD = (100, 10)  # the mistaken Linear(100, 10)
BATCH = 64


def fmt(shape: tuple[int, ...]) -> str:
    """(10, 24, 24) -> '10x24x24'."""
    return "x".join(map(str, shape))


def shape_chain(model: nn.Module, in_shape: tuple[int, int, int] = IN_SHAPE) -> str:
    """The distinct feature-map shapes from input to the flattened features, e.g. '1x28x28 -> ... = 320'."""
    shapes = [tuple(in_shape)]
    for name, _, shape, _ in layer_shapes(model, in_shape):
        if name.startswith("features") and shape != shapes[-1]:
            shapes.append(shape)
    return " -> ".join(fmt(s) for s in shapes) + f" = {math.prod(shapes[-1])}"


def head_errors(bad_head: tuple[int, int] = BAD_HEAD, batch: int = BATCH) -> tuple[str, str]:
    """(PyTorch's raw message, our explained message) for LeNet with a wrong Linear head."""
    model = create_model("lenet", 10, IN_SHAPE)
    model.head = nn.Linear(*bad_head)
    raw = explained = ""
    try:
        with torch.no_grad():
            model(torch.zeros(batch, *IN_SHAPE))
    except RuntimeError as e:
        raw = str(e).splitlines()[0]
    try:
        check_head(model, IN_SHAPE)
    except ConfigError as e:
        explained = str(e)
    return raw, explained


@register_experiment("shapes", "LeNet's 1x28x28 -> ... -> 20x4x4 = 320 chain, and a Linear(100, 10) head explained")
def run(opts: Options) -> Result:
    """Tabulate LeNet's layer shapes, provoke the head mismatch, and draw a trained LeNet's feature maps."""
    model = create_model("lenet", 10, IN_SHAPE)
    layers = [
        {"layer": name, "output_shape": fmt(shape), "features": math.prod(shape), "params": params, "module": text}
        for name, text, shape, params in layer_shapes(model, IN_SHAPE)
    ]
    chain = shape_chain(model)
    raw, explained = head_errors()
    errors = [
        {"source": f"PyTorch (batch of {BATCH})", "message": raw},
        {"source": "mnistlab check_head", "message": explained},
    ]

    epochs = opts.epochs_for(default=1.0, quick=1.0)
    cfg = make_config(opts, model="lenet", epochs=epochs)
    data = load(opts, cfg)
    trained = train(cfg, data, tensorboard=opts.arm_log("lenet"))
    figures = [_plot_feature_maps(trained.model, data.test.x[:1], int(data.test.y[0]),
                                  opts.out_dir / "shapes_feature_maps.png").name]
    notes = [
        f"shape chain: {chain}",
        "the same table: `mnistlab models --summary lenet`.",
        f"the feature maps come from LeNet trained {epochs:g} epoch(s) with the lectures' SGD "
        f"(test accuracy {100 * trained.history.test.acc:.2f}%).",
    ]
    tables = {"LeNet layer by layer": layers, "shape chain": [{"chain": chain}],
              f"a Linear({BAD_HEAD[0]}, {BAD_HEAD[1]}) head": errors}
    return Result("shapes", "tensor shapes through LeNet", tables, figures, notes, opts.quick, {"lenet": cfg.to_dict()})


def _plot_feature_maps(model: nn.Module, x: torch.Tensor, label: int, path) -> object:
    from matplotlib.figure import Figure

    model.eval()
    maps = [("input", x[0])]
    with torch.no_grad():
        h = x
        for layer in model.features:
            h = layer(h)
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                kind = "conv 5x5" if isinstance(layer, nn.Conv2d) else "max-pool 2"
                maps.append((kind, h[0]))
    cols = max(m.shape[0] for _, m in maps)
    cols = min(cols, 10)
    fig = Figure(figsize=(1.3 * cols, 1.5 * len(maps) + 0.6))
    axes = fig.subplots(len(maps), cols, squeeze=False)
    for r, (kind, m) in enumerate(maps):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < m.shape[0]:
                ax.imshow(m[c].cpu().numpy(), cmap="gray")
            if c == 0:
                ax.set_title(f"{kind}: {fmt(tuple(m.shape))}" + (" (first 10)" if m.shape[0] > cols else ""),
                             fontsize=8, loc="left")
    fig.suptitle(f"LeNet feature maps of a test image (a {label}); each row is one layer's output, channels left to right")
    return save_figure(fig, path)
