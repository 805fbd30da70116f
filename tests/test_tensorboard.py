"""`--tensorboard`: the event files read back with TensorBoard's own reader and checked against
metrics.jsonl; resume, Ctrl-C, failed starts, experiments' arms, bad input and a missing extra."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from mnistlab.cli import main  # noqa: E402
from mnistlab.reporting.tensorboard import INSTALL, fresh_log_dir  # noqa: E402
from mnistlab.runs.rundir import is_failed_start, remove_failed_start  # noqa: E402
from cores import THREADS

TRAIN = ["train", "--dataset", "synthetic", "--model", "mlp", "--hidden", "32", "--epochs", "2", "--batch-size", "64", "--train-size", "640",
         "--val-size", "200", "--log-every", "2", "--threads", str(THREADS), "-q"]


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _hparams(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def _check_against_metrics(acc: EventAccumulator, run: Path) -> None:
    steps, epochs = _records(run, "step"), _records(run, "epoch")
    approx = lambda xs: pytest.approx(xs, rel=1e-6, abs=1e-7)  # noqa: E731  (event files hold float32)
    assert steps and _scalars(acc, "loss/train") == [(r["step"], approx(r["loss"])) for r in steps]
    assert _scalars(acc, "accuracy/train") == [(r["step"], approx(r["acc"])) for r in steps]
    assert _scalars(acc, "lr") == [(r["step"], approx(r["lr"])) for r in steps]
    assert _scalars(acc, "loss/val") == [(r["step"], approx(r["val_loss"])) for r in epochs]
    assert _scalars(acc, "accuracy/val") == [(r["step"], approx(r["val_acc"])) for r in epochs]
    assert _scalars(acc, "loss/train_epoch") == [(r["step"], approx(r["train_loss"])) for r in epochs]
    assert _scalars(acc, "accuracy/train_epoch") == [(r["step"], approx(r["train_acc"])) for r in epochs]


def test_train_log_matches_metrics_jsonl(tmp_path, capsys):
    assert main([*TRAIN, "--out-dir", str(tmp_path), "--name", "run", "--tensorboard"]) == 0
    run = tmp_path / "run"
    acc = _events(run / "tb")
    _check_against_metrics(acc, run)
    (test,) = _records(run, "test")
    last = test["step"]
    assert _scalars(acc, "accuracy/test") == [(last, pytest.approx(test["test_acc"], rel=1e-6))]
    assert _scalars(acc, "loss/test") == [(last, pytest.approx(test["test_loss"], rel=1e-6))]
    best = max(r["val_acc"] for r in _records(run, "epoch"))
    assert _scalars(acc, "accuracy/val_best") == [(last, pytest.approx(best, rel=1e-6))]
    # The options as hparams, beside those metrics (TensorBoard's HPARAMS tab).
    config = json.loads((run / "config.json").read_text())
    hp = _hparams(acc)
    assert hp["model"] == "mlp" and hp["hidden"] == "32" and hp["batch_size"] == config["batch_size"] == 64
    from mnistlab.config import Config

    assert config["lr"] is None and hp["lr"] == pytest.approx(Config.from_dict(config).peak_lr)  # the lr it took
    assert hp["total_steps"] == last and "out_dir" not in hp
    # The run's confusion matrix and mistakes, as the PNGs the figures are drawn as.
    from PIL import Image

    for tag in ("test/confusion_matrix", "test/mistakes"):
        (image,) = acc.Images(tag)
        picture = Image.open(io.BytesIO(image.encoded_image_string))
        assert image.step == last and picture.size == (image.width, image.height) and picture.size[0] > 100
    confusion = Image.open(io.BytesIO(acc.Images("test/confusion_matrix")[0].encoded_image_string)).convert("RGB")
    assert confusion.tobytes() == Image.open(run / "confusion.png").convert("RGB").tobytes()  # the same figure


def test_first_line_names_the_log_and_dir_holds_one_run_per_name(tmp_path, capsys, monkeypatch):
    """--tensorboard DIR: DIR/<run name>, so that `tensorboard --logdir DIR` compares runs; a folder
    that holds a log already is never written into (the next free name instead)."""
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    argv = [*TRAIN, "--epochs", "1", "--tensorboard", str(logs)]
    argv.remove("-q")
    assert main([*argv, "--out-dir", str(tmp_path / "runs"), "--name", "a"]) == 0
    assert f"TensorBoard log {logs / 'a'}  (view: tensorboard --logdir {logs})" in capsys.readouterr().out
    assert main([*argv, "--no-save-run"]) == 0
    assert main([*argv, "--no-save-run"]) == 0  # the same default name within a second, or another one
    runs = sorted(p.name for p in logs.iterdir())
    assert runs[0] == "a" and len(runs) == 3 and all(any(p.iterdir()) for p in logs.iterdir())
    assert fresh_log_dir(logs / "a") == logs / "a-2" and fresh_log_dir(logs / "new") == logs / "new"


def test_interrupt_then_resume_logs_each_step_once(tmp_path):
    """Ctrl-C closes a complete log; a resume that starts before steps already logged (a crash after the
    checkpoint) hides them (purge_step), so each step shows once, with metrics.jsonl's values."""
    import shutil

    from mnistlab.config import Config
    from mnistlab.runs.session import TrainSession

    cfg = Config(dataset="synthetic", model="mlp", hidden=(32,), epochs=2, batch_size=64, train_size=640, val_size=200, log_every=2,
                 out_dir=str(tmp_path), name="cut", figures=False, threads=THREADS)
    session = TrainSession.start(cfg)
    taken: list[int] = []
    with pytest.raises(TrainSession.Interrupted):
        session.fit(on_step=taken.append, should_stop=lambda: len(taken) >= 4, tensorboard=session.tensorboard_dir())
    run = tmp_path / "cut"
    assert [s for s, _ in _scalars(_events(run / "tb"), "loss/train")] == [2, 4]  # closed: all of it readable
    shutil.copy(run / "last.safetensors", tmp_path / "at-step-4")
    resumed = TrainSession.resume(run)
    taken.clear()
    with pytest.raises(TrainSession.Interrupted):
        resumed.fit(on_step=taken.append, should_stop=lambda: len(taken) >= 6, tensorboard=resumed.tensorboard_dir())
    assert [s for s, _ in _scalars(_events(run / "tb"), "loss/train")] == [2, 4, 6, 8, 10]
    shutil.copy(tmp_path / "at-step-4", run / "last.safetensors")  # as if it died after step 10, saved at 4
    resumed = TrainSession.resume(run)
    resumed.fit(tensorboard=resumed.tensorboard_dir())
    acc = _events(run / "tb")
    steps = [s for s, _ in _scalars(acc, "loss/train")]
    assert steps == sorted(set(steps)) and steps[:5] == [2, 4, 6, 8, 10]
    _check_against_metrics(acc, run)


