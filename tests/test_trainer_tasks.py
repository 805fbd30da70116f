"""The one Trainer driven through a Task: the extension point the image path and the character LM share."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from mnistlab.errors import TrainingDiverged
from mnistlab.training import optim, schedule, trainer
from mnistlab.training.trainer import Hooks, ImageTask, Task, Trainer, TrainingInterrupted




def test_schedule_and_optimiser_live_in_their_modules_and_stay_importable_from_the_trainer():
    assert trainer.lr_at is schedule.lr_at
    assert trainer.build_optimizer is optim.build_optimizer


class LineTask(Task):
    """Fit y = 3x + 1 with squared error: 4 batches of 8 points per epoch."""

    def __init__(self, eval_every=None, blow_up_at=None):
        self.steps_per_epoch, self.eval_every, self.blow_up_at = 4, eval_every, blow_up_at
        self.starts: list[tuple[int, int]] = []
        self.seen = 0
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 1, generator=g)
        self.y = 3 * self.x + 1

    def batches(self, epoch, start):
        self.starts.append((epoch, start))
        for i in range(start, self.steps_per_epoch):
            yield self.x[8 * i : 8 * i + 8], self.y[8 * i : 8 * i + 8]

    def loss(self, model, batch):
        x, y = batch
        self.seen += 1
        loss = ((model(x) - y) ** 2).mean()
        if self.seen == self.blow_up_at:
            loss = loss * float("nan")
        return loss, len(x), None

    def evaluate(self, model):
        with torch.no_grad():
            return {"val_loss": float(((model(self.x) - self.y) ** 2).mean())}

    def test(self, model):
        return self.evaluate(model), 0.0


def _trainer(task, total_steps=10, clip=0.0):
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(model, task=task, optimizer=opt, total_steps=total_steps, grad_clip=clip,
                   schedule=lambda step: schedule.lr_at(step, total_steps, 0.1, "cosine", warmup=0.1))


def test_a_task_trains_with_the_shared_loop_and_evaluates_every_n_steps():
    task = LineTask(eval_every=4)
    seen, lrs = [], []
    tr = _trainer(task, total_steps=10)
    hooks = Hooks(on_eval=seen.append, on_step=lambda r: lrs.append(tr.optimizer.param_groups[0]["lr"]))
    history = tr.fit(hooks)
    assert [r["step"] for r in history.epochs] == [4, 8, 10] and seen == history.epochs  # and at the last step
    assert [r["kind"] for r in seen] == ["eval"] * 3 and seen[1]["epoch"] == 2.0
    assert lrs == [schedule.lr_at(s, 10, 0.1, "cosine", warmup=0.1) for s in range(10)]
    assert task.starts == [(0, 0), (1, 0), (2, 0)]  # each epoch from its first batch
    assert history.epochs[-1]["val_loss"] < history.epochs[0]["val_loss"] and history.test == task.evaluate(tr.model)
    assert tr.state.step == 10 and (tr.state.epoch, tr.state.batch) == (2, 2)
    assert all(math.isfinite(r["train_loss"]) and r["time_s"] >= 0 for r in seen)


def test_epoch_records_when_the_task_evaluates_per_epoch():
    history = _trainer(LineTask(), total_steps=8).fit(Hooks(on_epoch_end=lambda r: None))
    assert [(r["step"], r["epoch"]) for r in history.epochs] == [(4, 1.0), (8, 2.0)]


def test_a_nan_loss_stops_with_the_tasks_message_before_the_step():
    task = LineTask(blow_up_at=3)
    tr = _trainer(task)
    before = [p.detach().clone() for p in tr.model.parameters()]
    with pytest.raises(TrainingDiverged, match="at step 3"):
        tr.fit()
    assert tr.state.step == 2 and not all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))


def test_should_stop_saves_last_and_raises_interrupted():
    saved = []
    tr = _trainer(LineTask(eval_every=100))
    with pytest.raises(TrainingInterrupted) as info:
        tr.fit(Hooks(should_stop=lambda: tr.state.step == 3, save_checkpoint=lambda kind, st: saved.append((kind, st.step))))
    assert info.value.state.step == 3 and saved == [("last", 3)]


def test_grad_clip_is_the_loops():
    tr = _trainer(LineTask(), total_steps=1, clip=1e-3)
    w0 = tr.model.weight.detach().clone()
    tr.fit()
    assert (tr.model.weight.detach() - w0).abs().max() <= 0.1 * 1e-3 + 1e-9  # at most lr x the clipped norm


def test_the_image_classifier_is_the_default_task(synthetic_bundle):
    from mnistlab.config import Config
    from mnistlab.models import create_model

    tr = Trainer(create_model("softmax", synthetic_bundle.num_classes, synthetic_bundle.in_shape), synthetic_bundle,
                 Config(steps=3, batch_size=32, log_every=1))
    assert isinstance(tr.task, ImageTask) and tr.task.eval_every is None
    logs = []
    history = tr.fit(Hooks(on_log=logs.append))
    assert [list(r) for r in logs[:1]] == [["kind", "step", "epoch", "loss", "acc", "lr"]]
    assert history.epochs[0]["kind"] == "epoch" and history.test.logits.shape[0] == len(synthetic_bundle.test)


def test_the_lm_drives_the_shared_trainer_and_its_hooks(one_thread):
    from mnistlab.lessons.lm.train import LMConfig, LMTask, train_lm

    text = "the quick brown fox jumps over the lazy dog. " * 60
    cfg = LMConfig(hidden_size=16, embed_size=8, seq_len=8, batch_size=4, steps=40, eval_every=15, device="cpu")
    both, hooked = [], []
    result = train_lm(text, cfg, on_eval=both.append, hooks=Hooks(on_eval=hooked.append))
    assert [r["step"] for r in result["records"]] == [15, 30, 40] and both == hooked == result["records"]
    assert result["metrics"]["steps"] == 40
    with pytest.raises(TrainingInterrupted):
        train_lm(text, cfg, hooks=Hooks(should_stop=lambda: True))
    task = LMTask(torch.arange(4 * 17).reshape(4, 17), 8, 10, None, None, 1.0)
    task.hidden = "left over"
    (x, y), = list(task.batches(0, 1))  # resuming inside an epoch keeps the state
    assert task.hidden == "left over" and torch.equal(x[:, 1:], y[:, :-1]) and x.shape == (4, 8)
    assert len(list(task.batches(1, 0))) == 2 and task.hidden is None  # a new epoch starts afresh
