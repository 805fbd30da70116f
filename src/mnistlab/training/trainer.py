"""The one training loop: `Trainer`, the `Task` it trains on, `evaluate` and `fit`.

The Trainer owns what every torch run shares: the learning rate per step, zero_grad / backward /
clip / step, stopping on a NaN loss (TrainingDiverged), Ctrl-C (`should_stop`), the hooks, the
checkpoint hook and the timing. A `Task` supplies the rest: the batches of an epoch, the loss of a
batch, and what to evaluate. `ImageTask` (image classification, the default) is one; the character
LM's task (lessons/lm/train.py) is another. Progress, checkpoints and interrupts reach the outside
world only through the small `Hooks` object that the caller passes.

`lr_at` lives in training/schedule.py and `build_optimizer` in training/optim.py; both stay
importable from here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.config import Config
from mnistlab.data.loader import DataBundle, Split, augment_batch, epoch_permutation, iterate_batches, num_batches
# resolve_device and uses_convolutions moved to device.py; they stay importable from here.
from mnistlab.device import autocast, resolve_device, same_device, synchronize, use_channels_last, uses_convolutions
from mnistlab.errors import ConfigError, TrainingDiverged
from mnistlab.models.tta import TTA_SHIFTS, TTAModel, shift_images, tta_shifts, tta_views  # noqa: F401  (importable from here)
from mnistlab.training.distributed import Dist, current, wrap
from mnistlab.training.losses import compute_loss, predict_classes, predict_labels
from mnistlab.training.optim import SGD, build_optimizer
from mnistlab.training.schedule import lr_at


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
             tta_mirror: bool = False, tta_views_count: int = 5) -> EvalResult:
    """Eval mode, no shuffling, no dropped batch: sum the loss over items and divide by N.

    For multi-hot (N, K) labels the accuracy is subset accuracy: the whole label set, decided at `threshold`.
    With `tta`, logits are averaged over `tta_views_count` small shifts (and their mirror images if `tta_mirror`).
    """
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    device = split.device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    all_logits = []
    for x, y in iterate_batches(split, batch_size):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, autocast_dtype):
            if tta:
                logits = TTAModel(model, tta_views_count, tta_mirror)(x)
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


# Steps between reads of the loss's finiteness on a GPU (each read waits for the GPU's queue to drain).
FINITE_CHECK_EVERY = 25


def finite_check_every(device: torch.device) -> int:
    """How often the loop reads whether the loss is finite: every step on the CPU, where the read is
    free and a bad step is never applied; every FINITE_CHECK_EVERY steps on an accelerator."""
    return 1 if device.type == "cpu" else FINITE_CHECK_EVERY


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
    on_eval: Callable[[dict], None] | None = None  # a task evaluated every `eval_every` steps: its record


class TrainingInterrupted(Exception):
    """Raised by `fit` after it saved a resumable checkpoint because `should_stop()` said so."""

    def __init__(self, state: TrainState):
        super().__init__(f"interrupted at step {state.step}")
        self.state = state


@dataclass
class History:
    """What `fit` returns: the records (one per epoch, or per evaluation), the final result and the timings."""

    epochs: list[dict] = field(default_factory=list)
    test: Any = None  # an EvalResult for the image task; what the task's `test` returns otherwise
    train_seconds: float = 0.0
    test_seconds: float = 0.0
    stopped_early: bool = False
    state: TrainState | None = None


@dataclass
class Window:
    """Training loss and accuracy summed since the last record (on the device: no sync per step)."""

    loss: torch.Tensor  # sum over items of the loss, float64
    correct: torch.Tensor  # items predicted right (when the task counts them)
    items: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> "Window":
        return cls(torch.zeros((), device=device, dtype=torch.float64), torch.zeros((), device=device, dtype=torch.long))

    def mean_loss(self) -> float:
        return self.loss.item() / max(1, self.items)

    def accuracy(self) -> float:
        return self.correct.item() / max(1, self.items)

    def reset(self) -> None:
        self.loss.zero_()
        self.correct.zero_()
        self.items = 0


class Task:
    """What the Trainer trains on: the batches of an epoch, the loss of one, and what to evaluate.

    Subclasses set `steps_per_epoch` and `device` and implement `batches` and `loss`; the rest have
    defaults. `eval_every` None evaluates at the end of every epoch (one "epoch" record each);
    a number evaluates every that many steps and at the last step (one record each, via Hooks.on_eval).
    """

    steps_per_epoch: int = 1
    device: torch.device = torch.device("cpu")
    eval_every: int | None = None

    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        """The batches of `epoch` from batch `start` on (0 when an epoch begins; more when resuming)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """(mean loss of the batch, items in it, items predicted right or None) in training mode."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict | None:
        """Validation metrics at an evaluation point (None: nothing to validate on)."""
        return None

    def score(self, val: dict) -> float | None:
        """The number a better model has more of (a "best" checkpoint and the target follow it); None: none."""
        return None

    def record(self, state: TrainState, window: Window, val: dict | None, seconds: float) -> dict:
        """The record of an evaluation point: `window` holds the training loss since the previous one,
        `seconds` the training time since then (evaluation excluded)."""
        return {"kind": "eval", "step": state.step, "epoch": state.step / self.steps_per_epoch,
                "train_loss": window.mean_loss(), **(val or {}), "time_s": state.train_seconds}

    def test(self, model: nn.Module) -> tuple[Any, float]:
        """(the final result, seconds it took) once training is over."""
        return None, 0.0

    def diverged(self, loss: float, step: int, lr: float) -> str:
        """The TrainingDiverged message for a non-finite loss at optimiser step `step` (1-based)."""
        return f"the loss became {loss} at step {step} (lr {lr:.3g}): training stopped; try a lower learning rate"


class ImageTask(Task):
    """Image classification (the default task): shuffled, augmented batches of a DataBundle, evaluated
    on its validation split at the end of every epoch and on its test split at the end."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.device = trainer.device

    @property
    def steps_per_epoch(self) -> int:  # type: ignore[override]
        return self.trainer.steps_per_epoch

    def batches(self, epoch: int, start: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        tr, cfg = self.trainer, self.trainer.cfg
        perm = epoch_permutation(len(tr.data.train), cfg.seed, epoch, self.device)  # now, not on the first batch

        def generate() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            for x, y, rows in _rank_batches(tr.data.train, cfg.batch_size, perm, start, tr.dist):
                if cfg.augment:
                    x = augment_batch(x, tr.aug_generator, cfg.aug_shift, cfg.aug_rotate, cfg.aug_scale, cfg.aug_flip,
                                      rows=rows)
                if tr.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, y

        return generate()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, torch.Tensor]:
        tr, cfg = self.trainer, self.trainer.cfg
        x, y = batch
        with autocast(self.device, tr.autocast_dtype):
            logits = model(x).float()
        if y.shape[0]:
            loss = compute_loss(logits, y, cfg.loss, cfg.effective_label_smoothing)
        else:  # an empty share of a last batch smaller than the world: zero gradients, still in DDP's graph
            loss = logits.sum() * 0.0
        with torch.no_grad():
            if y.dim() == 1:
                correct = (predict_classes(logits) == y).sum()
            else:  # multi-hot: subset accuracy, the whole set right
                correct = (predict_labels(logits, cfg.loss, cfg.threshold) == y.bool()).all(1).sum()
        return loss, y.shape[0], correct

    def evaluate(self, model: nn.Module) -> dict | None:
        val_split = self.trainer.data.val
        if val_split is None or not len(val_split):
            return None
        val = self.trainer.evaluate(val_split)
        return {"val_loss": val.loss, "val_acc": val.acc, "val_time_s": val.seconds}

    def score(self, val: dict) -> float | None:
        return val["val_acc"]

    def record(self, state: TrainState, window: Window, val: dict | None, seconds: float) -> dict:
        record = {
            "kind": "epoch", "epoch": state.epoch + 1, "step": state.step,
            "train_loss": window.mean_loss(), "train_acc": window.accuracy(),
            "val_loss": None, "val_acc": None, "time_s": seconds,
        }
        record.update(val or {})
        return record

    def test(self, model: nn.Module) -> tuple[EvalResult, float]:
        test = self.trainer.evaluate(self.trainer.data.test, tta=self.trainer.cfg.effective_tta)
        return test, test.seconds

    def diverged(self, loss: float, step: int, lr: float) -> str:
        return (f"the loss became {loss} at step {step} (lr {lr:.3g}): training stopped; "
                f"try a lower learning rate, e.g. --lr {self.trainer.cfg.peak_lr / 10:g}")


