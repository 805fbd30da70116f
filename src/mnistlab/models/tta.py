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
    images of the batch. Exact values: the fill, then one block copy of the pixels that stay (for
    1,000 images 5x faster than a gather or a roll and a mask, measured).
    """
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    out = x.amin(dim=(-2, -1), keepdim=True).expand(x.shape).contiguous()
    rows, cols = h - abs(dy), w - abs(dx)
    if rows > 0 and cols > 0:
        top, left, src_top, src_left = max(0, dy), max(0, dx), max(0, -dy), max(0, -dx)
        out[..., top:top + rows, left:left + cols] = x[..., src_top:src_top + rows, src_left:src_left + cols]
    return out


class _StackedViews:
    """Every view of a small batch at once, image-major: the same values as `shift_images` (a copy of
    each pixel or of the fill), from one copy of the images framed by a pixel of their fill: each
    view is a slice of it (every shift is at most one pixel), and one stack copies them all.

    One model call over all views instead of one per view is what a small batch wants in eager
    PyTorch (its per-call overhead dominates there). Against the gather from a table of pixel indices
    that this replaced (BENCHMARKS.md round 6): the ONNX graph, Slices and Concats, runs 14-28% more
    images/s in onnxruntime; in eager PyTorch 8 images' views take 51 against 218 us, one image's 41
    against 27 us."""

    def __init__(self, count: int, mirror: bool) -> None:
        self.shifts, self.mirror = tta_shifts(count), mirror
        self.views = len(self.shifts) * (2 if mirror else 1)

    def stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Every view of x (N, C, H, W): (N * V, C, H, W), the V views of each image together."""
        n, c, h, w = x.shape
        fill = x.amin(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1): each image's and channel's background
        side = fill.expand(n, c, h, 1)
        framed = torch.cat([side, x, side], -1)
        edge = fill.expand(n, c, 1, w + 2)
        framed = torch.cat([edge, framed, edge], -2)  # (N, C, H + 2, W + 2)
        # shift_images: out[r, c] = in[r - dy, c - dx], which is framed[r - dy + 1, c - dx + 1].
        views = [framed[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w] for dx, dy in self.shifts]
        if self.mirror:
            views += [v.flip(-1) for v in views]
        return torch.stack(views, 1).reshape(n * self.views, c, h, w)


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
        self._views = _StackedViews(views, mirror)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        stacker = self._views
        if x.dim() == 4 and stacker.views * x.shape[0] <= SMALL_BATCH:
            # Small batches, such as `serve`'s single images: one call over all views instead of 5, since
            # torch's per-call overhead dominates there (in eval mode each image is computed alone).
            logits = self.model(stacker.stacked(x).contiguous(memory_format=fmt)).float()
            return logits.view(x.shape[0], stacker.views, *logits.shape[1:]).mean(1)
        # Large batches: one pass per view is faster (measured).
        return torch.stack([self.model(v.contiguous(memory_format=fmt)).float()
                            for v in tta_views(x, self.mirror, self.views)]).mean(0)

    def extra_repr(self) -> str:
        return f"views={self.views}, mirror={self.mirror}"


def as_tested(model: nn.Module, cfg: Any, tta: bool | None = None) -> nn.Module:
    """`model` as a run with Config `cfg` was tested: wrapped in its views when its test-time
    augmentation is on (or `tta` says so), else itself. What Predictor, export and the estimator use."""
    on = cfg.effective_tta if tta is None else tta
    return TTAModel(model, cfg.tta_views, mirror=cfg.aug_flip).eval() if on else model
