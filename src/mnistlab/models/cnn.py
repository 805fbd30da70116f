"""Convolutional nets: the lectures' LeNet-style net and a small, fast modern CNN (the default)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.models.registry import model_options, register_model


def _flat_features(features: nn.Module, in_shape: tuple[int, int, int]) -> int:
    # Derive the flattened size from the input shape instead of hard-coding 320 or 256. Eval mode:
    # batch norm cannot take training statistics of one value per channel (tiny maps).
    features.eval()
    with torch.no_grad():
        size = features(torch.zeros(1, *in_shape)).flatten(1).shape[1]
    features.train()
    return size


# Values from which MaxPool2d's pairwise inference pays, measured on fastcnn (lenet's and cnn's maps
# are alike in size): for one image the six operations cost more than ATen's one (154 against 132 us
# a forward), for 5 images the same, for 50 half.
PAIRWISE_FROM = 16_384


def _pairwise_max_pool(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2)'s values (NaN included; a zero's sign may differ, ATen keeping the first of
    equal values) by two pairwise maximums of strided views."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row or column is dropped
    x = x[..., :h, :w]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d(2) whose inference on a CPU takes the max of each cell's four pixels pairwise
    (the same class name, so that printed models read as before).

    ATen's CPU max-pool always computes the indices that a backward pass would need: in a test
    evaluation of fastcnn it took a third of the time, and `_pairwise_max_pool` gives the same values
    3-6x faster (BENCHMARKS.md). Training, gradients asked for in eval mode (saliency maps), small
    inputs, other devices, ONNX export and TorchScript keep nn.MaxPool2d's computation.
    """

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TorchScript compiles only F.max_pool2d: it skips a `not is_scripting()` branch.
        if not torch.jit.is_scripting():
            if not (torch.is_grad_enabled() or x.dim() != 4 or min(x.shape[-2:]) < 2 or x.numel() < PAIRWISE_FROM
                    or x.device.type != "cpu" or torch.jit.is_tracing()):  # (a map under 2x2: torch's error)
                return _pairwise_max_pool(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode,
                            return_indices=self.return_indices)


class LeNet(nn.Module):
    """conv(C,10,5) -> max-pool 2 -> ReLU -> conv(10,20,5) -> max-pool 2 -> ReLU -> Linear(320, K)."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_shape[0], 10, kernel_size=5),
            MaxPool2d(),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5),
            MaxPool2d(),
            nn.ReLU(),
        )
        self.head = nn.Linear(_flat_features(self.features, in_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # (B, 20, 4, 4) -> (B, 320) -> (B, K)


class SpaceToDepth(nn.Module):
    """(B, C, H, W) -> (B, C*s*s, H/s, W/s): each s x s block of pixels becomes s*s channels.

    Lossless, and it turns the first convolution from one input channel at full resolution (which
    CPU convolution kernels handle poorly) into a few channels on a 4x smaller map. Odd sizes are
    padded by repeating the border, which is background in MNIST-style images.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.factor
        pad_h, pad_w = -x.shape[-2] % s, -x.shape[-1] % s
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        cells = F.pixel_unshuffle(x, s)
        if not torch.is_grad_enabled() or x.device.type == "mps" or torch.jit.is_tracing():
            return cells  # (inference gains nothing from the copy below; MPS runs NCHW; ONNX has no layouts)
        # In training the convolution behind runs channels_last (device.use_channels_last): given
        # NCHW it converts internally, in the forward and again for its weight gradient; one
        # explicit copy here is cheaper (0.3-0.5 ms of a 9-12 ms speedrun step). Same numbers.
        return cells.contiguous(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def fold_space_to_depth(model: nn.Module, in_shape: tuple[int, int, int]) -> nn.Module:
    """`model` with its space-to-depth stem and first convolution made one strided convolution, for export.

    SpaceToDepth(s) then a k x k convolution (padding p) is a (k*s) x (k*s) convolution of stride s
    and padding p*s on the image itself, its weights the same numbers rearranged: the same outputs
    up to float rounding (the sums run in another order). onnxruntime runs that one convolution about
    twice as fast as the stem's reshape-transpose-reshape and the small convolution behind it (a
    batch of 5,000 images on 2 threads: 35 ms against 70, BENCHMARKS.md). PyTorch gains nothing from
    it, so training and `predict` keep the stem. Any other model, or an odd image size (the stem then
    pads), comes back unchanged.
    """
    if not isinstance(model, FastCNN) or len(model.features) < 2:
        return model
    features = model.features
    stem, conv = features[0], features[1]
    s = getattr(stem, "factor", 0)
    if not isinstance(stem, SpaceToDepth) or not isinstance(conv, nn.Conv2d) or in_shape[1] % s or in_shape[2] % s:
        return model
    if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or not isinstance(conv.padding, tuple)
            or conv.padding_mode != "zeros"):
        return model
    out_channels, c_s2d, kh, kw = conv.weight.shape
    c = c_s2d // (s * s)
    weight = conv.weight.detach()
    folded = torch.zeros(out_channels, c, kh * s, kw * s, dtype=weight.dtype, device=weight.device)
    for channel in range(c):
        for p in range(s):
            for q in range(s):  # pixel_unshuffle's order: channel * s * s + p * s + q holds pixel (p, q) of each block
                folded[:, channel, p::s, q::s] = weight[:, channel * s * s + p * s + q]
    merged = nn.Conv2d(c, out_channels, (kh * s, kw * s), stride=s, padding=(conv.padding[0] * s, conv.padding[1] * s),
                       bias=conv.bias is not None)
    merged.weight.data.copy_(folded)
    if conv.bias is not None:
        merged.bias.data.copy_(conv.bias.detach())
    merged.to(weight.device).train(model.training)
    # FastCNN's forward is head(features(x)): the same with the merged stem, sharing every other layer
    # (whose train/eval modes stay theirs).
    whole = nn.Sequential(nn.Sequential(merged, *list(features)[2:]), model.head)
    whole.training = whole[0].training = model.training
    return whole


