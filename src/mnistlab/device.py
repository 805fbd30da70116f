"""Where tensors live: device resolution, channels_last, autocast and timing that waits for the device.

One `resolve_device` decides what "auto" means for every caller (the Config, `load_dataset`,
evaluation, prediction, bench), so data and model never end up on different devices by default.
"""

from __future__ import annotations

import contextlib
import time
from typing import ContextManager

import torch
import torch.nn as nn

from mnistlab.errors import ConfigError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; asking for a device that is absent is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available (use --device auto or cpu)")
    if name == "mps" and not _mps_available():
        raise ConfigError("--device mps: Apple's MPS backend is not available (use --device auto or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device {name!r} (choose from auto, cpu, cuda, mps)") from None


def same_device(a: torch.device, b: torch.device) -> bool:
    """'cuda' and 'cuda:0' are the same device when the current CUDA device is 0; the CPU is one device."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def model_device(model: nn.Module) -> torch.device | None:
    """The device of a model's first parameter or buffer (None for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return None


def uses_convolutions(model: nn.Module) -> bool:
    """True for models with 2-D convolutions, which run faster on channels_last tensors."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Convolutional models train in channels_last, except on MPS (where it is slower or unsupported)."""
    return uses_convolutions(model) and device.type != "mps"


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """Mixed precision in `dtype` on `device`, or nothing when `dtype` is None.

    Disabled autocast is a plain null context: `torch.autocast("mps", enabled=False)` raises on
    torch below 2.5 (which pyproject allows), so autocast is only entered when it is wanted.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait until the queued work on `device` is done (CUDA and MPS run asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def timer(device: torch.device) -> float:
    """perf_counter() after the device caught up: the clock reading a benchmark may trust."""
    synchronize(device)
    return time.perf_counter()
