"""Optimisers: `build_optimizer` (the one a Config names) and mnistlab's own SGD.

SGD with momentum, Nesterov and weight decay: torch.optim.SGD's arithmetic without its start-up cost.

Creating the first `torch.optim` optimiser imports torch._dynamo: about 2 s and 70 MB on the
2-core machines here (measured), which is most of a speedrun's budget and a tenth of its memory.
This class does the same updates with the same `_foreach` operations, so its results are
bit-identical to `torch.optim.SGD(foreach=True)` (tested), and its `state_dict` has torch's layout,
so checkpoints move freely between the two.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

from mnistlab.config import Config
from mnistlab.errors import ConfigError

_GROUP_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")


class SGD:
    """Stochastic gradient descent, as torch.optim.SGD computes it (one parameter group).

    Per step, with g the gradient: g += weight_decay * p; buf = momentum * buf + (1 - dampening) * g
    (buf = g at the first step); g = g + momentum * buf with Nesterov, else g = buf; p -= lr * g.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        params = list(params)
        if not params:
            raise ValueError("SGD got an empty parameter list")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        group = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        self.param_groups: list[dict[str, Any]] = [{"params": params, **group}]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(params)

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not index:
            return
        params = [self.params[i] for i in index]
        grads = [p.grad for p in params]
        if weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum != 0:
            if all(self.momentum_buffers[i] is not None for i in index):
                bufs = [self.momentum_buffers[i] for i in index]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - dampening)
            else:
                # A first step (torch's rule: the buffer starts as a copy of the gradient), perhaps
                # for only some parameters (those that had no gradient before).
                for i, g in zip(index, grads):
                    buf = self.momentum_buffers[i]
                    if buf is None:
                        self.momentum_buffers[i] = torch.clone(g).detach()
                    else:
                        buf.mul_(momentum).add_(g, alpha=1 - dampening)
                bufs = [self.momentum_buffers[i] for i in index]
            # Out of place: `grads` may be the parameters' own .grad tensors, which stay untouched.
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
        torch._foreach_add_(params, grads, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.SGD's layout: {"state": {i: {"momentum_buffer": t}}, "param_groups": [{..., "params": [0..n-1]}]}."""
        state = {i: {"momentum_buffer": b} for i, b in enumerate(self.momentum_buffers) if b is not None}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from this class or from torch.optim.SGD (extra keys such as 'foreach' are ignored)."""
        groups = state_dict.get("param_groups") or []
        if len(groups) != 1 or len(groups[0].get("params", ())) != len(self.params):
            raise ValueError("loaded optimizer state does not match this model's parameters")
        for key in _GROUP_KEYS:
            if key in groups[0]:
                self.param_groups[0][key] = groups[0][key]
        buffers: list[torch.Tensor | None] = [None] * len(self.params)
        for index, entry in state_dict.get("state", {}).items():
            i = int(index)
            buf = entry.get("momentum_buffer")
            if buf is None:
                continue
            if not 0 <= i < len(self.params) or buf.shape != self.params[i].shape:
                raise ValueError(f"loaded momentum buffer {i} does not match this model's parameters")
            buffers[i] = buf.to(self.params[i].device, self.params[i].dtype).clone()
        self.momentum_buffers = buffers


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer | SGD:
    """The optimiser named by the config, at the schedule's first learning rate.

    SGD is mnistlab's own (torch's arithmetic, bit for bit, without torch.optim's 2 s start-up).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = cfg.peak_lr, cfg.weight_decay
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and cfg.momentum > 0  # Nesterov needs a momentum
        return SGD(params, lr=lr, momentum=cfg.momentum, nesterov=nesterov, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")
