"""Convolution and pooling, worked by hand next to PyTorch, then what a trained LeNet's filters see.

A 2-D convolution (as deep-learning libraries define it: a cross-correlation, the kernel not
flipped) slides a k x k kernel over the padded input with stride s; each output is the sum of the
elementwise product. An n x n input gives floor((n + 2p - k) / s) + 1 outputs per side: "valid"
padding is p = 0, "same" padding (stride 1, odd k) is p = (k - 1) / 2, which keeps n.

Max pooling commutes with ReLU: ReLU is monotone non-decreasing, so the largest of the rectified
values is the rectified largest value, max(relu(a), relu(b)) = relu(max(a, b)). That is why LeNet
may pool before its ReLU (4x fewer ReLUs) without changing a single output. Average pooling does
not commute: avg(relu(-1), relu(3)) = 1.5 but relu(avg(-1, 3)) = 1.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.reporting import plots
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import (LECTURE_TABLE, Options, Result, lecture_row, load, make_config, pct,
                                                 train)

# A small worked example: a 5x5 binary image and a 3x3 "X" kernel (valid padding, stride 1).
EXAMPLE_INPUT = ((1, 1, 1, 0, 0), (0, 1, 1, 1, 0), (0, 0, 1, 1, 1), (0, 0, 1, 1, 0), (0, 1, 1, 0, 0))
EXAMPLE_KERNEL = ((1, 0, 1), (0, 1, 0), (1, 0, 1))
EXAMPLE_OUTPUT = ((4, 3, 4), (2, 4, 3), (2, 3, 4))  # worked by hand
# The lecture's pooling example: 2x2 windows, stride 2.
POOL_INPUT = ((1, 1, 2, 4), (5, 6, 7, 8), (3, 2, 1, 0), (1, 2, 3, 4))
LECTURE_MAX_POOL = ((6, 8), (3, 4))
# The output-size grid checked against PyTorch.
GRID_N = range(1, 33)
GRID_K = (1, 2, 3, 5, 7)
GRID_P = (0, 1, 2, 3)
GRID_S = (1, 2, 3, 4)
RANDOM_TRIALS = 200
LENET_EPOCHS = 9  # the lectures' LeNet: SGD lr 0.01 momentum 0.5, batch 64, 9 epochs
LENET_SETTING = "LeNet, SGD lr 0.01 momentum 0.5, batch 64, 9 epochs"


def conv2d_by_hand(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """One-channel 2-D convolution (cross-correlation) of an (H, W) image with a (k, k) kernel, by loops."""
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    k = w.shape[0]
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = torch.zeros(out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[i * stride : i * stride + k, j * stride : j * stride + k]
            out[i, j] = (window * w).sum()
    return out


def pool_by_hand(x: torch.Tensor, size: int = 2, stride: int = 2, how: str = "max") -> torch.Tensor:
    """Max or average pooling of an (H, W) map over size x size windows, by loops."""
    out_h, out_w = (x.shape[0] - size) // stride + 1, (x.shape[1] - size) // stride + 1
    out = torch.zeros(out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[i * stride : i * stride + size, j * stride : j * stride + size]
            out[i, j] = window.max() if how == "max" else window.mean()
    return out


def output_size(n: int, k: int, p: int = 0, s: int = 1) -> int:
    """floor((n + 2p - k) / s) + 1: the output side of a k x k convolution or pooling window."""
    return (n + 2 * p - k) // s + 1


def output_size_grid() -> tuple[int, list[tuple[int, int, int, int, int, int]]]:
    """(cases checked, mismatches as (n, k, p, s, formula, pytorch)) over the grid; F.conv2d is the oracle."""
    checked, wrong = 0, []
    for n, k, p, s in itertools.product(GRID_N, GRID_K, GRID_P, GRID_S):
        if n + 2 * p < k or p > k // 2:  # PyTorch needs the kernel to fit and the padding at most half the kernel
            continue
        real = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p).shape[-1]
        checked += 1
        if real != output_size(n, k, p, s):
            wrong.append((n, k, p, s, output_size(n, k, p, s), real))
    return checked, wrong


def max_pool_commutes_with_relu(trials: int = RANDOM_TRIALS, seed: int = 0) -> tuple[float, float]:
    """(largest |MaxPool(ReLU(x)) - ReLU(MaxPool(x))|, the same for average pooling) over random tensors."""
    g = torch.Generator().manual_seed(seed)
    worst_max = worst_avg = 0.0
    for _ in range(trials):
        x = torch.randn(4, 3, 12, 12, generator=g)
        worst_max = max(worst_max, float((F.max_pool2d(F.relu(x), 2) - F.relu(F.max_pool2d(x, 2))).abs().max()))
        worst_avg = max(worst_avg, float((F.avg_pool2d(F.relu(x), 2) - F.relu(F.avg_pool2d(x, 2))).abs().max()))
    return worst_max, worst_avg


def conv_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of each Conv2d of `model` for the batch `x`, in order (before pooling and ReLU)."""
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outputs


