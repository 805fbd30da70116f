"""Default `mnistlab train`: fastcnn's own learning rate and label smoothing, the accuracy they buy in
the same number of steps, and every other model left at the settings it had."""

from __future__ import annotations

import pytest
import torch

from mnistlab.config import Config
from mnistlab.runs.session import TrainSession
from mnistlab.training.trainer import Hooks, Trainer


@pytest.mark.parametrize("model", ["softmax", "mlp", "lenet", "cnn", "rnn", "lstm", "gru"])
def test_other_models_keep_sgd_at_0_15_without_smoothing(model):
    # LeNet and the RNN diverge with SGD at 0.3; smoothing costs softmax regression and LeNet accuracy.
    cfg = Config(model=model)
    assert (cfg.peak_lr, cfg.effective_label_smoothing) == (0.15, 0.0)


def test_given_values_win_over_fastcnn_defaults():
    assert (Config().peak_lr, Config().effective_label_smoothing) == (0.3, 0.1)
    cfg = Config(lr=0.05, label_smoothing=0.0)
    assert (cfg.peak_lr, cfg.effective_label_smoothing) == (0.05, 0.0)
    assert Config(optimizer="adam").peak_lr == 1e-3  # the model's rate is for SGD only
    assert Config.from_dict({"model": "lenet"}, base=Config()).effective_label_smoothing == 0.0  # resolved late


def _first_losses(cfg: Config, bundle, steps: int = 3) -> list[float]:
    torch.manual_seed(0)
    from mnistlab.runs.session import build_model

    losses: list[float] = []
    Trainer(build_model(cfg, bundle), bundle, cfg).fit(Hooks(on_step=lambda r: losses.append(r["loss"].item())))
    return losses[:steps]


def test_default_training_uses_the_smoothing_it_reports(synthetic_bundle):
    base = dict(steps=3, batch_size=32, save_run=False, threads=1)
    default = _first_losses(Config(**base), synthetic_bundle)
    assert default == _first_losses(Config(**base, lr=0.3, label_smoothing=0.1), synthetic_bundle)
    assert default != _first_losses(Config(**base, lr=0.3, label_smoothing=0.0), synthetic_bundle)


@pytest.mark.slow
def test_default_train_beats_99_percent_in_the_same_430_steps():
    # 63be84b's defaults gave 98.99% at seed 0 (2 threads); these give 99.1x% in the same steps.
    session = TrainSession.start(Config(seed=0, threads=2, save_run=False, figures=False))
    assert session.trainer.total_steps == 430 and session.cfg.batch_size == 256  # 2 epochs of 55,000: same cost
    history = session.fit()
    assert history.test.acc >= 0.991, f"test accuracy {history.test.acc:.2%}"


@pytest.mark.slow
def test_default_rate_is_safe_on_a_small_training_set():
    # 2,000 images are 16 steps: SGD at 0.5 fell to 16.6% here (seed 1); at 0.3 it keeps about 91%.
    cfg = Config(seed=1, train_size=2000, val_size=500, threads=2, save_run=False, figures=False)
    assert TrainSession.start(cfg).fit().test.acc >= 0.85
