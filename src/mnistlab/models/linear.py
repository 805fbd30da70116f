"""Softmax (multinomial logistic) regression and binary logistic regression."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mnistlab.models.registry import register_model


class LinearClassifier(nn.Module):
    """Flatten the image and apply one affine map: logits = W x + b."""

    def __init__(self, in_features: int, num_outputs: int):
        super().__init__()
        self.linear = nn.Linear(in_features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, C, H, W) -> (B, C*H*W) -> (B, K)


@register_model("softmax", "multinomial logistic regression: Linear(C*H*W, K)")
def softmax_regression(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
    """Multinomial logistic regression: one linear layer, softmax in the loss."""
    return LinearClassifier(math.prod(in_shape), num_classes)


@register_model("logistic", "binary logistic regression: Linear(C*H*W, 1), sigmoid + BCE")
def logistic_regression(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
    """Binary logistic regression: a single logit; the positive class is class 1 of 2."""
    if num_classes != 2:
        raise ValueError(
            f"the logistic model is binary: it needs 2 classes, got {num_classes} "
            "(pick two with --classes 3,8 or one against the rest with --positive 7)"
        )
    return LinearClassifier(math.prod(in_shape), 1)