class FastCNN(nn.Module):
    """An optional space-to-depth stem, stages of conv (no bias) -> max-pool 2 -> batch norm -> ReLU,
    then a small MLP head. With `convs_per_stage` > 1, each stage first has that many minus one
    conv -> batch norm -> ReLU layers at full resolution (more capacity per stage, VGG-style).

    Batch norm sits after the pooling, on the 4x smaller map: the same normalisation for a
    fraction of the cost, which on a CPU makes the whole step up to 3x faster. Channel counts
    are multiples of 8, which the CPU convolution kernels handle best.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        channels: tuple[int, ...] = (8, 16),
        kernel_size: int = 5,
        padding: int = 0,
        hidden: tuple[int, ...] = (32,),
        dropout: float = 0.0,
        space_to_depth: int = 1,
        convs_per_stage: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        if space_to_depth > 1:
            layers.append(SpaceToDepth(space_to_depth))
            width *= space_to_depth**2
        for out in channels:
            for _ in range(convs_per_stage - 1):
                layers += [nn.Conv2d(width, out, kernel_size, padding=padding, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                width = out
            layers += [
                nn.Conv2d(width, out, kernel_size, padding=padding, bias=False),
                MaxPool2d(),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            width = out
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = _flat_features(self.features, in_shape)
        for size in hidden:
            head += [nn.Linear(width, size), nn.ReLU(inplace=True)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            width = size
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("lenet", "the lectures' CNN: conv 10@5x5, pool, conv 20@5x5, pool, Linear(320, K)")
def lenet(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
    """The LeNet-style CNN of the classic lectures."""
    return LeNet(in_shape, num_classes)


@register_model("cnn", "small CNN, 5x5 convolutions: --conv-channels, --kernel-size, --padding, --hidden, --dropout")
def cnn(
    num_classes: int,
    in_shape: tuple[int, int, int],
    channels: tuple[int, ...] = (8, 16),
    kernel_size: int = 5,
    padding: int = 0,
    hidden: tuple[int, ...] = (32,),
    dropout: float = 0.0,
    space_to_depth: int = 1,
    convs_per_stage: int = 1,
) -> nn.Module:
    """A small modern CNN: two 5x5 convolution stages and a 32-unit head."""
    return FastCNN(in_shape, num_classes, tuple(channels), kernel_size, padding, tuple(hidden), dropout, space_to_depth,
                   convs_per_stage)


# fastcnn is cnn with other defaults; every cnn knob still overrides them.
FASTCNN_DEFAULTS = {"channels": (16, 32), "kernel_size": 3, "padding": 1, "hidden": (64,), "space_to_depth": 2}


@register_model("fastcnn", "the default: cnn with a space-to-depth stem and 3x3 convolutions; fastest to 99% on a CPU",
                options=model_options("cnn"))
def fastcnn(num_classes: int, in_shape: tuple[int, int, int], **overrides: object) -> nn.Module:
    """The default model: 2x2 space-to-depth, conv 16@3x3 and 32@3x3 stages, a 64-unit head.

    About the cost per image of `cnn` but about 1.5x the training images/s on a CPU, and more
    accurate for the same training time (BENCHMARKS.md).
    """
    return cnn(num_classes, in_shape, **{**FASTCNN_DEFAULTS, **overrides})
