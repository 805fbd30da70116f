"""The training loop: `lr_at` (a pure schedule), `train_steps`, `evaluate` and `fit`.

`fit` reads the Config; lower-level functions take plain arguments. Progress, checkpoints and
interrupts reach the outside world only through the small `Hooks` object that the caller passes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.config import Config
from mnistlab.data.loader import DataBundle, Split, augment_batch, epoch_permutation, iterate_batches, num_batches
# resolve_device and uses_convolutions moved to device.py; they stay importable from here.
from mnistlab.device import autocast, resolve_device, same_device, synchronize, use_channels_last, uses_convolutions
from mnistlab.errors import ConfigError, TrainingDiverged
from mnistlab.training.losses import compute_loss, predict_classes, predict_labels
from mnistlab.training.optim import SGD


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


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Shift a batch by whole pixels, filling with the background (the minimum value)."""
    if dx == 0 and dy == 0:
        return x
    pad = max(abs(dx), abs(dy))
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=float(x.amin()))
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def tta_views(x: torch.Tensor, mirror: bool = False) -> list[torch.Tensor]:
    """The test-time augmentation views of a batch: small shifts, and their mirror images if `mirror`."""
    views = [shift_images(x, dx, dy) for dx, dy in TTA_SHIFTS]
    return views + [v.flip(-1) for v in views] if mirror else views


@dataclass
class EvalResult:
    """Loss (mean over items), accuracy, and the logits in split order (on the CPU)."""

    loss: float
    acc: float
    logits: torch.Tensor
    seconds: float


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, loss: str = "ce", batch_size: int = 2000, tta: bool = False,
             channels_last: bool = False, autocast_dtype: torch.dtype | None = None, threshold: float = 0.5,
             tta_mirror: bool = False) -> EvalResult:
    """Eval mode, no shuffling, no dropped batch: sum the loss over items and divide by N.

    For multi-hot (N, K) labels the accuracy is subset accuracy: the whole label set, decided at `threshold`.
    With `tta`, logits are averaged over small shifts (and their mirror images if `tta_mirror`).
    """
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    device = split.x.device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    all_logits = []
    for x, y in iterate_batches(split, batch_size):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, autocast_dtype):
            if tta:
                logits = torch.stack([model(v).float() for v in tta_views(x, tta_mirror)]).mean(0)
            else:
                logits = model(x).float()
        total_loss += compute_loss(logits, y, loss, reduction="sum").double()
        if y.dim() == 1:
            correct += (predict_classes(logits) == y).sum()
        else:
            correct += (predict_labels(logits, loss, threshold) == y.bool()).all(1).sum()
        all_logits.append(logits)
    model.train(was_training)
    n = max(1, len(split))
    logits = torch.cat(all_logits).cpu() if all_logits else torch.zeros(0)
    # .item() is a sync point: one per evaluation.
    return EvalResult(total_loss.item() / n, correct.item() / n, logits, time.perf_counter() - start)


@dataclass
class TrainState:
    """Where training stands: enough, with the weights and optimiser, to resume bit for bit."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # next batch within the current epoch
    best_val_acc: float = -1.0
    train_seconds: float = 0.0
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Hooks:
    """Optional callbacks through which `fit` talks to the CLI, a notebook or a test."""

    on_step: Callable[[dict], None] | None = None  # every step: {"step", "epoch", "batch", "loss"?}
    on_log: Callable[[dict], None] | None = None  # every log_every steps: a "step" record
    on_epoch_end: Callable[[dict], None] | None = None  # an "epoch" record
    on_epoch_start: Callable[[int, int], None] | None = None  # (epoch, batches in it)
    save_checkpoint: Callable[[str, "TrainState"], None] | None = None  # ("last" | "best", state)
    should_stop: Callable[[], bool] | None = None  # polled after every step (Ctrl-C, SIGTERM)


class TrainingInterrupted(Exception):
    """Raised by `fit` after it saved a resumable checkpoint because `should_stop()` said so."""

    def __init__(self, state: TrainState):
        super().__init__(f"interrupted at step {state.step}")
        self.state = state


@dataclass
class History:
    """What `fit` returns: per-epoch records, the final test result and the timings."""

    epochs: list[dict] = field(default_factory=list)
    test: EvalResult | None = None
    train_seconds: float = 0.0
    test_seconds: float = 0.0
    stopped_early: bool = False
    state: TrainState | None = None


def check_device(cfg: Config, data: DataBundle) -> torch.device:
    """The device training runs on: the data's. A `cfg.device` other than 'auto' must name that device."""
    device = data.train.x.device
    if cfg.device != "auto" and not same_device(resolve_device(cfg.device), device):
        raise ConfigError(
            f"device {cfg.device!r} was asked for, but the data is on {device}: load the data there "
            f"(load_dataset(..., device={cfg.device!r})) or leave the device 'auto'"
        )
    return device


