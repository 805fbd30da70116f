"""Fault battery, numerics: a diverging run stops within one step and keeps its last good checkpoint.

The trainer-level test (every weight still finite after the NaN step) is
tests/test_train.py::test_nan_loss_stops_within_one_step; here the same through `mnistlab train`,
plus a run that is healthy for an epoch and then blows up, and the losses at logits of 1e4.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

import mnistlab.runs.session
from mnistlab.runs.checkpoint import load_checkpoint
from mnistlab.cli import main
from mnistlab.training.losses import LOSSES, class_probabilities, compute_loss


BASE = ["train", "--dataset", "synthetic", "--model", "mlp", "--hidden", "32", "--batch-size", "32",
        "--val-size", "200", "--warmup", "0", "--no-figures", "-q", "--threads", "1"]
STEPS_PER_EPOCH = (2048 - 200 + 31) // 32  # 58


def _steps_logged(run: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"]


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_huge_lr_stops_within_one_step_with_advice(tmp_path, capsys, loss):
    argv = [*BASE, "--lr", "1e6", "--schedule", "constant", "--loss", loss, "--log-every", "1", "--epochs", "3",
            "--out-dir", str(tmp_path), "--name", "boom"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "try a lower learning rate, e.g. --lr 100000" in err and "training stopped" in err
    bad_step = int(re.search(r"at step (\d+)", err).group(1))
    # Caught within one step: the bad step was never taken or logged, every step before it was.
    assert _steps_logged(tmp_path / "boom") == list(range(1, bad_step))
    assert bad_step < STEPS_PER_EPOCH  # so no checkpoint could exist yet, and the message says so
    assert "no checkpoint was written" in err
    assert not (tmp_path / "boom" / "last.safetensors").exists()


def test_blow_up_after_a_good_epoch_keeps_the_good_checkpoint(tmp_path, capsys, monkeypatch):
    """A step schedule whose lr jumps x1e7 after epoch 1: epoch 1's checkpoint must survive untouched."""
    saved: dict[str, str] = {}
    real_save = mnistlab.runs.session.save_trainer

    def recording_save(run, kind, trainer, state):
        real_save(run, kind, trainer, state)
        saved[kind] = hashlib.sha256(run.checkpoint_path(kind).read_bytes()).hexdigest()

    monkeypatch.setattr(mnistlab.runs.session, "save_trainer", recording_save)
    argv = [*BASE, "--lr", "0.01", "--schedule", "step", "--step-every", "1", "--gamma", "1e7", "--epochs", "3",
            "--out-dir", str(tmp_path), "--name", "jump"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    last = tmp_path / "jump" / "last.safetensors"
    assert "lower learning rate" in err and f"the last good checkpoint is {last}" in err, err
    assert int(re.search(r"at step (\d+)", err).group(1)) > STEPS_PER_EPOCH  # it did blow up in epoch 2
    assert hashlib.sha256(last.read_bytes()).hexdigest() == saved["last"]  # unchanged since it was written
    ckpt = load_checkpoint(last)
    assert ckpt.train_state["step"] == STEPS_PER_EPOCH and ckpt.train_state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt.model_state().values())
    assert main(["evaluate", str(last), "--json"]) == 0  # and it still works
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.5


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_losses_and_probabilities_finite_for_huge_logits(loss, scale):
    logits = torch.zeros(4, 10)
    logits[:, 3] = scale  # one enormous logit per row, right for rows 0-1, wrong for rows 2-3
    logits[1, 7] = -scale
    logits.requires_grad_(True)
    y = torch.tensor([3, 3, 5, 0])
    value = compute_loss(logits, y, loss)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    probs = class_probabilities(logits.detach(), loss)
    assert torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    if loss != "bce":
        assert torch.allclose(probs.sum(1), torch.ones(4))


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_single_logit_binary_model_finite(scale):
    logits = torch.full((3, 1), scale, requires_grad=True)
    value = compute_loss(logits, torch.tensor([1, 0, 1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert torch.isfinite(class_probabilities(logits.detach())).all()
