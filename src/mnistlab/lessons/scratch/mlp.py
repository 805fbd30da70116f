"""A multi-layer perceptron in NumPy (e.g. 784-128-10, ReLU) with backprop written out by hand.

Each layer computes z = a_prev @ W + b, then a = relu(z) (the last layer stops at z: the logits).
Backward runs the same layers in reverse: dW = a_prev^T dz, db = sum(dz), da_prev = dz W^T, and
through ReLU dz = da * (z > 0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mnistlab.lessons.scratch.softmax import SoftmaxClassifier, init_linear


class MLP(SoftmaxClassifier):
    """Linear -> ReLU -> ... -> Linear (logits)."""

    def __init__(self, num_features: int, hidden: Sequence[int], num_classes: int, seed: int = 0,
                 dtype: type = np.float32):
        rng = np.random.default_rng(seed)
        self.sizes = (num_features, *hidden, num_classes)
        self.params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            self.params[f"W{i}"], self.params[f"b{i}"] = init_linear(rng, fan_in, fan_out, dtype)

    @property
    def num_layers(self) -> int:
        """Number of linear layers."""
        return len(self.sizes) - 1

    def __repr__(self) -> str:
        return f"MLP({'-'.join(map(str, self.sizes))}, relu)"

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """(B, D) -> logits (B, K); the cache keeps each layer's input and pre-activation."""
        inputs, pre = [], []
        a = x
        for i in range(self.num_layers):
            inputs.append(a)
            z = a @ self.params[f"W{i}"] + self.params[f"b{i}"]
            pre.append(z)
            a = np.maximum(z, 0) if i < self.num_layers - 1 else z
        return a, {"inputs": inputs, "pre": pre}

    def backward(self, dlogits: np.ndarray, cache: dict) -> dict[str, np.ndarray]:
        """Gradients of every W and b, given dL/dlogits."""
        grads: dict[str, np.ndarray] = {}
        dz = dlogits
        for i in reversed(range(self.num_layers)):
            grads[f"W{i}"] = cache["inputs"][i].T @ dz
            grads[f"b{i}"] = dz.sum(axis=0)
            if i > 0:
                da = dz @ self.params[f"W{i}"].T
                dz = da * (cache["pre"][i - 1] > 0)  # ReLU's derivative: 1 where it let z through
        return grads
