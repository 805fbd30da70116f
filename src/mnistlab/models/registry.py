"""The model registry: `@register_model(name)` builders, `create_model`, `list_models`.

A builder has the signature `(num_classes, in_shape, **options) -> nn.Module` and returns a
module that maps a batch of images (B, C, H, W) to logits (B, num_classes). Each model declares
the options it uses: its builder's keyword parameters, or `options=` when the builder forwards
them. `create_model` refuses any other option, so a knob is never silently dropped.
"""


from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch.nn as nn

from mnistlab.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_OPTIONS: dict[str, tuple[str, ...]] = {}
_POSITIONAL = ("num_classes", "in_shape")


def _signature_options(builder: Callable[..., nn.Module]) -> tuple[str, ...]:
    # The named keyword parameters; a **kwargs catch-all declares nothing.
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in inspect.signature(builder).parameters.values()
                 if p.kind in kinds and p.name not in _POSITIONAL)


def register_model(name: str, description: str = "", options: Iterable[str] | None = None) -> Callable:
    """Register a model builder under `name` (a duplicate name is a programming error).

    Args:
        options: the keyword options the model uses; default: the builder's keyword parameters.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        _DESCRIPTIONS[name] = description or (builder.__doc__ or "").strip().splitlines()[0]
        _OPTIONS[name] = tuple(options) if options is not None else _signature_options(builder)
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def model_description(name: str) -> str:
    """The one-line description of a registered model."""
    return _DESCRIPTIONS[name]


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r} (choose from {', '.join(list_models())})")


def model_options(name: str) -> tuple[str, ...]:
    """The keyword options model `name` uses (what `create_model` accepts besides its two sizes)."""
    _check_name(name)
    return _OPTIONS[name]


def models_using(option: str) -> list[str]:
    """The registered models that use keyword `option`, sorted."""
    return [m for m in list_models() if option in _OPTIONS[m]]


def create_model(
    name: str, num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 28, 28), **overrides: Any
) -> nn.Module:
    """Build model `name`; `None` overrides are dropped so that each model's own defaults apply.

    An override that the model does not use is a ConfigError (a ValueError) naming it.
    """
    _check_name(name)
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    unused = [k for k in kwargs if k not in _OPTIONS[name]]
    if unused:
        key = unused[0]
        users = models_using(key)
        who = f"models that do: {', '.join(users)}" if users else "no model does"
        takes = ", ".join(_OPTIONS[name]) or "none"
        raise ConfigError(f"create_model({name!r}): {name} does not use the keyword {key!r} ({who}; {name} takes: {takes})")
    return _MODELS[name](num_classes=num_classes, in_shape=tuple(in_shape), **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["register_model", "create_model", "list_models", "count_parameters", "model_description", "model_options",
           "models_using"]
