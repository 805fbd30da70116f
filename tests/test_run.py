"""Run folders: a failed start (no checkpoint yet) never blocks the retry with the same --name, and
nothing that holds a checkpoint, a foreign file or a live run is ever reused or removed."""

from __future__ import annotations

import json
import os

import pytest

from mnistlab.cli import main
from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.runs.rundir import RunDir, lock_folder
from mnistlab.runs.session import TrainSession
from cores import THREADS

FAST = ["--dataset", "synthetic", "--model", "softmax", "--epochs", "1", "--val-size", "200", "--threads", str(THREADS),
        "--no-figures", "-q"]


def _train(tmp_path, *extra, name="x"):
    at = FAST.index("--epochs")
    base = FAST if "--steps" not in extra else FAST[:at] + FAST[at + 2:]  # one length only
    return main(["train", *base, "--out-dir", str(tmp_path), "--name", name, *extra])


def test_a_diverged_run_is_removed_and_the_retry_with_the_same_name_works(tmp_path, capsys):
    # Batches of 8: 231 steps per epoch, so the loss blows up long before the first checkpoint.
    assert _train(tmp_path, "--lr", "1e6", "--steps", "50", "--batch-size", "8") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the loss became" in err[0], err
    assert f"no checkpoint was written, so {tmp_path / 'x'} was removed" in err[0]
    assert not (tmp_path / "x").exists()
    assert _train(tmp_path) == 0
    assert (tmp_path / "x" / "last.safetensors").is_file()


def test_a_diverged_run_that_logged_keeps_its_steps_until_the_same_name_starts_afresh(tmp_path, capsys):
    assert _train(tmp_path, "--lr", "1e6", "--steps", "50", "--batch-size", "8", "--log-every", "1") == 1
    err = capsys.readouterr().err.strip()
    run = tmp_path / "x"
    assert f"no checkpoint was written; the steps logged are in {run / 'metrics.jsonl'}, and the same --name" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl"]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert _train(tmp_path) == 0
    assert (run / "last.safetensors").is_file()


def test_a_folder_left_by_a_killed_start_is_reused_without_its_stale_records(tmp_path, capsys):
    """kill -9 before the first checkpoint leaves config.json and metrics.jsonl: the same --name takes it over."""
    run = tmp_path / "x"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "mlp", "lr": 1e6}))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "step", "step": 999, "loss": float("nan")}) + "\n")
    assert main(["train", "--resume", str(run)]) == 2
    assert "stopped before its first checkpoint; start it again with the same --name" in capsys.readouterr().err
    assert _train(tmp_path) == 0
    assert json.loads((run / "config.json").read_text())["model"] == "softmax"
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 999 not in steps and steps


def test_an_empty_folder_is_reused(tmp_path):
    (tmp_path / "x").mkdir()
    assert _train(tmp_path) == 0
    assert (tmp_path / "x" / "last.safetensors").is_file()


@pytest.mark.parametrize("extra", ["last.safetensors", "best.safetensors", "notes.txt", "figures/"])
def test_a_folder_with_a_checkpoint_or_anything_else_is_refused_and_untouched(tmp_path, capsys, extra):
    run = tmp_path / "x"
    run.mkdir()
    (run / "config.json").write_text("{}")
    if extra.endswith("/"):
        (run / extra).mkdir()
    else:
        (run / extra).write_bytes(b"precious")
    before = sorted((p.name, p.is_dir() or p.read_bytes()) for p in run.iterdir())
    assert _train(tmp_path) == 2
    assert "already exists: pass --resume" in capsys.readouterr().err
    assert sorted((p.name, p.is_dir() or p.read_bytes()) for p in run.iterdir()) == before


@pytest.mark.skipif(os.name != "posix", reason="folder locks use flock (POSIX)")
def test_a_live_run_before_its_first_checkpoint_is_not_taken_over(tmp_path, capsys):
    """A folder with only config.json may be a run still in its first epoch: its lock says so."""
    run = tmp_path / "x"
    run.mkdir()
    (run / "config.json").write_text('{"model": "mlp"}')
    fd = lock_folder(run)  # what the live process holds (another open file description: flock conflicts)
    try:
        assert _train(tmp_path) == 2
        assert "is in use: another mnistlab process is training in it right now" in capsys.readouterr().err
        assert (run / "config.json").read_text() == '{"model": "mlp"}'
    finally:
        os.close(fd)
    assert _train(tmp_path) == 0  # the process ended (lock gone): a failed start, reused


def test_ctrl_c_before_the_first_checkpoint_removes_the_folder(tmp_path):
    """A second Ctrl-C (KeyboardInterrupt, no checkpoint saved) during epoch 1: nothing is left behind."""
    cfg = Config(dataset="synthetic", model="softmax", epochs=1, val_size=200, out_dir=str(tmp_path), name="x",
                 figures=False)

    def interrupt(info):
        raise KeyboardInterrupt

    session = TrainSession.start(cfg)
    assert (tmp_path / "x" / "config.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        session.fit(on_step=interrupt)
    assert not (tmp_path / "x").exists()
    assert TrainSession.start(cfg).fit().test.acc > 0.5  # the same name starts afresh


def test_a_failure_after_the_first_checkpoint_keeps_the_run_resumable(tmp_path):
    cfg = Config(dataset="synthetic", model="softmax", epochs=2, val_size=200, out_dir=str(tmp_path), name="x",
                 figures=False)

    def fail(record):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        TrainSession.start(cfg).fit(on_epoch_end=fail)
    assert (tmp_path / "x" / "last.safetensors").is_file()
    with pytest.raises(ConfigError, match="already exists: pass --resume"):
        RunDir.check_free(cfg)
    assert TrainSession.resume(tmp_path / "x").fit().state.finished


def test_an_error_while_loading_data_leaves_no_folder(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["train", "--dataset", f"csv:{missing}", "--out-dir", str(tmp_path / "runs"), "--name", "x"]) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "x").exists()
