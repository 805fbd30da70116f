"""multimnist: deterministic composition from the right MNIST split, caching, multi-label training and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnistlab.data import multimnist
from mnistlab.errors import ConfigError
from cores import THREADS


def _rebuild(part: multimnist.Composed, images: np.ndarray) -> np.ndarray:
    """The canvases recomposed by hand from `sources`/`offsets` (the brighter pixel where digits overlap)."""
    out = np.zeros_like(part.x)
    for i in range(len(part.x)):
        for src, off in zip(part.sources[i], part.offsets[i]):
            if src >= 0:
                out[i, :, off:off + 28] = np.maximum(out[i, :, off:off + 28], images[src])
    return out


@pytest.fixture(scope="module")
def small(mnist_raw):
    return multimnist.compose(mnist_raw.test_x, mnist_raw.test_y, 300, seed=5)


def test_compose_is_deterministic_and_seeded(mnist_raw, small):
    again = multimnist.compose(mnist_raw.test_x, mnist_raw.test_y, 300, seed=5)
    other = multimnist.compose(mnist_raw.test_x, mnist_raw.test_y, 300, seed=6)
    for a, b in ((small.x, again.x), (small.y, again.y), (small.sources, again.sources)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(small.x, other.x)


def test_labels_are_the_set_of_placed_digits(mnist_raw, small):
    assert small.x.shape == (300, 28, 84) and small.x.dtype == np.uint8
    assert small.y.shape == (300, 10)
    num_digits = (small.sources >= 0).sum(1)
    assert num_digits.min() == 1 and num_digits.max() == 3
    assert set(np.bincount(num_digits)[1:] > 50) == {True}  # 1, 2 and 3 digits all common
    for i in range(len(small.x)):
        digits = {int(mnist_raw.test_y[s]) for s in small.sources[i] if s >= 0}
        assert set(np.flatnonzero(small.y[i]).tolist()) == digits  # a repeated digit is one label
    # Some image repeats a digit, so the label count is below the digit count there.
    assert (small.y.sum(1) < num_digits).any()
    np.testing.assert_array_equal(small.x, _rebuild(small, mnist_raw.test_x))


def test_loaded_splits_come_from_their_own_mnist_split(mnist_raw):
    from mnistlab.data.raw import load_raw

    raw = load_raw("multimnist")
    assert raw.train_x.shape == (60_000, 28, 84) and raw.test_x.shape == (10_000, 28, 84)
    assert raw.train_y.shape == (60_000, 10) and raw.class_names == tuple("0123456789")
    assert 1 <= raw.test_y.sum(1).min() and raw.test_y.sum(1).max() <= 3
    # Content check, independent of the generator's bookkeeping: in single-digit test canvases the
    # 28 columns around the ink are byte for byte an MNIST *test* digit and never a train digit.
    test_digits = {img.tobytes() for img in mnist_raw.test_x}
    train_digits = {img.tobytes() for img in mnist_raw.train_x}
    checked = 0
    for canvas, label in zip(raw.test_x[:400], raw.test_y[:400]):
        ink = np.flatnonzero(canvas.any(0))
        if label.sum() != 1 or ink[-1] - ink[0] >= 28 - 2:
            continue
        windows = [canvas[:, o:o + 28].tobytes() for o in range(max(0, ink[-1] - 27), min(ink[0], 56) + 1)]
        assert any(w in test_digits for w in windows)
        assert not any(w in train_digits for w in windows)
        checked += 1
    assert checked > 50
    train_part, test_part = multimnist.generate()
    np.testing.assert_array_equal(test_part.x[:50], _rebuild(test_part, mnist_raw.test_x)[:50])
    np.testing.assert_array_equal(train_part.x[:50], _rebuild(multimnist.Composed(
        train_part.x[:50], train_part.y[:50], train_part.sources[:50], train_part.offsets[:50]), mnist_raw.train_x))


def test_cache_is_written_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train, test = multimnist.generate(seed=3, num_train=200, num_test=50)
    folder = multimnist.cache_folder(3, 200, 50)
    assert folder.is_relative_to(tmp_path) and (folder / "train_x.npy").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("composed again instead of reading the cache")

    monkeypatch.setattr(multimnist, "compose", fail)
    train2, test2 = multimnist.generate(seed=3, num_train=200, num_test=50)
    np.testing.assert_array_equal(train.x, train2.x)
    np.testing.assert_array_equal(test.y, test2.y)
    (folder / "test_y.npy").write_bytes(b"corrupt")  # a broken cache is rebuilt, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, test3 = multimnist.generate(seed=3, num_train=200, num_test=50)
    np.testing.assert_array_equal(test.y, test3.y)


def test_soft_target_ce_and_set_decisions():
    from mnistlab.training.losses import compute_loss, predict_labels

    logits = torch.tensor([[2.0, 2.0, -9.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([[1, 1, 0], [0, 0, 1]])
    # ce against y/|y|: the same as cross entropy with the normalised distribution, by hand.
    target = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(compute_loss(logits, y, "ce"), expected)
    # softmax splits 1 between the two labels: at 0.5 both pass only at exactly 0.5, sigmoids pass freely.
    assert predict_labels(logits, "bce", 0.5)[0].tolist() == [True, True, False]
    assert predict_labels(torch.tensor([[2.0, 1.9, -9.0]]), "ce", 0.5)[0].tolist() == [True, False, False]


def test_multilabel_report_by_hand():
    from mnistlab.evaluation.metrics import format_report, multilabel_report

    probs = torch.tensor([[0.9, 0.8, 0.1], [0.6, 0.2, 0.3], [0.1, 0.4, 0.7]])
    y = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    r = multilabel_report(probs, y, ["a", "b", "c"], threshold=0.5)
    assert r["subset_accuracy"] == pytest.approx(2 / 3)
    assert r["hamming_loss"] == pytest.approx(2 / 9)  # row 2: a wrongly on, b wrongly off
    assert r["topk_oracle_subset_accuracy"] == pytest.approx(2 / 3)  # row 2's top-1 is a, not b
    assert r["hamming_loss_all_negative"] == pytest.approx(4 / 9)
    assert [row["precision"] for row in r["per_class"]] == pytest.approx([0.5, 1.0, 1.0])
    assert [row["recall"] for row in r["per_class"]] == pytest.approx([1.0, 0.5, 1.0])
    text = format_report(r)
    assert "subset accuracy" in text and "Hamming loss" in text and "confusion" not in text


@pytest.mark.parametrize("loss", ["nll", "mse"])
def test_single_label_losses_are_refused(loss, tmp_path):
    from mnistlab.cli import main

    with pytest.raises(ConfigError, match="multi-label"):
        from mnistlab.config import Config
        from mnistlab.runs.session import check_names

        check_names(Config(dataset="multimnist", loss=loss))
    assert main(["train", "--dataset", "multimnist", "--loss", loss, "--out-dir", str(tmp_path), "-q"]) == 2


def test_models_take_the_wide_canvas():
    from mnistlab.models import create_model

    for name in ("cnn", "mlp", "softmax", "lenet", "rnn"):
        model = create_model(name, 10, (1, 28, 84))
        assert model(torch.zeros(2, 1, 28, 84)).shape == (2, 10), name


def test_cli_train_and_evaluate_multilabel(tmp_path, capsys):
    from mnistlab.cli import main

    run = tmp_path / "bce"
    args = ["train", "--dataset", "multimnist", "--loss", "bce", "--train-size", "300", "--val-size", "100",
            "--model", "softmax", "--steps", "10", "--batch-size", "32", "--threads", str(THREADS), "--out-dir", str(tmp_path), "--name", "bce", "-q"]
    assert main(args) == 0
    assert "Subset accuracy" in capsys.readouterr().out
    for name in ("evaluation.json", "curves.png", "predictions.png", "per_label_f1.png"):
        assert (run / name).is_file(), name
    assert not (run / "confusion.png").exists()
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["task"] == "multilabel" and len(saved["per_class"]) == 10
    assert main(["evaluate", str(run), "--threshold", "0.3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sigmoid >= 0.3" in out and "subset accuracy" in out and "Hamming loss" in out and "macro avg" in out


@pytest.mark.slow
def test_bce_learns_sets_and_beats_softmax(tmp_path):
    """The lesson, on 1,500 images: independent sigmoids name the set; softmax at 0.5 names one label at most."""
    from mnistlab.lessons.experiments import run_experiment
    from mnistlab.lessons.experiments.common import Options

    result = run_experiment("multilabel", Options(out_dir=tmp_path, quick=True, threads=THREADS, epochs=2.0))
    rows = {r["loss"]: r for r in next(iter(result.tables.values()))}
    bce, ce = rows["bce"], rows["ce"]
    assert bce["subset_acc"] > 0.4
    assert bce["hamming_loss"] < 0.5 * 0.187  # predicting no label scores about 0.187
    assert bce["subset_acc"] > ce["subset_acc"] + 0.1
    assert ce["labels_per_image"] <= 1.0
    assert (tmp_path / "multilabel_metrics.png").is_file()
