"""Real data: the embedded MNIST, trained on the fast path inside the default suite (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab.config import Config
from mnistlab.data.loader import build_bundle
from mnistlab.session import TrainSession

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_embedded_mnist_is_the_real_split(mnist_raw):
    assert mnist_raw.train_x.shape == (60000, 28, 28) and mnist_raw.test_x.shape == (10000, 28, 28)
    assert np.bincount(mnist_raw.train_y).tolist() == MNIST_TRAIN_COUNTS


def test_validation_split_is_stratified_and_disjoint(mnist_raw):
    data = build_bundle(mnist_raw.train_x, mnist_raw.train_y, mnist_raw.test_x, mnist_raw.test_y,
                        tuple("0123456789"), val_size=5000, seed=0)
    assert len(data.train) == 55000 and len(data.val) == 5000
    val_counts = torch.bincount(data.val.y).numpy()
    expected = np.array(MNIST_TRAIN_COUNTS) * 5000 / 60000
    assert np.abs(val_counts - expected).max() <= 1
    # standard normalisation: the training images have mean 0 and std 1 after it
    assert abs(data.train.x.mean().item()) < 0.01 and abs(data.train.x.std().item() - 1) < 0.01


def test_default_model_reaches_98_5_percent(mnist_raw, tmp_path):
    """The default CNN and schedule, cut to one epoch to keep the suite quick: at least 98.5%."""
    cfg = Config(epochs=1, out_dir=str(tmp_path), name="mnist", figures=False, threads=2)
    history = TrainSession.start(cfg).fit()
    assert history.test.acc >= 0.985, f"test accuracy {history.test.acc:.2%}"
    # the checkpoint, reloaded, scores the same on the test set
    from mnistlab.evaluation import evaluate_checkpoint

    report = evaluate_checkpoint(str(tmp_path / "mnist" / "last.safetensors"), device="cpu")
    assert report["accuracy"] == pytest.approx(history.test.acc, abs=1e-6)


def test_deep_sgd_mlp_fails_and_kaiming_batch_norm_fixes_it(mnist_raw):
    """The lecture's 9-layer MLP with SGD lr 0.01 predicts one class; Kaiming + batch norm learns."""
    hidden = (650, 530, 420, 350, 290, 200, 150, 80)
    lecture = dict(model="mlp", hidden=hidden, optimizer="sgd", lr=0.01, momentum=0.5, nesterov=False,
                   batch_size=64, schedule="constant", warmup=0.0, weight_decay=0.0, save_run=False,
                   train_size=6400, val_size=0, epochs=1, threads=2)
    stuck = TrainSession.start(Config(**lecture)).fit()
    preds = stuck.test.logits.argmax(1)
    assert torch.bincount(preds, minlength=10).max().item() > 0.9 * len(preds)  # one class for (nearly) every image
    assert stuck.test.acc < 0.2
    fixed = TrainSession.start(Config(**{**lecture, "init": "kaiming", "batch_norm": True})).fit()
    assert fixed.test.acc > 0.7
