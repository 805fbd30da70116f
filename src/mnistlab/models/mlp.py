"""Multi-layer perceptrons of any depth, with the knobs the lectures turn."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mnistlab.errors import ConfigError
from mnistlab.models.registry import register_model

NEGATIVE_SLOPE = 0.01  # LeakyReLU's default slope for x < 0 (PyTorch's); the lectures' max(0.1x, x) is 0.1
ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": lambda negative_slope=NEGATIVE_SLOPE: nn.LeakyReLU(negative_slope),
}
INITS = ("default", "kaiming", "xavier")


class MLP(nn.Module):
    """Flatten, then [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden layer, then Linear."""

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        num_classes: int,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "default",
        negative_slope: float = NEGATIVE_SLOPE,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r} (choose from {', '.join(INITS)})")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[activation](negative_slope) if activation == "leaky_relu" else ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.activation = activation
        if init != "default":
            self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if init == "kaiming":
                    # He et al.: keeps the activation variance constant through ReLU layers.
                    nonlinearity = "leaky_relu" if self.activation == "leaky_relu" else "relu"
                    nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
                else:
                    gain = nn.init.calculate_gain("tanh" if self.activation == "tanh" else "sigmoid")
                    gain = 1.0 if self.activation in ("relu", "leaky_relu") else gain
                    nn.init.xavier_uniform_(m.weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))  # (B, C, H, W) -> (B, C*H*W) -> (B, K)


@register_model("mlp", "multi-layer perceptron: --hidden, --activation, --negative-slope, --dropout, --batch-norm, --init")
def mlp(
    num_classes: int,
    in_shape: tuple[int, int, int],
    hidden: tuple[int, ...] = (520, 320, 240, 120),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    init: str = "default",
    negative_slope: float | None = None,
) -> nn.Module:
    """A fully connected network; the default is the lectures' 784-520-320-240-120-10.

    Args:
        negative_slope: LeakyReLU's slope for x < 0 (default 0.01); only with activation 'leaky_relu'.
    """
    if negative_slope is not None and activation != "leaky_relu":
        raise ConfigError(f"--negative-slope is LeakyReLU's slope: it needs --activation leaky_relu (not {activation})")
    if negative_slope is not None and not 0 <= negative_slope < 1:
        raise ConfigError(f"--negative-slope must be in [0, 1), got {negative_slope}")
    slope = NEGATIVE_SLOPE if negative_slope is None else float(negative_slope)
    return MLP(math.prod(in_shape), tuple(hidden), num_classes, activation, dropout, batch_norm, init, slope)
