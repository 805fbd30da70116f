"""Fault battery, interrupts: a real `python -m mnistlab train` process gets SIGINT or SIGTERM mid-epoch.

It must exit 130 with a message saying how to resume, leave a valid resumable `last.safetensors`
(and no temporary file), and `--resume` must end with the same weights, bit for bit, as a run
that was never interrupted. Nothing is lost: every step is logged exactly once across the two runs.
The in-process variant (a stop flag after 7 steps) is tests/test_cli.py::test_resume_finishes_like_an_uninterrupted_run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnistlab.runs.checkpoint import load_checkpoint
from mnistlab.cli import main

# Dropout and augmentation make the resumed run depend on the restored RNG states, not only the
# weights. One thread: bit-exact on CPU, and far faster than two on a loaded 2-core machine.
ARGS = ["--dataset", "synthetic", "--model", "mlp", "--hidden", "64", "--dropout", "0.2", "--augment",
        "--optimizer", "adam", "--batch-size", "8", "--epochs", "2", "--val-size", "200", "--threads", "1",
        "--log-every", "1", "--no-figures", "-q", "--seed", "3"]
STEPS_PER_EPOCH = (2048 - 200) // 8  # 231, the last batch is full
TOTAL_STEPS = 2 * STEPS_PER_EPOCH
SIGNALS = [signal.SIGINT, signal.SIGTERM]  # one injected fault each
START_TIMEOUT_S = 180  # interpreter start + torch import on a loaded machine


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the same run, never interrupted (in-process)."""
    out = tmp_path_factory.mktemp("reference")
    n = torch.get_num_threads()
    try:
        assert main(["train", *ARGS, "--out-dir", str(out), "--name", "whole"]) == 0
    finally:
        torch.set_num_threads(n)
    return load_checkpoint(out / "whole" / "last.safetensors").model_state()


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env.pop("MNISTLAB_DATA", None)
    return env


def _step_records(run: Path) -> list[int]:
    if not (run / "metrics.jsonl").exists():
        return []
    steps = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the line being written right now
            continue
        if record.get("kind") == "step":
            steps.append(record["step"])
    return steps


def _start_and_wait_for_training(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start the training subprocess; return once it has logged a few steps (training is under way)."""
    out = tmp_path / "runs"
    stderr_path = tmp_path / f"{name}.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mnistlab", "train", *ARGS, "--out-dir", str(out), "--name", name],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(tmp_path), cwd=tmp_path)
    run = out / name
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(_step_records(run)) < 3:
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before it was interrupted: {stderr_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("training did not start in time")
        time.sleep(0.02)
    return proc, run, stderr_path


def _no_temp_files(run: Path) -> None:
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".part")]
    assert leftovers == [], leftovers


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_signal_mid_epoch_then_resume_is_bit_exact(tmp_path, reference, capsys, sig):
    proc, run, stderr_path = _start_and_wait_for_training(tmp_path, f"cut-{sig.name}")
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    err = stderr_path.read_text()
    assert "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("mnistlab: error: interrupted at step "), err
    assert f"checkpoint saved to {run / 'last.safetensors'}" in last_line
    assert f"Resume with: mnistlab train --resume {run}" in last_line
    assert f"{sig.name} received" in err

    ckpt = load_checkpoint(run / "last.safetensors")
    state = ckpt.train_state
    assert 0 < state["step"] < TOTAL_STEPS and not state["finished"]
    assert 0 < state["batch"] < STEPS_PER_EPOCH  # mid-epoch
    assert state["step"] == state["epoch"] * STEPS_PER_EPOCH + state["batch"]
    assert ckpt.optimizer_state() is not None and {"torch", "augment"} <= set(ckpt.rng_state())
    assert ckpt.build_model() is not None  # loadable as a model, too
    assert f"step {state['step']};" in last_line
    _no_temp_files(run)

    assert main(["train", "--resume", str(run), "-q"]) == 0
    capsys.readouterr()
    resumed = load_checkpoint(run / "last.safetensors")
    assert resumed.train_state["step"] == TOTAL_STEPS and resumed.train_state["finished"]
    weights = resumed.model_state()
    assert weights.keys() == reference.keys()
    for k in reference:
        assert torch.equal(weights[k], reference[k]), k
    # Nothing lost, nothing twice: every step logged exactly once over both processes.
    assert _step_records(run) == list(range(1, TOTAL_STEPS + 1))
    _no_temp_files(run)


@pytest.mark.timeout(300)
def test_second_ctrl_c_aborts_at_once_and_leaves_no_half_file(tmp_path):
    proc, run, stderr_path = _start_and_wait_for_training(tmp_path, "twice")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = stderr_path.read_text()
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("mnistlab: error: interrupted")
    _no_temp_files(run)
    last = run / "last.safetensors"
    if last.exists():  # the first signal's checkpoint may or may not have been written: whole if it was
        assert load_checkpoint(last).train_state["step"] > 0
