"""Train the NumPy models with mini-batch SGD (momentum, weight decay, the usual lr schedule).

`train_numpy(cfg)` reads MNIST through `load_raw`, holds out a stratified validation split, trains,
evaluates on the test set and (with `cfg.save_run`) writes a run directory like a torch run, through the
same RunDir (runs/rundir.py) and checkpoint writer (runs/checkpoint.py): config.json, metrics.jsonl (the
same record kinds) and weights.safetensors (NumPy arrays, no pickle). The loop itself is written out by
hand on purpose (it is the lesson); the learning-rate schedule is the torch Trainer's `lr_at`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mnistlab.config import Config
from mnistlab.errors import CheckpointError, ConfigError, TrainingDiverged
from mnistlab.lessons.scratch.mlp import MLP
from mnistlab.lessons.scratch.softmax import SoftmaxRegression, cross_entropy, softmax

MODELS = ("softmax", "mlp")
DEFAULT_LR = {"softmax": 0.05, "mlp": 0.05}  # with momentum 0.9 and standardised pixels
DEFAULT_HIDDEN = (128,)
WEIGHTS = "weights.safetensors"

Model = SoftmaxRegression | MLP


def create_numpy_model(cfg: Config, num_features: int, num_classes: int) -> Model:
    """The NumPy model named by `cfg.model`; any other name is a ConfigError listing the two."""
    if cfg.model == "softmax":
        return SoftmaxRegression(num_features, num_classes, seed=cfg.seed)
    if cfg.model == "mlp":
        return MLP(num_features, cfg.hidden or DEFAULT_HIDDEN, num_classes, seed=cfg.seed)
    raise ConfigError(f"--engine numpy supports --model {' or '.join(MODELS)}, not {cfg.model!r}")


def _prepare(cfg: Config) -> dict:
    """Flattened float32 splits, standardised with the training pixels' mean and std."""
    from mnistlab.data.raw import load_raw
    from mnistlab.data.splits import split_train_val

    raw = load_raw(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    train_idx, val_idx = split_train_val(raw.train_y, cfg.val_size, cfg.train_size, cfg.seed)

    pixels = raw.train_x[train_idx]
    # Mean and std of the training pixels from their 256-bin histogram (exact, and no float copy).
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum()))
    lut = ((values - mean) / std).astype(np.float32)  # uint8 pixel -> standardised float32, one lookup

    def norm(x: np.ndarray) -> np.ndarray:
        return lut[x.reshape(len(x), -1)]  # (N, H, W) uint8 -> (N, H*W) float32

    return {
        "train": (norm(pixels), raw.train_y[train_idx]),
        "val": (norm(raw.train_x[val_idx]), raw.train_y[val_idx]) if len(val_idx) else None,
        "test": (norm(raw.test_x), raw.test_y),
        "mean": mean, "std": std, "class_names": raw.class_names, "name": raw.name,
    }


