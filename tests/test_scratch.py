"""The NumPy models: every hand-written gradient against finite differences and torch autograd,
then a short real-MNIST training run and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnistlab.cli import main
from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.lessons.scratch import MLP, SoftmaxRegression, softmax
from mnistlab.lessons.scratch.train import load_numpy_model, train_numpy


def _models():
    return [SoftmaxRegression(7, 4, seed=1, dtype=np.float64), MLP(7, (6, 5), 4, seed=1, dtype=np.float64)]


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((9, 7)), rng.integers(0, 4, size=9)


@pytest.mark.parametrize("model", _models(), ids=repr)
def test_gradients_match_finite_differences(model):
    x, y = _batch()
    rng = np.random.default_rng(3)
    for p in model.params.values():  # non-zero weights so that every path carries gradient
        p[...] = rng.standard_normal(p.shape) * 0.5
    _, _, grads = model.loss_and_grads(x, y)
    eps = 1e-6
    for name, p in model.params.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = model.loss_and_grads(x, y)[0]
            p[i] = old - eps
            down = model.loss_and_grads(x, y)[0]
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("model", _models(), ids=repr)
def test_gradients_match_torch_autograd(model):
    x, y = _batch(1)
    rng = np.random.default_rng(4)
    for p in model.params.values():
        p[...] = rng.standard_normal(p.shape) * 0.5
    loss, logits, grads = model.loss_and_grads(x, y)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    a = torch.tensor(x)
    if isinstance(model, SoftmaxRegression):
        out = a @ params["W"] + params["b"]
    else:
        for i in range(model.num_layers):
            a = a @ params[f"W{i}"] + params[f"b{i}"]
            a = torch.relu(a) if i < model.num_layers - 1 else a
        out = a
    ref = torch.nn.functional.cross_entropy(out, torch.tensor(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-12)
    for name, p in params.items():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_softmax_is_stable_and_normalised():
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [0.5, 0.5, 0.0])


def test_other_models_are_refused():
    with pytest.raises(ConfigError, match="softmax or mlp"):
        train_numpy(Config(engine="numpy", model="cnn", save_run=False))


@pytest.mark.parametrize("model,threshold", [("softmax", 0.895), ("mlp", 0.92)])
def test_short_mnist_training_reaches_threshold(model, threshold):
    # 12,000 real MNIST images, two epochs: a few seconds. The full runs (>= 92% / >= 97%) are in the README.
    cfg = Config(engine="numpy", model=model, train_size=12000, val_size=1000, epochs=2, save_run=False)
    result = train_numpy(cfg)
    first, last = result["history"]
    assert last["train_loss"] < first["train_loss"] and last["val_loss"] < 0.4
    assert result["test"]["test_acc"] >= threshold


def test_same_seed_same_weights():
    cfg = Config(engine="numpy", model="mlp", train_size=2000, val_size=500, epochs=1, save_run=False)
    a, b = train_numpy(cfg)["model"], train_numpy(cfg)["model"]
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_cli_writes_a_run_that_reloads(tmp_path, capsys):
    code = main(["train", "--engine", "numpy", "--model", "mlp", "--hidden", "32", "--train-size", "3000",
                 "--val-size", "500", "--epochs", "1", "--out-dir", str(tmp_path), "--name", "np", "--no-figures"])
    assert code == 0
    run = tmp_path / "np"
    assert "Test set:" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["epoch", "test"]
    assert set(records[0]) >= {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "time_s"}
    assert json.loads((run / "config.json").read_text())["engine"] == "numpy"
    model, meta = load_numpy_model(run)
    assert repr(model) == "MLP(784-32-10, relu)" and meta["class_names"][0] == "0"
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    assert model.predict(x).shape == (3,)


def test_cli_refuses_other_models_in_one_line(capsys):
    assert main(["train", "--engine", "numpy", "--model", "lenet", "--no-save-run"]) == 2
    assert "softmax or mlp" in capsys.readouterr().err


def test_a_run_that_fails_before_its_first_record_leaves_no_folder(tmp_path, monkeypatch):
    """The NumPy engine's run folder is the torch runs' RunDir: a failed start is removed, and the name reusable."""
    from mnistlab.errors import TrainingDiverged

    real = SoftmaxRegression.loss_and_grads

    def nan_loss(self, x, y):
        loss, logits, grads = real(self, x, y)
        return float("nan"), logits, grads

    monkeypatch.setattr(SoftmaxRegression, "loss_and_grads", nan_loss)
    cfg = Config(engine="numpy", model="softmax", train_size=1000, val_size=100, epochs=1, out_dir=str(tmp_path), name="np")
    with pytest.raises(TrainingDiverged):
        train_numpy(cfg)
    assert not (tmp_path / "np").exists()
    monkeypatch.setattr(SoftmaxRegression, "loss_and_grads", real)
    cfg = Config(engine="numpy", model="softmax", train_size=1000, val_size=100, steps=3, out_dir=str(tmp_path), name="np")
    assert train_numpy(cfg)["run_dir"] == tmp_path / "np" and (tmp_path / "np" / "weights.safetensors").exists()
