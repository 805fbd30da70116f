"""Softmax regression in NumPy: logits = x W + b, softmax, cross entropy, and the gradient by hand.

The one identity everything here rests on: for p = softmax(z) and the loss L = -log p[y],
dL/dz = p - onehot(y). Averaged over a batch of B rows that is (p - Y) / B.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max first keeps exp from overflowing."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean of -log p[y] over the batch (probabilities clipped away from 0)."""
    p = probs[np.arange(len(y)), y]
    return float(-np.log(np.maximum(p, np.finfo(probs.dtype).tiny)).mean())


def softmax_ce_backward(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d(mean cross entropy)/d(logits) = (p - onehot(y)) / B: the 'dz = a - y' of the lectures."""
    dz = probs.copy()
    dz[np.arange(len(y)), y] -= 1.0
    return dz / len(y)


def init_linear(rng: np.random.Generator, fan_in: int, fan_out: int, dtype: type, scale: str = "he") -> tuple[np.ndarray, np.ndarray]:
    """(W, b) for a linear layer: He-normal weights (for ReLU) or zeros, and zero bias."""
    if scale == "zeros":
        w = np.zeros((fan_in, fan_out), dtype=dtype)
    else:
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
    return w, np.zeros(fan_out, dtype=dtype)


class SoftmaxClassifier:
    """What every from-scratch classifier shares: a softmax + cross-entropy head on its logits.

    Subclasses provide `forward(x) -> (logits, cache)` and `backward(dlogits, cache) -> grads`.
    """

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Mean cross entropy, the logits, and the gradient of every parameter."""
        logits, cache = self.forward(x)
        probs = softmax(logits)
        return cross_entropy(probs, y), logits, self.backward(softmax_ce_backward(probs, y), cache)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices (B,)."""
        return self.forward(x)[0].argmax(axis=1)


class SoftmaxRegression(SoftmaxClassifier):
    """logits = x @ W + b with W (D, K): one linear layer, trained through softmax cross entropy."""

    def __init__(self, num_features: int, num_classes: int, seed: int = 0, dtype: type = np.float32):
        rng = np.random.default_rng(seed)
        w, b = init_linear(rng, num_features, num_classes, dtype, scale="zeros")  # convex: zeros are fine
        self.params: dict[str, np.ndarray] = {"W": w, "b": b}

    def __repr__(self) -> str:
        d, k = self.params["W"].shape
        return f"SoftmaxRegression(num_features={d}, num_classes={k})"

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """(B, D) -> logits (B, K), and the cache backward needs."""
        logits = x @ self.params["W"] + self.params["b"]
        return logits, {"x": x}

    def backward(self, dlogits: np.ndarray, cache: dict) -> dict[str, np.ndarray]:
        """Gradients of the loss w.r.t. W and b, given dL/dlogits."""
        return {"W": cache["x"].T @ dlogits, "b": dlogits.sum(axis=0)}
