"""Real data: the embedded MNIST, trained on the fast path inside the default suite (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistlab.config import Config
from mnistlab.data.loader import build_bundle
from mnistlab.runs.session import TrainSession
from cores import THREADS

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


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """The default CNN and schedule, cut to one epoch to keep the suite quick."""
    out = tmp_path_factory.mktemp("runs")
    cfg = Config(epochs=1, out_dir=str(out), name="mnist", figures=False, threads=THREADS)
    history = TrainSession.start(cfg).fit()
    return out / "mnist", history


@pytest.mark.slow
def test_default_model_reaches_98_5_percent(mnist_run):
    run, history = mnist_run
    assert history.test.acc >= 0.985, f"test accuracy {history.test.acc:.2%}"
    # the checkpoint, reloaded, scores the same on the test set
    from mnistlab.evaluation.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(str(run / "last.safetensors"), device="cpu")
    assert report["accuracy"] == pytest.approx(history.test.acc, abs=1e-6)


def _drawn_digits():
    """Digits drawn as a person would in an image editor: thick black strokes on a large white canvas."""
    from PIL import Image, ImageDraw

    def canvas(size=(300, 400)):
        im = Image.new("RGB", size, "white")
        return im, ImageDraw.Draw(im)

    zero, d = canvas()
    d.ellipse((70, 60, 230, 340), outline="black", width=28)
    one, d = canvas()
    d.line((150, 50, 150, 350), fill="black", width=30)
    seven, d = canvas()
    d.line((60, 70, 240, 70), fill="black", width=28)
    d.line((240, 70, 120, 350), fill="black", width=28)
    return {0: zero, 1: one, 7: seven}


def test_predict_names_drawn_digits(mnist_run, tmp_path, capsys):
    from mnistlab.cli import main

    run, _ = mnist_run
    files = []
    for digit, im in _drawn_digits().items():
        path = tmp_path / f"drawn-{digit}.png"
        im.save(path)
        files.append((digit, path))
    assert main(["predict", str(run), *[str(p) for _, p in files], "--json"]) == 0
    import json

    results = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in results] == [str(d) for d, _ in files]


def test_predict_scanned_mnist_digits(mnist_run, mnist_raw):
    """Real test digits, enlarged 10x and printed black on white, come back with their labels."""
    from PIL import Image

    from mnistlab.evaluation.predict import Predictor

    run, _ = mnist_run
    predictor = Predictor.from_checkpoint(run)
    images = [Image.fromarray(255 - mnist_raw.test_x[i]).resize((280, 280), Image.BILINEAR) for i in range(50)]
    labels = [r["class"] for r in predictor.predict_files(images)]
    assert np.mean(np.array(labels) == mnist_raw.test_y[:50]) >= 0.94


@pytest.mark.slow
def test_deep_sgd_mlp_fails_and_kaiming_batch_norm_fixes_it(mnist_raw):
    """The lecture's 9-layer MLP with SGD lr 0.01 predicts one class; Kaiming + batch norm learns."""
    hidden = (650, 530, 420, 350, 290, 200, 150, 80)
    lecture = dict(model="mlp", hidden=hidden, optimizer="sgd", lr=0.01, momentum=0.5, nesterov=False,
                   batch_size=64, schedule="constant", warmup=0.0, weight_decay=0.0, label_smoothing=0.0, save_run=False,
                   train_size=6400, val_size=0, epochs=1, threads=THREADS)
    stuck = TrainSession.start(Config(**lecture)).fit()
    preds = stuck.test.logits.argmax(1)
    assert torch.bincount(preds, minlength=10).max().item() > 0.9 * len(preds)  # one class for (nearly) every image
    assert stuck.test.acc < 0.2
    fixed = TrainSession.start(Config(**{**lecture, "init": "kaiming", "batch_norm": True})).fit()
    assert fixed.test.acc > 0.7
