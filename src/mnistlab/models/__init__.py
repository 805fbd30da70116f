"""Model registry: `@register_model(name)` builders, `create_model`, `list_models`.

A builder has the signature `(num_classes, in_shape, **overrides) -> nn.Module` and returns a
module that maps a batch of images (B, C, H, W) to logits (B, num_classes). Importing this package
registers every built-in model.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from ..errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable:
    """Register a model builder under `name` (a duplicate name is a programming error)."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        _DESCRIPTIONS[name] = description or (builder.__doc__ or "").strip().splitlines()[0]
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def model_description(name: str) -> str:
    """The one-line description of a registered model."""
    return _DESCRIPTIONS[name]


def create_model(
    name: str, num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 28, 28), **overrides: Any
) -> nn.Module:
    """Build model `name`; `None` overrides are dropped so that each model's own defaults apply."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r} (choose from {', '.join(list_models())})")
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    return _MODELS[name](num_classes=num_classes, in_shape=tuple(in_shape), **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Register the built-in models (import for side effect, after the registry exists).
from . import cnn, linear, mlp, rnn  # noqa: E402,F401

__all__ = ["register_model", "create_model", "list_models", "count_parameters", "model_description"]