def _rows(t: torch.Tensor) -> list:
    return [[int(v) if float(v).is_integer() else round(float(v), 4) for v in row] for row in t]


@register_experiment("convolution", "convolution by hand vs F.conv2d, output sizes, pooling, LeNet's filters and maps")
def run(opts: Options) -> Result:
    """Worked examples of convolution and pooling checked against PyTorch, then a trained LeNet's filters."""
    x = torch.tensor(EXAMPLE_INPUT, dtype=torch.float32)
    w = torch.tensor(EXAMPLE_KERNEL, dtype=torch.float32)
    conv_rows = []
    for name, stride, padding in (("valid, stride 1", 1, 0), ("same, stride 1", 1, 1), ("valid, stride 2", 2, 0)):
        mine = conv2d_by_hand(x, w, stride, padding)
        theirs = F.conv2d(x[None, None], w[None, None], stride=stride, padding=padding)[0, 0]
        conv_rows.append({"padding, stride": name, "output_size": output_size(5, 3, padding, stride),
                          "by_hand": _rows(mine), "F.conv2d": _rows(theirs), "equal": bool(torch.equal(mine, theirs))})

    checked, wrong = output_size_grid()
    size_rows = [
        {"case": case, "n": n, "k": k, "p": p, "s": s, "formula": output_size(n, k, p, s),
         "pytorch": F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p).shape[-1]}
        for case, n, k, p, s in (("valid", 28, 5, 0, 1), ("same", 28, 5, 2, 1), ("same", 28, 3, 1, 1),
                                 ("stride 2", 28, 3, 1, 2), ("stride 2, valid", 28, 5, 0, 2), ("stride 3", 32, 5, 0, 3),
                                 ("LeNet conv2", 12, 5, 0, 1), ("pool 2", 24, 2, 0, 2))
    ]
    same = F.conv2d(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 5, 5), padding="same").shape[-1]

    px = torch.tensor(POOL_INPUT, dtype=torch.float32)
    pool_rows = [
        {"pooling": "max 2x2, stride 2", "by_hand": _rows(pool_by_hand(px, how="max")),
         "PyTorch": _rows(F.max_pool2d(px[None, None], 2)[0, 0]), "lecture": [list(r) for r in LECTURE_MAX_POOL]},
        {"pooling": "average 2x2, stride 2", "by_hand": _rows(pool_by_hand(px, how="avg")),
         "PyTorch": _rows(F.avg_pool2d(px[None, None], 2)[0, 0]), "lecture": "-"},
    ]
    worst_max, worst_avg = max_pool_commutes_with_relu(seed=opts.seed)
    commute_rows = [
        {"identity": "MaxPool(ReLU(x)) = ReLU(MaxPool(x))", "random_tensors": RANDOM_TRIALS,
         "largest_difference": worst_max, "holds": worst_max == 0.0},
        {"identity": "AvgPool(ReLU(x)) = ReLU(AvgPool(x))", "random_tensors": RANDOM_TRIALS,
         "largest_difference": worst_avg, "holds": worst_avg == 0.0},
    ]

    epochs = opts.epochs_for(default=float(LENET_EPOCHS), quick=3.0)
    cfg = make_config(opts, model="lenet", epochs=epochs)
    data = load(opts, cfg)
    trained = train(cfg, data, tensorboard=opts.arm_log("lenet"))
    digit, label = data.test.x[:1], int(data.test.y[0])
    conv1, conv2 = conv_outputs(trained.model, digit)
    convs = [m for m in trained.model.modules() if isinstance(m, nn.Conv2d)]
    out = opts.out_dir
    figures = [
        plots.plot_map_grid(convs[0].weight.detach()[:, 0], out / "convolution_conv1_filters.png",
                            "LeNet conv1: the 10 learned 5x5 filters", symmetric=True, label="weight").name,
        plots.plot_map_grid(digit[0].cpu(), out / "convolution_digit.png", f"the test digit (a {label})",
                            label="input (normalised units)", cell_titles=["input"]).name,
        plots.plot_map_grid(conv1[0].cpu(), out / "convolution_conv1_maps.png",
                            f"conv1 feature maps of the test digit: {conv1.shape[1]} maps of {conv1.shape[2]}x{conv1.shape[3]}",
                            label="conv1 output").name,
        plots.plot_map_grid(conv2[0].cpu(), out / "convolution_conv2_maps.png",
                            f"conv2 feature maps of the test digit: {conv2.shape[1]} maps of {conv2.shape[2]}x{conv2.shape[3]}",
                            label="conv2 output").name,
    ]
    lenet_rows = [{"layer": "conv1", "filters": tuple(convs[0].weight.shape), "feature_maps": tuple(conv1.shape[1:])},
                  {"layer": "conv2", "filters": tuple(convs[1].weight.shape), "feature_maps": tuple(conv2.shape[1:])}]
    max_pool = _rows(F.max_pool2d(px[None, None], 2)[0, 0])
    claims = [
        lecture_row("max-pool 2x2 / 2 of the 4x4 example", str([list(r) for r in LECTURE_MAX_POOL]), "lecture's figure",
                    str(max_pool), "F.max_pool2d and by hand"),
        lecture_row("output side", "floor((n + 2p - k) / s) + 1", "formula", f"{checked} cases, {len(wrong)} wrong",
                    "against F.conv2d"),
        lecture_row("MaxPool(ReLU(x)) = ReLU(MaxPool(x))", "equal", "claim",
                    f"largest difference {worst_max:g}", f"{RANDOM_TRIALS} random tensors"),
        lecture_row("LeNet test accuracy", "98.0% after 3 epochs (the lectures' loop, measured: PERF-NOTES)",
                    LENET_SETTING, pct(trained.history.test.acc),
                    f"same, {epochs:g} epochs, {trained.history.train_seconds:.0f} s of training"),
    ]
    notes = [
        "convolution here is cross-correlation, as in PyTorch: the kernel is not flipped (this kernel is symmetric anyway).",
        f"output sizes: floor((n + 2p - k) / s) + 1 checked against F.conv2d on {checked} (n, k, p, s) cases "
        f"(n 1-32, k {GRID_K}, p {GRID_P}, s {GRID_S}): {len(wrong)} differ. padding='same' keeps 28 -> {same}.",
        "max pooling commutes with ReLU because ReLU is monotone non-decreasing: max(relu(a), relu(b)) = "
        "relu(max(a, b)). Average pooling does not: avg(relu(-1), relu(3)) = 1.5 but relu(avg(-1, 3)) = 1.",
        f"the filters and maps come from LeNet trained {epochs:g} epoch(s) with the lectures' SGD (lr 0.01, momentum "
        f"0.5, batch 64; the lectures train {LENET_EPOCHS} epochs): "
        f"test accuracy {100 * trained.history.test.acc:.2f}%; the digit is test image 0 (a {label}); the maps "
        "are the convolutions' outputs, before pooling and ReLU.",
    ]
    tables = {LECTURE_TABLE: claims, "a 5x5 image convolved with a 3x3 kernel": conv_rows,
              "output sizes: formula vs PyTorch": size_rows, "pooling the lecture's 4x4 example": pool_rows,
              "pooling and ReLU": commute_rows, "trained LeNet": lenet_rows}
    return Result("convolution", "convolution, padding, stride and pooling", tables, figures, notes, opts.quick,
                  {"lenet": cfg.to_dict()})
