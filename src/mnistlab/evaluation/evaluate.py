"""Evaluate a saved model on any split of any compatible data set."""

from __future__ import annotations

import torch

from mnistlab.runs.checkpoint import load_checkpoint
from mnistlab.data.loader import Split, build_bundle, load_any
from mnistlab.errors import ConfigError, DataError
from mnistlab.training.losses import as_class_logits, class_probabilities
from mnistlab.evaluation.metrics import classification_report, multilabel_report
from mnistlab.training.trainer import evaluate, resolve_device, uses_convolutions


def evaluate_checkpoint(path: str, dataset: str | None = None, split: str = "test", data_dir: str | None = None,
                        device: str = "auto", tta: bool | None = None, batch_size: int = 2000,
                        threshold: float | None = None) -> dict:
    """The full classification report of a checkpoint on a split, with the data normalised as in training.

    Args:
        threshold: multi-label data: a label is predicted when its probability is >= this (default: the run's).
    """
    # Arguments first, before any loading: one clear line for a bad one (ConfigError -> exit 2 in the CLI).
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"--threshold is a probability in (0, 1), got {threshold}")
    ckpt = load_checkpoint(path)
    cfg = ckpt.cfg
    name = dataset or cfg.dataset
    dev = resolve_device(device)
    # Custom (folder:/csv:) data is rebuilt with the run's own preparation settings and split seed.
    raw = load_any(name, data_dir=data_dir if dataset else (data_dir or cfg.data_dir), image_size=cfg.image_size,
                   channels=cfg.channels, test_size=cfg.test_size, seed=cfg.seed)
    mean, std = ckpt.norm
    # The test split needs none of the training images: skip normalising and copying them.
    train_x, train_y = (raw.train_x, raw.train_y) if split != "test" else (raw.train_x[:1], raw.train_y[:1])
    bundle = build_bundle(
        train_x, train_y, raw.test_x, raw.test_y, raw.class_names, name=name,
        val_size=cfg.val_size if split != "test" else 0, normalize="unit", device=dev, seed=cfg.seed,
        classes=cfg.classes, positive=cfg.positive, warn=False,  # evaluating: the split's warnings were for training
    )
    chosen = {"test": bundle.test, "val": bundle.val, "train": bundle.train}[split]
    if chosen is None:
        raise DataError(f"{ckpt.path}: this run had no validation split (--val-size 0), so --split val has nothing")
    if tuple(chosen.shape[1:]) != ckpt.in_shape:
        raise DataError(f"{name}: images are {tuple(chosen.shape[1:])} but {ckpt.path} was trained on {ckpt.in_shape}")
    if len(bundle.class_names) != len(ckpt.class_names):
        raise DataError(f"{name}: {len(bundle.class_names)} classes, but {ckpt.path} has {len(ckpt.class_names)}")
    chosen = Split.from_pixels(chosen.pixels, chosen.y, tuple(mean), tuple(std))  # the training statistics
    model = ckpt.build_model().to(dev)
    channels_last = uses_convolutions(model) and dev.type != "mps"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    threshold = cfg.threshold if threshold is None else threshold  # the run's own was validated by its Config
    result = evaluate(model, chosen, cfg.loss, batch_size, cfg.effective_tta if tta is None else tta, channels_last, threshold=threshold,
                      tta_mirror=cfg.aug_flip, tta_views_count=cfg.tta_views)
    if chosen.y.dim() == 2:  # multi-hot label sets
        decision = f"{'sigmoid' if cfg.loss == 'bce' else 'softmax'} >= {threshold:g}"
        report = multilabel_report(class_probabilities(result.logits, cfg.loss), chosen.y.cpu(), list(ckpt.class_names),
                                   threshold, loss=result.loss, decision=decision)
    else:
        report = classification_report(as_class_logits(result.logits), chosen.y.cpu(), list(ckpt.class_names), loss=result.loss)
    report.update(checkpoint=str(ckpt.path), dataset=name, split=split, seconds=result.seconds)
    return report