def _rank_batches(split: Split, batch_size: int, perm: torch.Tensor, start: int,
                  dist: Dist) -> Iterable[tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]]:
    """(x, y, rows) of this rank's share of each global batch of `batch_size` from batch `start` on.

    One process: the whole batch (rows None). Under DDP each global batch perm[i:i+B] is cut into
    contiguous shares (Dist.share); rows = (first row, global batch size) lets augmentation draw the
    global batch's random numbers and take this share's, as one process would.
    """
    if not dist.active:
        for x, y in iterate_batches(split, batch_size, perm, start=start):
            yield x, y, None
        return
    n = len(split)
    for i in range(start * batch_size, n, batch_size):
        size = min(batch_size, n - i)
        lo, hi = dist.share(0, size)
        idx = perm[i + lo : i + hi]
        yield *split.take(idx), (lo, size)


def combine_eval(part: EvalResult, dist: Dist) -> EvalResult:
    """Exact sums over the ranks' parts of a split: the loss and accuracy of the whole, logits in order."""
    m = part.logits.shape[0]
    t = torch.tensor([part.loss * m, round(part.acc * m), m], dtype=torch.float64, device=dist.comm_device)
    loss_sum, correct, n = dist.all_reduce_sum(t).tolist()
    logits = dist.all_gather_rows(part.logits.to(dist.comm_device)).to(part.logits.device)
    n = max(1.0, n)
    return EvalResult(loss_sum / n, correct / n, logits, part.seconds)