class Trainer:
    """Holds the model, optimiser, data and RNG state of one run; `fit()` runs it to the end.

    Training runs where the data is: the model is moved, in place, to the data's device (its parameters
    keep their identity, so a given optimiser still holds them; state it already has is not moved), and
    a `cfg.device` other than 'auto' that names another device is a ConfigError.
    """

    def __init__(self, model: nn.Module, data: DataBundle, cfg: Config, optimizer: torch.optim.Optimizer | SGD | None = None,
                 state: TrainState | None = None, aug_generator: torch.Generator | None = None):
        self.model, self.data, self.cfg = model, data, cfg
        self.device = check_device(cfg, data)
        model.to(self.device)  # a no-op when the model is already there
        self.channels_last = use_channels_last(model, self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = optimizer or build_optimizer(model, cfg)
        self.state = state or TrainState()
        self.aug_generator = aug_generator or torch.Generator().manual_seed(cfg.seed + 1)
        self.steps_per_epoch = num_batches(len(data.train), cfg.batch_size)
        self.total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.autocast_dtype = torch.bfloat16 if (cfg.bf16 and self.device.type == "cuda") else None
        self.forward = torch.compile(model) if cfg.compile else model

    def lr(self, step: int) -> float:
        cfg = self.cfg
        return lr_at(step, self.total_steps, cfg.peak_lr, cfg.schedule, cfg.warmup, self.steps_per_epoch, cfg.step_every, cfg.gamma)

    def evaluate(self, split: Split, tta: bool = False) -> EvalResult:
        return evaluate(self.forward, split, self.cfg.loss, self.cfg.eval_batch_size, tta, self.channels_last, self.autocast_dtype,
                        self.cfg.threshold, tta_mirror=self.cfg.aug_flip)

    def fit(self, hooks: Hooks | None = None) -> History:
        """Train until `total_steps` (or the target accuracy), evaluating on validation each epoch."""
        hooks = hooks or Hooks()
        cfg, st, model, opt = self.cfg, self.state, self.model, self.optimizer
        history = History(state=st)
        model.train()
        log_loss = torch.zeros((), device=self.device)
        log_correct = torch.zeros((), device=self.device, dtype=torch.long)
        log_items = 0
        epoch_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        epoch_correct = torch.zeros((), device=self.device, dtype=torch.long)
        epoch_items = 0
        while st.step < self.total_steps and not st.finished:
            perm = epoch_permutation(len(self.data.train), cfg.seed, st.epoch, self.device)
            if hooks.on_epoch_start:
                hooks.on_epoch_start(st.epoch, self.steps_per_epoch)
            epoch_start = time.perf_counter()
            for x, y in iterate_batches(self.data.train, cfg.batch_size, perm, start=st.batch):
                if cfg.augment:
                    x = augment_batch(x, self.aug_generator, cfg.aug_shift, cfg.aug_rotate, cfg.aug_scale, cfg.aug_flip)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = self.lr(st.step)
                for group in opt.param_groups:
                    group["lr"] = lr
                with autocast(self.device, self.autocast_dtype):
                    logits = self.forward(x).float()
                loss = compute_loss(logits, y, cfg.loss, cfg.effective_label_smoothing)
                # One sync per step: a NaN/inf loss must stop the run before it poisons the weights.
                if not torch.isfinite(loss).item():
                    raise TrainingDiverged(
                        f"the loss became {loss.item()} at step {st.step + 1} (lr {lr:.3g}): training stopped; "
                        f"try a lower learning rate, e.g. --lr {cfg.peak_lr / 10:g}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                st.step += 1
                st.batch += 1
                n = y.shape[0]
                with torch.no_grad():
                    if y.dim() == 1:
                        correct = (predict_classes(logits) == y).sum()
                    else:  # multi-hot: subset accuracy, the whole set right
                        correct = (predict_labels(logits, cfg.loss, cfg.threshold) == y.bool()).all(1).sum()
                    log_loss += loss.detach() * n
                    log_correct += correct
                    epoch_loss += loss.detach().double() * n
                    epoch_correct += correct
                log_items += n
                epoch_items += n
                if hooks.on_step:
                    hooks.on_step({"step": st.step, "epoch": st.epoch, "batch": st.batch, "loss": loss, "items": n})
                if st.step % cfg.log_every == 0 and hooks.on_log:
                    hooks.on_log({
                        "kind": "step", "step": st.step, "epoch": st.epoch + st.batch / self.steps_per_epoch,
                        "loss": log_loss.item() / log_items, "acc": log_correct.item() / log_items, "lr": lr,
                    })  # .item(): a sync point, once per log_every steps
                    log_loss.zero_()
                    log_correct.zero_()
                    log_items = 0
                if st.step >= self.total_steps:
                    break
                if hooks.should_stop and hooks.should_stop():
                    st.train_seconds += time.perf_counter() - epoch_start
                    if hooks.save_checkpoint:
                        hooks.save_checkpoint("last", st)
                    raise TrainingInterrupted(st)
            synchronize(self.device)  # once per epoch: the epoch's time includes its queued GPU work
            epoch_seconds = time.perf_counter() - epoch_start
            st.train_seconds += epoch_seconds
            record = {
                "kind": "epoch", "epoch": st.epoch + 1, "step": st.step,
                "train_loss": epoch_loss.item() / max(1, epoch_items), "train_acc": epoch_correct.item() / max(1, epoch_items),
                "val_loss": None, "val_acc": None, "time_s": epoch_seconds,
            }
            if self.data.val is not None and len(self.data.val):
                val = self.evaluate(self.data.val)
                record.update(val_loss=val.loss, val_acc=val.acc, val_time_s=val.seconds)
                if val.acc > st.best_val_acc:
                    st.best_val_acc = val.acc
                    if hooks.save_checkpoint:
                        hooks.save_checkpoint("best", st)
                if cfg.target_acc is not None and val.acc >= cfg.target_acc:
                    st.finished = True
                    history.stopped_early = st.step < self.total_steps
            history.epochs.append(record)
            epoch_loss.zero_()
            epoch_correct.zero_()
            epoch_items = 0
            if st.batch >= self.steps_per_epoch:
                st.epoch += 1
                st.batch = 0
            st.finished = st.finished or st.step >= self.total_steps
            if hooks.save_checkpoint:
                hooks.save_checkpoint("last", st)
            if hooks.on_epoch_end:
                hooks.on_epoch_end(record)
        history.train_seconds = st.train_seconds
        test = self.evaluate(self.data.test, tta=cfg.tta)
        history.test, history.test_seconds = test, test.seconds
        return history


def fit(model: nn.Module, data: DataBundle, cfg: Config, hooks: Hooks | None = None) -> History:
    """Train `model` on `data` as `cfg` says and evaluate it on the test split.

    The model is moved (in place) to the device the data is on, e.g. `load_dataset(..., device="cuda")`;
    `cfg.device` other than 'auto' must name that same device, or a ConfigError says so.
    """
    return Trainer(model, data, cfg).fit(hooks)
