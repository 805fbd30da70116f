"""Every loss in one table, and the matching way to turn logits into predictions and probabilities.

Models return logits; the trainer owns the loss. A model with a single output (binary logistic
regression) always uses binary cross entropy on its one logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = {
    "ce": "softmax cross entropy (log-softmax and NLL fused, stable for any logit size)",
    "nll": "negative log-likelihood over an explicit log_softmax (the lectures' two-step form)",
    "mse": "mean squared error between softmax probabilities and one-hot targets (for the lesson)",
    "bce": "binary cross entropy with a sigmoid per class (one-vs-all; multi-label)",
}


def _targets_matrix(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    # Class indices (B,) -> one-hot (B, K); a multi-hot (B, K) target is used as it is.
    return y.to(dtype) if y.dim() == 2 else F.one_hot(y, num_classes).to(dtype)


def compute_loss(
    logits: torch.Tensor, y: torch.Tensor, loss: str = "ce", label_smoothing: float = 0.0, reduction: str = "mean"
) -> torch.Tensor:
    """The loss of `logits` (B, K) against class indices (B,) or multi-hot targets (B, K)."""
    num_outputs = logits.shape[1]
    if num_outputs == 1:  # binary logistic regression: one logit for the positive class
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction=reduction)
    if loss == "ce":
        if y.dim() == 2:
            # Multi-hot sets: cross entropy against the label distribution y / |y| (soft targets), which
            # is what softmax can model at best: each of the |y| present labels gets probability 1/|y|.
            target = y.to(logits.dtype)
            target = target / target.sum(1, keepdim=True).clamp(min=1)
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing, reduction=reduction)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction=reduction)
    if loss == "nll":
        return F.nll_loss(F.log_softmax(logits, dim=1), y, reduction=reduction)
    target = _targets_matrix(y, num_outputs, logits.dtype)
    if loss == "bce":
        per_item = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    elif loss == "mse":
        per_item = (F.softmax(logits, dim=1) - target).pow(2).mean(1)
    else:
        raise ValueError(f"unknown loss {loss!r} (choose from {', '.join(LOSSES)})")
    return per_item.sum() if reduction == "sum" else per_item.mean() if reduction == "mean" else per_item


def predict_classes(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per row: argmax, or logit > 0 for a single-output binary model."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def predict_labels(logits: torch.Tensor, loss: str = "bce", threshold: float = 0.5) -> torch.Tensor:
    """(B, K) bool label sets: every class whose probability (sigmoid for bce, softmax otherwise) is >= threshold.

    The same rule for every loss, so a softmax model is judged as it would be used: with threshold
    0.5 it can name at most one label (two would need both probabilities to be exactly 0.5).
    """
    return class_probabilities(logits, loss) >= threshold


def class_probabilities(logits: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """(B, K) probabilities: softmax, or per-class sigmoids for bce (which need not sum to 1)."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    if loss == "bce":
        return torch.sigmoid(logits)
    return F.softmax(logits, dim=1)


def as_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) logits for K >= 2; a single binary logit z becomes [0, z], whose softmax is [1 - sigmoid(z), sigmoid(z)]."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits
