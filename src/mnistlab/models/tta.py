"""Test-time augmentation: a classifier's logits averaged over shifted views of each image.

One definition for every path that classifies: the test evaluation (training/trainer.evaluate),
`Predictor` (predict, serve), and the ONNX export, whose graph holds the same views, so that a
run's test accuracy, its predictions and its exported file agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def _view_index(h: int, w: int, shifts: tuple[tuple[int, int], ...], mirror: bool,
                device: torch.device) -> torch.Tensor:
    """(V * h * w,) int64: for each view's pixel, where `shift_images` takes it from in an image
    flattened to its h * w values followed by its fill value (index h * w).

    Built with numpy, so that an exporter tracing the model records the table as one constant.
    """
    rows = np.arange(h).reshape(h, 1)
    cols = np.arange(w).reshape(1, w)
    tables = []
    for dx, dy in shifts:
        src_r, src_c = rows - dy, cols - dx  # torch.roll by (dy, dx): out[r, c] = in[r - dy, c - dx]
        inside = (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
        tables.append(np.where(inside, src_r * w + src_c, h * w))
    if mirror:
        tables += [t[:, ::-1] for t in tables]
    return torch.from_numpy(np.stack(tables).reshape(-1).astype(np.int64)).to(device)


class _ViewGather:
    """Every view of a small batch as one gather from a fixed table: the same values as `shift_images`
    (a copy of each pixel or of the fill), in 4 operations for all views instead of 3 per view, which
    is what one image's classification costs in eager PyTorch (and the ONNX graph's size)."""

    def __init__(self, count: int, mirror: bool) -> None:
        self.shifts, self.mirror = tta_shifts(count), mirror
        self.views = len(self.shifts) * (2 if mirror else 1)
        self.tables: dict[tuple[int, int, str], torch.Tensor] = {}

    def padded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images flattened, with each image's and channel's minimum appended: (N, C, H*W + 1), the table)."""
        n, c, h, w = x.shape
        key = (int(h), int(w), str(x.device))  # int(): an exporter's tracer fixes the image size (not the batch)
        if key not in self.tables:
            self.tables[key] = _view_index(key[0], key[1], self.shifts, self.mirror, x.device)
        flat = x.reshape(n, c, h * w)
        return torch.cat([flat, flat.amin(-1, keepdim=True)], -1), self.tables[key]

    def stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Every view of x, image-major: (N * V, C, H, W); for one channel a reshape of the gather, no copy."""
        n, c, h, w = x.shape
        padded, table = self.padded(x)
        views = padded.index_select(-1, table).view(n, c, self.views, h, w)
        if int(c) != 1:
            views = views.transpose(1, 2)
        return views.reshape(n * self.views, c, h, w)


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
        self._gather = _ViewGather(views, mirror)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return torch.stack([self.model(v).float() for v in tta_views(x, self.mirror, self.views)]).mean(0)
        gather = self._gather
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if gather.views * x.shape[0] > SMALL_BATCH:  # large batches: one pass per view is faster (measured)
            views = tta_views(x, self.mirror, self.views)
            return torch.stack([self.model(v.contiguous(memory_format=fmt)).float() for v in views]).mean(0)
        # Small batches, such as `serve`'s single images: one call over all views instead of 5, since
        # torch's per-call overhead dominates there (in eval mode each image is computed alone).
        logits = self.model(gather.stacked(x).contiguous(memory_format=fmt)).float()
        return logits.view(x.shape[0], gather.views, *logits.shape[1:]).mean(1)

    def extra_repr(self) -> str:
        return f"views={self.views}, mirror={self.mirror}"


def as_tested(model: nn.Module, cfg: Any, tta: bool | None = None) -> nn.Module:
    """`model` as a run with Config `cfg` was tested: wrapped in its views when its test-time
    augmentation is on (or `tta` says so), else itself. What Predictor, export and the estimator use."""
    on = cfg.effective_tta if tta is None else tta
    return TTAModel(model, cfg.tta_views, mirror=cfg.aug_flip).eval() if on else model