def check_device(cfg: Config, data: DataBundle) -> torch.device:
    """The device training runs on: the data's. A `cfg.device` other than 'auto' must name that device."""
    device = data.train.device
    if cfg.device != "auto" and not same_device(resolve_device(cfg.device), device):
        raise ConfigError(
            f"device {cfg.device!r} was asked for, but the data is on {device}: load the data there "
            f"(load_dataset(..., device={cfg.device!r})) or leave the device 'auto'"
        )
    return device


class Trainer:
    """Holds the model, optimiser, task and RNG state of one run; `fit()` runs it to the end.

    `Trainer(model, data, cfg)` trains an image classifier (the ImageTask) as the Config says. Training
    runs where the data is: the model is moved, in place, to the data's device (its parameters keep
    their identity, so a given optimiser still holds them; state it already has is not moved), and a
    `cfg.device` other than 'auto' that names another device is a ConfigError.

    `Trainer(model, task=..., optimizer=..., total_steps=..., schedule=...)` trains any other Task
    (the character LM's) with the same loop; `schedule(step)` is the learning rate of step `step`.
    """

    def __init__(self, model: nn.Module, data: DataBundle | None = None, cfg: Config | None = None,
                 optimizer: torch.optim.Optimizer | SGD | None = None, state: TrainState | None = None,
                 aug_generator: torch.Generator | None = None, *, task: Task | None = None,
                 total_steps: int | None = None, schedule: Callable[[int], float] | None = None,
                 grad_clip: float = 0.0, log_every: int = 0):
        self.model, self.data, self.cfg = model, data, cfg
        self.state = state or TrainState()
        if task is not None:
            if optimizer is None or total_steps is None or schedule is None:
                raise TypeError("Trainer(task=...) needs an optimizer, total_steps and a schedule")
            self.task, self.device = task, task.device
            self.dist = Dist()  # other tasks train in one process
            model.to(self.device)
            self.optimizer, self.total_steps, self.schedule = optimizer, total_steps, schedule
            self.steps_per_epoch = task.steps_per_epoch
            self.grad_clip, self.log_every, self.target = grad_clip, log_every, None
            self.forward = model
            self.finite_check_every = finite_check_every(self.device)
            return
        if data is None or cfg is None:
            raise TypeError("Trainer needs data and a cfg (or a task)")
        self.device = check_device(cfg, data)
        model.to(self.device)  # a no-op when the model is already there
        self.channels_last = use_channels_last(model, self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = optimizer or build_optimizer(model, cfg)
        self.aug_generator = aug_generator or torch.Generator().manual_seed(cfg.seed + 1)
        self.steps_per_epoch = num_batches(len(data.train), cfg.batch_size)
        self.total_steps = cfg.total_steps(self.steps_per_epoch)
        self.autocast_dtype = torch.bfloat16 if (cfg.bf16 and self.device.type == "cuda") else None
        # Under torchrun (training/distributed.py) training steps go through DistributedDataParallel;
        # evaluation runs the bare model on this rank's part of a split and sums the parts.
        self.dist = current()
        self.local_forward = torch.compile(model) if cfg.compile else model
        self.forward = self.local_forward
        if self.dist.active:
            ddp = wrap(model, self.dist)
            self.forward = torch.compile(ddp) if cfg.compile else ddp
        self.schedule = None
        self.grad_clip, self.log_every, self.target = cfg.grad_clip, cfg.log_every, cfg.target_acc
        self.finite_check_every = finite_check_every(self.device)
        self.task = ImageTask(self)

    def lr(self, step: int) -> float:
        if self.schedule is not None:
            return self.schedule(step)
        cfg = self.cfg
        return lr_at(step, self.total_steps, cfg.peak_lr, cfg.schedule, cfg.warmup, self.steps_per_epoch, cfg.step_every, cfg.gamma)

    def evaluate(self, split: Split, tta: bool = False) -> EvalResult:
        dist = self.dist
        if dist.active:
            dist.broadcast_buffers(self.model)  # every rank evaluates rank 0's model (batch norm statistics)
            lo, hi = dist.share(0, len(split))
            split = split.part(lo, hi)
        result = evaluate(self.local_forward, split, self.cfg.loss, self.cfg.eval_batch_size, tta, self.channels_last,
                          self.autocast_dtype, self.cfg.threshold, tta_mirror=self.cfg.aug_flip,
                          tta_views_count=self.cfg.tta_views)
        return combine_eval(result, dist) if dist.active else result

    def fit(self, hooks: Hooks | None = None) -> History:
        """Train until `total_steps` (or the target), evaluating as the task says, then run its test."""
        hooks = hooks or Hooks()
        st, model, opt, task = self.state, self.model, self.optimizer, self.task
        eval_every = task.eval_every
        history = History(state=st)
        model.train()
        log_loss = torch.zeros((), device=self.device)
        log_correct = torch.zeros((), device=self.device, dtype=torch.long)
        log_items, counts_correct = 0, False
        window = Window.zeros(self.device)  # since the last record: the epoch, or the last evaluation
        every = self.finite_check_every
        deferred_check = every > 1 and not self.dist.active  # (under DDP reduce_step reads the loss anyway)
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        unchecked: list[int] = []  # steps taken since the loss was last read

        def check_finite() -> None:
            """Raise if a loss since the last check was NaN/inf (a sync point, once per `every` steps)."""
            if unchecked and bad.item():
                first, last = unchecked[0], unchecked[-1]
                message = task.diverged(float("nan"), first, self.lr(first - 1)).replace(
                    f"became nan at step {first}", f"became NaN or inf within steps {first}-{last} "
                    f"(read every {every} steps on {self.device.type})", 1)
                raise TrainingDiverged(message)
            unchecked.clear()

        def evaluation_point(seconds: float) -> dict:
            """Validate, record, keep the best; `seconds` of training since the previous point."""
            check_finite()
            val = task.evaluate(self.forward)
            record = task.record(st, window, val, seconds)
            score = task.score(val) if val is not None else None
            if score is not None:
                if score > st.best_val_acc:
                    st.best_val_acc = score
                    if hooks.save_checkpoint:
                        hooks.save_checkpoint("best", st)
                if self.target is not None and score >= self.target:
                    st.finished = True
                    history.stopped_early = st.step < self.total_steps
            history.epochs.append(record)
            window.reset()
            return record

        while st.step < self.total_steps and not st.finished:
            batches = task.batches(st.epoch, st.batch)
            if hooks.on_epoch_start:
                hooks.on_epoch_start(st.epoch, self.steps_per_epoch)
            epoch_start = clock = time.perf_counter()
            for batch in batches:
                lr = self.lr(st.step)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss, n, correct = task.loss(self.forward, batch)
                backward, stop_agreed = loss, None
                if self.dist.active:  # the global batch's loss and counts; a stop asked on any rank stops all
                    asked = bool(hooks.should_stop and hooks.should_stop())
                    backward, loss, n, correct, stop_agreed = self.dist.reduce_step(loss, n, correct, asked)
                # A NaN/inf loss must stop the run. On the CPU it is read at once (nothing is queued, so
                # the read costs nothing) and the bad step is never applied; on a GPU a read per step
                # would stall its queue, so the check accumulates there and is read every
                # FINITE_CHECK_EVERY steps and before anything is logged, evaluated or saved (check_finite).
                if deferred_check:
                    bad |= ~torch.isfinite(loss.detach())
                    unchecked.append(st.step + 1)
                    if len(unchecked) >= every:
                        check_finite()
                elif not torch.isfinite(loss).item():
                    raise TrainingDiverged(task.diverged(loss.item(), st.step + 1, lr))
                opt.zero_grad(set_to_none=True)
                backward.backward()
                if self.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                opt.step()
                st.step += 1
                st.batch += 1
                with torch.no_grad():
                    log_loss += loss.detach() * n
                    window.loss += loss.detach().double() * n
                    if correct is not None:
                        counts_correct = True
                        log_correct += correct
                        window.correct += correct
                log_items += n
                window.items += n
                if hooks.on_step:
                    hooks.on_step({"step": st.step, "epoch": st.epoch, "batch": st.batch, "loss": loss, "items": n})
                if self.log_every and st.step % self.log_every == 0 and hooks.on_log:
                    check_finite()  # before a NaN is logged (this is a sync point anyway)
                    record = {"kind": "step", "step": st.step, "epoch": st.epoch + st.batch / self.steps_per_epoch,
                              "loss": log_loss.item() / log_items}  # .item(): a sync point, once per log_every steps
                    if counts_correct:
                        record["acc"] = log_correct.item() / log_items
                    hooks.on_log({**record, "lr": lr})
                    log_loss.zero_()
                    log_correct.zero_()
                    log_items = 0
                if eval_every and (st.step % eval_every == 0 or st.step == self.total_steps):
                    now = time.perf_counter()
                    st.train_seconds += now - clock  # evaluation time is not training time
                    record = evaluation_point(now - clock)
                    if hooks.on_eval:
                        hooks.on_eval(record)
                    clock = time.perf_counter()
                if st.step >= self.total_steps or st.finished:
                    break
                if stop_agreed if stop_agreed is not None else (hooks.should_stop and hooks.should_stop()):
                    st.train_seconds += time.perf_counter() - clock
                    check_finite()
                    if hooks.save_checkpoint:
                        hooks.save_checkpoint("last", st)
                    raise TrainingInterrupted(st)
            synchronize(self.device)  # once per epoch: the epoch's time includes its queued GPU work
            now = time.perf_counter()
            st.train_seconds += now - clock
            record = None if eval_every else evaluation_point(now - epoch_start)
            if st.batch >= self.steps_per_epoch:
                st.epoch += 1
                st.batch = 0
            st.finished = st.finished or st.step >= self.total_steps
            check_finite()
            if hooks.save_checkpoint:
                hooks.save_checkpoint("last", st)
            if record is not None and hooks.on_epoch_end:
                hooks.on_epoch_end(record)
        check_finite()
        history.train_seconds = st.train_seconds
        history.test, history.test_seconds = task.test(self.forward)
        return history


# Config fields that describe how the data is loaded or where a run is saved: fit() is handed the
# data already loaded and saves nothing, so a cfg that sets one of them is refused, not ignored.
FIT_REFUSES = {
    "load_dataset(...) takes it": ("data_dir", "val_size", "train_size", "classes", "positive", "normalize",
                                   "image_size", "channels", "test_size"),
    # (save_run and figures may be anything: fit never saves or draws, whatever they say.)
    "only a saved run uses it (TrainSession or `mnistlab train`)": ("out_dir", "name"),
    "fit() trains with torch (the NumPy engine is `mnistlab train --engine numpy`)": ("engine",),
}


def fit(model: nn.Module, data: DataBundle, cfg: Config | None = None, hooks: Hooks | None = None) -> History:
    """Train `model` on `data` as `cfg` says (default: Config()) and evaluate it on the test split.

    The model is moved (in place) to the device the data is on, e.g. `load_dataset(..., device="cuda")`;
    `cfg.device` other than 'auto' must name that same device, or a ConfigError says so. `cfg.threads`
    sets torch's thread count. Settings that belong to load_dataset or to a saved run are refused
    (FIT_REFUSES); the model's own settings (hidden, dropout, ...) describe the model you pass.
    """
    cfg = cfg if cfg is not None else Config()
    defaults = Config()
    refused = [f"{name} ({why})" for why, names in FIT_REFUSES.items() for name in names
               if getattr(cfg, name) != getattr(defaults, name)]
    if data.name and cfg.dataset != defaults.dataset and cfg.dataset != data.name:
        refused.append(f"dataset={cfg.dataset!r} (the data passed is {data.name!r}; load_dataset(...) picks it)")
    if refused:
        raise ConfigError("fit() does not use " + "; ".join(refused))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Trainer(model, data, cfg).fit(hooks)