def test_resume_without_the_flag_says_where_the_log_is(tmp_path, capsys):
    from mnistlab.config import Config
    from mnistlab.runs.session import TrainSession

    cfg = Config(dataset="synthetic", model="softmax", epochs=2, val_size=200, log_every=1, out_dir=str(tmp_path),
                 name="r", figures=False, threads=THREADS)
    session = TrainSession.start(cfg)
    with pytest.raises(TrainSession.Interrupted):
        session.fit(should_stop=lambda: True, tensorboard=session.tensorboard_dir())
    assert main(["train", "--resume", str(tmp_path / "r"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "holds this run's TensorBoard log; add --tensorboard" in err


def test_failed_start_with_a_log_is_reused_and_its_log_removed(tmp_path):
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"kind": "step", "step": 2}\n')
    (run / "tb" / "events.out.tfevents.1.host.1.0").write_bytes(b"x")
    assert is_failed_start(run)
    (run / "tb" / "notes.txt").write_text("mine")
    assert not is_failed_start(run)  # a file mnistlab did not write: the folder is not ours to reuse
    (run / "tb" / "notes.txt").unlink()
    assert remove_failed_start(run, remove_folder=True) and not run.exists()


def test_diverged_run_keeps_its_log_and_the_same_name_starts_afresh(tmp_path, capsys):
    argv = [*TRAIN, "--lr", "1e9", "--momentum", "0", "--out-dir", str(tmp_path), "--name", "boom", "--tensorboard"]
    assert main(argv) == 1
    run = tmp_path / "boom"
    assert "loss became" in capsys.readouterr().err
    # It logged steps before diverging: the log is kept beside metrics.jsonl, complete.
    assert [s for s, _ in _scalars(_events(run / "tb"), "loss/train")] == [r["step"] for r in _records(run, "step")] != []
    assert main([*TRAIN, "--epochs", "1", "--out-dir", str(tmp_path), "--name", "boom", "--tensorboard"]) == 0
    _check_against_metrics(_events(run / "tb"), run)  # the old steps are gone with the old records


@pytest.mark.parametrize("extra, message", [
    (["--engine", "numpy", "--model", "softmax"], "--engine numpy has no TensorBoard log"),
    (["--no-save-run"], "--no-save-run writes no run folder: give a DIR"),
])
def test_flags_it_cannot_honour_are_refused(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "synthetic", *extra, "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_file_as_dir_is_one_line_and_nothing_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*TRAIN, "--out-dir", str(tmp_path / "runs"), "--tensorboard", str(blocker / "logs")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"mnistlab: error: --tensorboard {blocker / 'logs'}: {blocker} is a file, not a folder"
    assert not (tmp_path / "runs").exists() and blocker.read_text() == "x"


def test_experiment_logs_each_arm_as_a_run(tmp_path, capsys):
    out = tmp_path / "ova"
    assert main(["experiment", "ova", "--quick", "--epochs", "0.1", "--threads", str(THREADS), "--out-dir", str(out),
                 "--tensorboard"]) == 0
    assert f"TensorBoard: 12 runs in {out / 'tb'}" in capsys.readouterr().out
    arms = sorted(p.name for p in (out / "tb").iterdir())
    assert "softmax regression (ce)" in arms and "logistic, 7 vs rest" in arms and len(arms) == 12
    table = json.loads((out / "results.json").read_text())["tables"]["one-vs-all vs softmax"]
    for row in table[:2]:  # the two joint models: one arm each
        acc = _events(out / "tb" / row["method"])
        assert _scalars(acc, "accuracy/test")[0][1] == pytest.approx(row["test_acc"], abs=1e-6)
        assert _hparams(acc)["loss"] == row["loss"]


def test_experiment_that_trains_nothing_refuses_the_flag(tmp_path, capsys):
    assert main(["experiment", "worked", "--out-dir", str(tmp_path / "w"), "--tensorboard"]) == 2
    assert "trains no model" in capsys.readouterr().err and not (tmp_path / "w").exists()


BLOCKED = "import sys; sys.modules['tensorboard'] = None; sys.argv[0] = 'mnistlab'; from mnistlab.cli import entry; entry()"


@pytest.mark.parametrize("argv", [["train", "--dataset", "synthetic", "--tensorboard"],
                                  ["experiment", "templates", "--quick", "--out-dir", "ex", "--tensorboard"]])
def test_without_the_extra_one_line_and_nothing_trained(tmp_path, argv):
    proc = subprocess.run([sys.executable, "-c", BLOCKED, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"mnistlab: error: {INSTALL}\n" and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no run folder, no experiment folder
