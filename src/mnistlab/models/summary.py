"""Layer-by-layer output shapes, and an explanation when a layer's input size does not fit."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnistlab.errors import ConfigError
from mnistlab.models.registry import count_parameters, create_model


def layer_shapes(model: nn.Module, in_shape: tuple[int, int, int]) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, layer repr, output shape without batch, parameters) for each leaf module, in call order."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:
            def hook(mod, inp, out, name=name):
                out = out[0] if isinstance(out, tuple) else out
                rows.append((name, repr(mod), tuple(out.shape[1:]), count_parameters(mod)))
            hooks.append(module.register_forward_hook(hook))
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *in_shape))
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return rows


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def summarize(name: str, num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 28, 28)) -> str:
    """A table of each layer's output shape, e.g. 1x28x28 -> 10x24x24 -> ... -> 20x4x4 = 320."""
    model = create_model(name, num_classes, in_shape)
    return summarize_model(model, in_shape, title=name)


def summarize_model(model: nn.Module, in_shape: tuple[int, int, int], title: str = "model") -> str:
    rows = layer_shapes(model, in_shape)
    lines = [f"{title}: input {_fmt(in_shape)}", f"{'layer':<16} {'output shape':<14} {'params':>8}  module"]
    for name, text, shape, params in rows:
        lines.append(f"{name:<16} {_fmt(shape):<14} {params:>8,}  {text}")
    lines.append(f"total parameters: {count_parameters(model):,}")
    return "\n".join(lines)


def check_head(model: nn.Module, in_shape: tuple[int, int, int]) -> None:
    """Run one zero image through; a Linear whose in_features do not fit gets an error that explains why."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:
            def pre(mod, inp, name=name):
                if isinstance(mod, nn.Linear):
                    got = inp[0].shape[-1]
                    if got != mod.in_features:
                        # The chain of distinct shapes so far (ReLU and friends keep the shape: shown once).
                        chain = [s for i, (_, s) in enumerate(shapes) if i == 0 or s != shapes[i - 1][1]]
                        trail = " -> ".join(_fmt(s) for s in chain)
                        raise ConfigError(
                            f"layer {name!r} is Linear({mod.in_features}, {mod.out_features}) but receives {got} features: "
                            f"the image flows {_fmt(in_shape)} -> {trail} and flattening gives {got}; "
                            f"use Linear({got}, {mod.out_features}) or derive the size from the input shape"
                        )

            def post(mod, inp, out, name=name):
                out = out[0] if isinstance(out, tuple) else out
                shapes.append((name, tuple(out.shape[1:])))

            hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape))
    finally:
        for h in hooks:
            h.remove()
