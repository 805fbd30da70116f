"""The trainer: schedules, learning on synthetic data, determinism, the fast path vs the classic loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnistlab.bench import ClassicDataset, classic_train
from mnistlab.config import Config
from mnistlab.data.loader import epoch_permutation, iterate_batches
from mnistlab.errors import TrainingDiverged
from mnistlab.models import create_model
from mnistlab.training.trainer import Hooks, Trainer, evaluate, lr_at, shift_images


def _fit(bundle, **overrides):
    cfg = Config(save_run=False, val_size=64, **overrides)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, bundle.num_classes, bundle.in_shape, **cfg.model_overrides())
    trainer = Trainer(model, bundle, cfg)
    losses = []
    history = trainer.fit(Hooks(on_step=lambda info: losses.append(info["loss"].item())))
    return history, losses, model


def test_lr_schedules():
    assert lr_at(0, 100, 1.0, "constant") == 1.0
    assert lr_at(0, 100, 1.0, "onecycle", warmup=0.2) == pytest.approx(1 / 25)
    assert lr_at(20, 100, 1.0, "onecycle", warmup=0.2) == pytest.approx(1.0)
    assert lr_at(60, 100, 1.0, "onecycle", warmup=0.2) == pytest.approx(0.5)
    assert lr_at(50, 100, 1.0, "cosine") == pytest.approx(0.5)
    assert lr_at(99, 100, 1.0, "cosine") < 0.01
    assert lr_at(25, 100, 1.0, "step", steps_per_epoch=10, step_every=2, gamma=0.1) == pytest.approx(0.1)
    assert lr_at(5, 100, 1.0, "step", steps_per_epoch=10, step_every=2, gamma=0.1) == pytest.approx(1.0)


@pytest.mark.parametrize("model", ["softmax", "mlp", "cnn", "fastcnn"])
def test_fit_learns_synthetic(synthetic_bundle, model):
    history, losses, _ = _fit(synthetic_bundle, model=model, epochs=6, batch_size=32)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert history.test.acc >= 0.9, f"{model}: test accuracy {history.test.acc:.2%}"


def test_same_seed_same_history(synthetic_bundle):
    a, la, _ = _fit(synthetic_bundle, model="cnn", epochs=2, batch_size=32, augment=True, dropout=0.1)
    b, lb, _ = _fit(synthetic_bundle, model="cnn", epochs=2, batch_size=32, augment=True, dropout=0.1)
    assert la == lb
    assert [r["val_loss"] for r in a.epochs] == [r["val_loss"] for r in b.epochs]
    c, lc, _ = _fit(synthetic_bundle, model="cnn", epochs=2, batch_size=32, seed=1)
    assert lc != la


def test_every_example_once_per_epoch(synthetic_bundle):
    split = synthetic_bundle.train
    n = len(split)
    for epoch in range(3):
        perm = epoch_permutation(n, seed=0, epoch=epoch, device="cpu")
        seen = torch.cat([idx for idx in (perm[i:i + 50] for i in range(0, n, 50))])
        assert sorted(seen.tolist()) == list(range(n))
        batches = list(iterate_batches(split, 50, perm))
        assert sum(len(y) for _, y in batches) == n
    assert not torch.equal(epoch_permutation(n, 0, 0, "cpu"), epoch_permutation(n, 0, 1, "cpu"))


@pytest.mark.parametrize("model", ["mlp", "cnn", "fastcnn"])
def test_fast_path_equals_classic_loop(synthetic_bundle, model):
    """Same model, seed, batch order and optimiser: the loss curves agree within float tolerance."""
    bundle = synthetic_bundle
    cfg = Config(model=model, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, schedule="constant", warmup=0.0,
                 weight_decay=0.0, label_smoothing=0.0, epochs=2, batch_size=32, save_run=False)
    torch.manual_seed(0)
    fast_model = create_model(model, 10, bundle.in_shape)
    classic_model = create_model(model, 10, bundle.in_shape)
    classic_model.load_state_dict(fast_model.state_dict())
    # The fast path runs convolutions in channels_last; so does the reference here, so that the
    # only difference left is the data path (per-sample transforms vs one device tensor).
    classic_model.to(memory_format=torch.channels_last)

    fast_losses: list[float] = []
    Trainer(fast_model, bundle, cfg).fit(Hooks(on_step=lambda i: fast_losses.append(i["loss"].item())))

    # The classic loop over per-sample uint8 images, in the same order as the fast path.
    images = np.round((bundle.train.x[:, 0].numpy() * bundle.std[0] + bundle.mean[0]) * 255).astype(np.uint8)
    labels = bundle.train.y.numpy()
    ds = ClassicDataset(images, labels, bundle.mean[0], bundle.std[0])
    opt = torch.optim.SGD(classic_model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    def loader(epoch):
        order = epoch_permutation(len(ds), cfg.seed, epoch, "cpu").tolist()
        return torch.utils.data.DataLoader(ds, batch_size=32, sampler=order)

    classic_losses: list[float] = []
    classic_train(classic_model, opt, loader, 2, lambda step: 0.05, on_step=classic_losses.append)
    assert len(fast_losses) == len(classic_losses) == 2 * math.ceil(len(ds) / 32)
    np.testing.assert_allclose(fast_losses, classic_losses, rtol=2e-3, atol=2e-4)


def test_nan_loss_stops_within_one_step(synthetic_bundle):
    cfg = Config(model="mlp", optimizer="sgd", lr=1e6, schedule="constant", warmup=0.0, epochs=3, batch_size=32, save_run=False)
    torch.manual_seed(0)
    model = create_model("mlp", 10, synthetic_bundle.in_shape)
    steps = []
    trainer = Trainer(model, synthetic_bundle, cfg)
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        trainer.fit(Hooks(on_step=lambda i: steps.append(i["step"])))
    # The bad step is caught before the optimiser applies it: every weight is still finite.
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len(steps) < 10


def test_deferred_finite_check_stops_within_its_window_and_before_any_checkpoint(synthetic_bundle):
    """The GPU policy (read the loss every N steps), run on the CPU: the run stops at the first read
    after the loss went bad, names the window of steps, and saves no checkpoint of poisoned weights."""
    from mnistlab.training.trainer import finite_check_every

    assert finite_check_every(torch.device("cpu")) == 1 and finite_check_every(torch.device("cuda")) > 1
    cfg = Config(model="mlp", optimizer="sgd", lr=1e6, schedule="constant", warmup=0.0, epochs=3, batch_size=32,
                 save_run=False)
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp", 10, synthetic_bundle.in_shape), synthetic_bundle, cfg)
    trainer.finite_check_every = 4
    steps, saved = [], []
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(Hooks(on_step=lambda i: steps.append((i["step"], i["loss"].item())),
                          save_checkpoint=lambda kind, st: saved.append(st.step)))
    first_bad = next(step for step, loss in steps if not math.isfinite(loss))
    read_at = math.ceil(first_bad / 4) * 4  # the first read after it, before that step is applied
    assert steps[-1][0] == read_at - 1
    assert f"became NaN or inf within steps {read_at - 3}-{read_at} (read every 4 steps on cpu)" in str(info.value)
    assert saved == []  # the epoch (34 steps) never ended: nothing was saved


def test_deferred_finite_check_is_read_before_an_epoch_end_checkpoint(synthetic_bundle):
    cfg = Config(model="mlp", optimizer="sgd", lr=0.05, schedule="constant", warmup=0.0, epochs=2, batch_size=32,
                 save_run=False, val_size=64)
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp", 10, synthetic_bundle.in_shape), synthetic_bundle, cfg)
    trainer.finite_check_every = 1000  # longer than the run: only the forced reads check it
    reads = []
    real = torch.Tensor.item

    def spy(t):
        if t.dtype == torch.bool and t.dim() == 0:
            reads.append(len(steps))
        return real(t)

    steps = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "item", spy)
        history = trainer.fit(Hooks(on_step=lambda i: steps.append(i["step"]),
                                    save_checkpoint=lambda kind, st: None))
    per_epoch = trainer.steps_per_epoch
    assert reads == [per_epoch, 2 * per_epoch]  # before each epoch's evaluation and checkpoint: never per step
    assert history.test.acc > 0.3  # and it trained (chance: 0.1)


def test_target_accuracy_stops_early(synthetic_bundle):
    history, _, _ = _fit(synthetic_bundle, model="softmax", epochs=20, batch_size=32, target_acc=0.5)
    assert history.stopped_early and len(history.epochs) < 20


def test_evaluate_sums_then_divides(synthetic_bundle):
    model = create_model("softmax", 10, synthetic_bundle.in_shape)
    a = evaluate(model, synthetic_bundle.test, batch_size=7)
    b = evaluate(model, synthetic_bundle.test, batch_size=1000)
    assert a.loss == pytest.approx(b.loss, rel=1e-6) and a.acc == b.acc
    assert a.logits.shape == (len(synthetic_bundle.test), 10)


def test_shift_images_fills_background():
    x = torch.zeros(1, 1, 5, 5) - 1
    x[0, 0, 2, 2] = 1
    y = shift_images(x, 1, 0)
    assert y.shape == x.shape and y[0, 0, 2, 3] == 1 and y[0, 0, 2, 2] == -1 and y.min() == -1


def test_steps_override_epochs(synthetic_bundle):
    history, losses, _ = _fit(synthetic_bundle, model="softmax", steps=7, batch_size=32)
    assert len(losses) == 7


def test_tta_views_shift_and_mirror():
    from mnistlab.training.trainer import TTA_SHIFTS, tta_views

    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    views = tta_views(x)
    assert len(views) == len(TTA_SHIFTS) and torch.equal(views[0], x)
    mirrored = tta_views(x, mirror=True)
    assert len(mirrored) == 2 * len(TTA_SHIFTS)
    assert torch.equal(mirrored[len(TTA_SHIFTS)], x.flip(-1))
