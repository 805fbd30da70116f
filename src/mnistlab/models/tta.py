"""Test-time augmentation: a classifier's logits averaged over shifted views of each image.

One definition for every path that classifies: the test evaluation (training/trainer.evaluate),
`Predictor` (predict, serve), and the ONNX export, whose graph holds the same views, so that a
run's test accuracy, its predictions and its exported file agree.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

# Views x images up to which TTAModel runs one forward over all views together: below it torch's
# per-call overhead dominates; above it, batches of 5,000 images were 40-50% slower than 5 of 1,000.
SMALL_BATCH = 256

TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
# The speedrun's cheaper set: two diagonal shifts move the digit along both axes at once (chosen on
# validation accuracy, BENCHMARKS.md).
TTA_SHIFTS_3 = ((0, 0), (1, 1), (-1, -1))


def tta_shifts(views: int = 5) -> tuple[tuple[int, int], ...]:
    """The (dx, dy) pixel shifts of `views` test-time augmentation views (3 or 5)."""
    if views == 5:
        return TTA_SHIFTS
    if views == 3:
        return TTA_SHIFTS_3
    raise ValueError(f"test-time augmentation takes 3 or 5 views, not {views}")


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Shift a batch (N, C, H, W) by whole pixels (dx right, dy down), filling with each image's background.

    The background is each image's and channel's minimum, so a result never depends on the other
    images of the batch. Built from roll and where (exact values, and an ONNX graph of fixed ops).
    """
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    fill = x.amin(dim=(-2, -1), keepdim=True)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    outside = ((rows < dy) | (rows >= h + dy))[:, None] | ((cols < dx) | (cols >= w + dx))[None, :]
    return torch.where(outside, fill, torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))


def tta_views(x: torch.Tensor, mirror: bool = False, count: int = 5) -> list[torch.Tensor]:
    """The `count` test-time augmentation views of a batch (small shifts), and their mirror images if `mirror`."""
    views = [shift_images(x, dx, dy) for dx, dy in tta_shifts(count)]
    return views + [v.flip(-1) for v in views] if mirror else views


class TTAModel(nn.Module):
    """`model`'s logits averaged over the test-time augmentation views of its input."""

    def __init__(self, model: nn.Module, views: int = 5, mirror: bool = False) -> None:
        super().__init__()
        tta_shifts(views)  # fail now on a bad count
        self.model, self.views, self.mirror = model, views, mirror

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = tta_views(x, self.mirror, self.views)
        if len(views) * x.shape[0] > SMALL_BATCH:  # large batches: one pass per view is faster (measured)
            return torch.stack([self.model(v).float() for v in views]).mean(0)
        # Small batches, such as `serve`'s single images: one call over all views instead of 5, since
        # torch's per-call overhead dominates there (in eval mode each image is computed alone).
        stacked = torch.cat(views)
        if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4:
            stacked = stacked.contiguous(memory_format=torch.channels_last)
        logits = self.model(stacked).float()
        return logits.view(len(views), x.shape[0], *logits.shape[1:]).mean(0)

    def extra_repr(self) -> str:
        return f"views={self.views}, mirror={self.mirror}"


def as_tested(model: nn.Module, cfg: Any, tta: bool | None = None) -> nn.Module:
    """`model` as a run with Config `cfg` was tested: wrapped in its views when its test-time
    augmentation is on (or `tta` says so), else itself. What Predictor, export and the estimator use."""
    on = cfg.effective_tta if tta is None else tta
    return TTAModel(model, cfg.tta_views, mirror=cfg.aug_flip).eval() if on else model
