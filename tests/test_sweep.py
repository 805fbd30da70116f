"""`mnistlab sweep`: exact trial counts with 2 workers on one journal, resume, failed trials, best.json
round-trips through `train --config`, the test set untouched by trials, and bad --space files."""

from __future__ import annotations

import json
import sys

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra (pip install optuna) is not installed")

from mnistlab.cli import main  # noqa: E402
from mnistlab.training.trainer import Trainer  # noqa: E402

TINY = ["--dataset", "synthetic", "--model", "softmax", "--epochs", "2", "--train-size", "400", "--threads", "1"]
VAL, TEST = 205, 512  # the synthetic set's default validation split and its test split


def _sweep(tmp_path, *extra, study="s"):
    return main(["sweep", *TINY, "--out-dir", str(tmp_path), "--study", study, *extra])


def _study(tmp_path, study="s"):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "sweeps" / study / "journal.log"
    return optuna.load_study(study_name=study, storage=JournalStorage(JournalFileBackend(str(path))))


def test_two_workers_on_one_journal_record_exactly_the_trials_asked_for(tmp_path):
    assert _sweep(tmp_path, "--trials", "4", "--workers", "2", "--no-retrain") == 0
    trials = _study(tmp_path).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    # Workers claim trials one at a time as they get free, so a worker that starts late may find none left.
    assert {t.user_attrs["worker"] for t in trials} <= {0, 1}
    assert all(t.state.name == "COMPLETE" for t in trials)
    # Every epoch's validation accuracy was reported (what the median pruner compares), the last one is the value.
    for t in trials:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == t.intermediate_values[2]
    rows = json.loads((tmp_path / "sweeps" / "s" / "trials.json").read_text())
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert (tmp_path / "sweeps" / "s" / "sweep.png").stat().st_size > 0
    assert not [p for p in (tmp_path / "sweeps" / "s").iterdir() if p.is_dir()]  # trials write no run folders


def test_a_bare_resume_continues_the_study_with_its_stored_settings(tmp_path, capsys):
    assert _sweep(tmp_path, "--trials", "2", "--no-retrain") == 0
    journal = tmp_path / "sweeps" / "s" / "journal.log"
    # Only --study and --storage: the fixed settings and the space come from the study.
    assert main(["sweep", "--study", "s", "--storage", str(journal), "--out-dir", str(tmp_path), "--trials", "2",
                 "--no-retrain"]) == 0
    assert "holds 2 trials already" in capsys.readouterr().out
    trials = _study(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # the resumed sampler does not repeat picks
    # Other fixed settings on the same study: refused, not mixed into it.
    assert _sweep(tmp_path, "--trials", "1", "--batch-size", "32") == 2
    assert "other fixed settings" in capsys.readouterr().err


def test_a_diverging_trial_is_recorded_failed_and_the_sweep_goes_on(tmp_path, capsys):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"choices": [1e9, 0.1]}}))
    journal = tmp_path / "sweeps" / "s" / "journal.log"
    journal.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))), direction="maximize")
    study.enqueue_trial({"lr": 1e9})  # the first two trials: a huge rate, then a sane one
    study.enqueue_trial({"lr": 0.1})
    assert _sweep(tmp_path, "--trials", "2", "--space", str(space), "--batch-size", "64", "--no-retrain") == 0
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert "loss became" in trials[0].user_attrs["error"]
    out = capsys.readouterr().out
    assert "trial   0  fail" in out and "1 failed" in out and "best: trial 1" in out