def evaluate_numpy(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, float]:
    """(mean cross entropy, accuracy) over all of x, in batches, no shuffling."""
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits, _ = model.forward(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        loss_sum += cross_entropy(softmax(logits), yb) * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def train_numpy(cfg: Config, on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train `cfg.model` (softmax or mlp) in NumPy; return history, test metrics, model and run path."""
    from mnistlab.training.schedule import lr_at

    if cfg.model not in MODELS:
        raise ConfigError(f"--engine numpy supports --model {' or '.join(MODELS)}, not {cfg.model!r}")
    data = _prepare(cfg)
    x_train, y_train = data["train"]
    num_classes = len(data["class_names"])
    model = create_numpy_model(cfg, x_train.shape[1], num_classes)
    peak_lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.model]
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total_steps = cfg.total_steps(steps_per_epoch)

    run = None
    if cfg.save_run:
        from mnistlab.runs.rundir import RunDir

        run = RunDir.create(cfg)
    try:
        rng = np.random.default_rng(cfg.seed)
        velocity = {k: np.zeros_like(v) for k, v in model.params.items()}
        history: list[dict] = []
        step, epoch, train_seconds = 0, 0, 0.0
        while step < total_steps:
            start = time.perf_counter()
            order = rng.permutation(len(x_train))
            loss_sum, correct, seen = 0.0, 0, 0
            for i in range(0, len(order), cfg.batch_size):
                if step >= total_steps:
                    break
                idx = order[i : i + cfg.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                loss, logits, grads = model.loss_and_grads(xb, yb)
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"the loss became {loss} at step {step}: lower --lr (now {peak_lr})")
                lr = lr_at(step, total_steps, peak_lr, cfg.schedule, cfg.warmup, steps_per_epoch, cfg.step_every, cfg.gamma)
                for name, p in model.params.items():
                    g = grads[name]
                    if cfg.weight_decay and name.startswith("W"):  # decay weights, not biases
                        g = g + cfg.weight_decay * p
                    v = velocity[name]
                    v *= cfg.momentum
                    v += g
                    # Nesterov looks one momentum step ahead: the update uses g + momentum * v.
                    p -= np.float32(lr) * (g + cfg.momentum * v if cfg.nesterov else v)
                loss_sum += loss * len(yb)
                correct += int((logits.argmax(axis=1) == yb).sum())
                seen += len(yb)
                step += 1
            seconds = time.perf_counter() - start
            train_seconds += seconds
            epoch += 1
            record = {"kind": "epoch", "epoch": epoch, "step": step, "train_loss": loss_sum / seen,
                      "train_acc": correct / seen, "val_loss": None, "val_acc": None, "time_s": seconds}
            if data["val"] is not None:
                record["val_loss"], record["val_acc"] = evaluate_numpy(model, *data["val"], cfg.eval_batch_size)
            history.append(record)
            if run:
                run.log(record)
            if on_epoch_end:
                on_epoch_end(record)

        start = time.perf_counter()
        test_loss, test_acc = evaluate_numpy(model, *data["test"], cfg.eval_batch_size)
        test_seconds = time.perf_counter() - start
        test = {"kind": "test", "step": step, "test_loss": test_loss, "test_acc": test_acc,
                "train_time_s": train_seconds, "test_time_s": test_seconds}
        if run:
            run.log(test)
    except BaseException:
        # As a torch run does: a run that fails (diverges, Ctrl-C) before its first record leaves nothing
        # worth keeping and is removed; one that logged records keeps them (and its --name is reusable).
        if run:
            run.remove_if_failed_start()
        raise
    if run:
        save_numpy_model(run.path / WEIGHTS, model, cfg, data["class_names"], (data["mean"], data["std"]))
        run.release()
    return {
        "model": model, "history": history, "test": test, "run_dir": run.path if run else None,
        "num_train": len(x_train), "num_val": 0 if data["val"] is None else len(data["val"][1]),
        "num_test": len(data["test"][1]), "dataset": data["name"], "lr": peak_lr,
        "train_seconds": train_seconds, "test_seconds": test_seconds,
    }


def save_numpy_model(path: str | os.PathLike, model: Model, cfg: Config, class_names: tuple[str, ...],
                     norm: tuple[float, float]) -> Path:
    """Weights as a safetensors file of NumPy arrays; config, classes and normalisation in its metadata."""
    from mnistlab.runs.checkpoint import write_checkpoint

    meta = {"config": cfg.to_dict(), "class_names": list(class_names), "mean": norm[0], "std": norm[1]}
    return write_checkpoint(path, "numpy", dict(model.params), meta)


def load_numpy_model(path: str | os.PathLike) -> tuple[Model, dict]:
    """Rebuild a NumPy model (file or run directory) from its weights and stored config."""
    from mnistlab.runs.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path, "numpy")  # the one reader: format, kind, finite weights, valid config
    tensors, meta = ckpt.tensors, ckpt.meta
    try:
        num_features = tensors["W" if ckpt.cfg.model == "softmax" else "W0"].shape[0]
        model = create_numpy_model(ckpt.cfg, num_features, len(meta["class_names"]))
    except (KeyError, ConfigError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: its weights or config are inconsistent ({e})") from None
    for k in model.params:
        if k not in tensors:
            raise CheckpointError(f"{ckpt.path}: tensor {k} is missing")
        if model.params[k].shape != tensors[k].shape:
            raise CheckpointError(f"{ckpt.path}: {k} is {tensors[k].shape}, the config builds {model.params[k].shape}")
        model.params[k] = tensors[k]
    return model, meta
