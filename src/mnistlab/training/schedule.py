"""Learning-rate schedules: `lr_at`, a pure function of the step (no optimiser, no state)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak_lr: float, schedule: str, warmup: float = 0.0,
          steps_per_epoch: int = 1, step_every: float = 1.0, gamma: float = 0.1) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total_steps`: a pure function.

    Warmup is linear from peak/25 over the first `warmup` fraction of the steps; then constant,
    step (x gamma every `step_every` epochs), cosine to 0, or one-cycle (linear down to 0).
    """
    warm_steps = int(warmup * total_steps)
    if step < warm_steps:
        start = peak_lr / 25
        return start + (peak_lr - start) * step / warm_steps
    if schedule == "constant":
        return peak_lr
    if schedule == "step":
        return peak_lr * gamma ** math.floor(step / max(1, round(step_every * steps_per_epoch)))
    progress = (step - warm_steps) / max(1, total_steps - warm_steps)
    if schedule == "cosine":
        return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        return peak_lr * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")