def test_trials_never_read_the_test_set_and_best_json_reproduces_the_best_trial(tmp_path, capsys, monkeypatch):
    seen = []
    evaluate = Trainer.evaluate

    def spy(self, split, tta=False):
        seen.append(len(split))
        return evaluate(self, split, tta)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    assert _sweep(tmp_path, "--trials", "3") == 0
    # 3 trials x 2 epochs of validation, then the retrain: 2 validations and ONE test evaluation.
    assert seen == [VAL] * 8 + [TEST]
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "sweeps" / "s" / "trials.json").read_text())
    best = max(rows, key=lambda r: r["val_acc"])
    assert f"retrained trial {best['number']}: val acc {100 * best['val_acc']:.2f}% (the trial: {100 * best['val_acc']:.2f}%)" in out
    test_line = next(line for line in out.splitlines() if line.startswith("Test set (once"))
    # `mnistlab train --config best.json` is the same run: the same validation curve and test result.
    best_json = tmp_path / "sweeps" / "s" / "best.json"
    assert json.loads(best_json.read_text())["lr"] == pytest.approx(best["params"]["lr"])
    assert main(["train", "--config", str(best_json), "--out-dir", str(tmp_path / "again"), "--name", "r", "-q"]) == 0
    records = [json.loads(line) for line in (tmp_path / "again" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_acc"] for r in records if r["kind"] == "epoch"][-1] == best["val_acc"]
    assert test_line.split("Accuracy: ")[1] in capsys.readouterr().out
    # A second sweep over the same study tests a new best once, and an already retrained best never again.
    seen.clear()
    assert _sweep(tmp_path, "--trials", "1") == 0
    again = capsys.readouterr().out
    assert seen.count(TEST) == (0 if "retrained earlier" in again else 1)


@pytest.mark.parametrize("space, message", [
    ("{not json", "cannot read it"),
    ({}, "one non-empty JSON object"),
    ({"learning_rate": {"low": 0.1, "high": 1}}, "'learning_rate' is not a setting"),
    ({"seed": {"low": 0, "high": 9}}, "give it as a fixed option"),
    ({"dropout": {"low": 0.0, "high": 0.5}}, "softmax does not use it"),
    ({"lr": {"low": 0.5, "high": 0.1}}, "low must be below high"),
    ({"lr": {"low": 0, "high": 0.1, "log": True}}, "log range needs low above 0"),
    ({"lr": {"low": 0.01, "hi": 0.1}}, "unknown key(s) hi"),
    ({"batch_size": {"choices": [64, "big"]}}, "must be int"),
    ({"batch_size": {"choices": [0, 64]}}, "--batch-size must be positive"),
    ({"hidden": {"low": 1, "high": 2}}, "takes a list of choices"),
    ({"threads": {"choices": [1, 2]}}, "give it as a fixed option"),
    ({"train_size": [100]}, "give it as a fixed option"),
    ({"lr": {"choices": [0.1]}, "momentum": {"low": 0.5, "high": 0.9}, "optimizer": ["adam"]}, None),
])
def test_a_bad_space_file_is_one_clear_error(tmp_path, capsys, space, message):
    path = tmp_path / "space.json"
    path.write_text(space if isinstance(space, str) else json.dumps(space))
    code = main(["sweep", *TINY, "--out-dir", str(tmp_path), "--space", str(path), "--trials", "1", "--no-retrain"])
    err = capsys.readouterr().err.strip()
    if message is None:  # momentum under a searched optimizer: accepted up front (each trial is checked)
        return
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("mnistlab: error: --space") and message in err, err
    assert not (tmp_path / "sweeps").exists()  # refused before any study was made


def test_a_searched_setting_given_as_a_flag_too_is_refused(tmp_path, capsys):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"lr": {"low": 0.01, "high": 0.5, "log": True}}))
    assert main(["sweep", *TINY, "--lr", "0.1", "--space", str(path), "--out-dir", str(tmp_path)]) == 2
    assert "search it or fix it, not both" in capsys.readouterr().err
    # The default space leaves out what the command line fixes.
    assert main(["sweep", *TINY, "--lr", "0.1", "--show-space"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"weight_decay", "batch_size"}


def test_no_validation_split_is_refused(tmp_path, capsys):
    assert main(["sweep", *TINY, "--val-size", "0", "--out-dir", str(tmp_path)]) == 2
    assert "never on the test set" in capsys.readouterr().err


def test_without_optuna_one_line_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert main(["sweep", *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mnistlab: error: mnistlab sweep needs Optuna: pip install 'mnistlab[sweep]' (or: pip install optuna)"


def test_ctrl_c_keeps_the_finished_trials_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from mnistlab.runs.session import TrainSession

    fit, calls = TrainSession.fit, []

    def interrupted_second(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(self, *a, **kw)

    monkeypatch.setattr(TrainSession, "fit", interrupted_second)
    assert _sweep(tmp_path, "--trials", "3", "--no-retrain") == 130
    err = capsys.readouterr().err.strip().splitlines()
    journal = tmp_path / "sweeps" / "s" / "journal.log"
    assert err == [f"mnistlab: error: interrupted: 1 trial(s) of this sweep finished and are kept in {journal}; "
                   f"resume with: mnistlab sweep --study s --storage {journal} --trials 2"]
    assert [t.state.name for t in _study(tmp_path).trials] == ["COMPLETE", "FAIL"]  # Optuna's record of the interrupted one
    monkeypatch.setattr(TrainSession, "fit", fit)
    assert main(["sweep", "--study", "s", "--storage", str(journal), "--out-dir", str(tmp_path), "--trials", "2",
                 "--no-retrain"]) == 0
    assert [t.state.name for t in _study(tmp_path).trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


def test_a_worker_killed_while_writing_the_journal_does_not_stall_the_others(tmp_path):
    """A worker SIGKILLed inside a journal append (it holds the write lock) must not leave a lock behind:
    Optuna's own symlink lock would make every other writer wait its 30 s grace period."""
    import signal
    import subprocess
    import threading
    import time

    from mnistlab.sweep.study import open_storage

    journal = str(tmp_path / "journal.log")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\n"
         "from mnistlab.sweep.study import JournalWriteLock\n"
         f"JournalWriteLock({journal!r}).acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        writer = threading.Thread(target=optuna.create_study, daemon=True,
                                  kwargs={"study_name": "after", "storage": open_storage(journal)})
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # a sweep's storage writes under that lock: it waits while the holder lives
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        writer.join(10)
        took = time.monotonic() - killed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not writer.is_alive() and took < 2, f"the next writer waited {took:.1f} s after the holder died"
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(journal))] == ["after"]
