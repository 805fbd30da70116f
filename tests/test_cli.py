"""The command line end to end, in-process on tmp_path: files written, errors as one line."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.runs.checkpoint import load_checkpoint
from mnistlab.cli import main
from cores import THREADS

FAST = ["--dataset", "synthetic", "--model", "softmax", "--epochs", "2", "--val-size", "200", "--threads", str(THREADS)]


def _train(tmp_path, *extra, name="run"):
    return main(["train", *FAST, "--out-dir", str(tmp_path), "--name", name, *extra])


def test_train_writes_a_run(tmp_path, capsys):
    assert _train(tmp_path) == 0
    out = capsys.readouterr().out
    assert "Test set: Average loss" in out and "epoch   2/2" in out
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "evaluation.json",
                 "curves.png", "confusion.png", "predictions.png", "mistakes.png"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records if r["kind"] != "step"] == ["epoch", "epoch", "test"]
    assert json.loads((run / "config.json").read_text())["model"] == "softmax"


def test_same_name_never_overwrites(tmp_path, capsys):
    assert _train(tmp_path) == 0
    before = (tmp_path / "run" / "last.safetensors").read_bytes()
    assert _train(tmp_path, "--seed", "3") == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == before


def test_evaluate_and_report(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 512 and report["uniform_perplexity"] == 10
    assert report["perplexity"] < 10 and sum(map(sum, report["confusion_matrix"])) == 512
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "perplexity" in text.lower() and "confusion" in text.lower()
    assert main(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report.html").stat().st_size > 10_000


def test_resume_finishes_like_an_uninterrupted_run(tmp_path):
    """Stop after 7 steps (mid-epoch), resume, and end with the same weights bit for bit."""
    from mnistlab.config import Config
    from mnistlab.runs.session import TrainSession

    common = dict(dataset="synthetic", model="mlp", hidden=(32,), epochs=3, batch_size=64, val_size=200,
                  augment=True, dropout=0.2, out_dir=str(tmp_path), figures=False, threads=THREADS)
    TrainSession.start(Config(name="whole", **common)).fit()
    session = TrainSession.start(Config(name="split", **common))
    steps = []
    with pytest.raises(TrainSession.Interrupted):
        session.fit(on_step=lambda i: steps.append(i), should_stop=lambda: len(steps) >= 7)
    state = load_checkpoint(tmp_path / "split" / "last.safetensors").train_state
    assert state["step"] == 7 and state["batch"] == 7
    TrainSession.resume(tmp_path / "split").fit()
    a = load_checkpoint(tmp_path / "whole" / "last.safetensors").model_state()
    b = load_checkpoint(tmp_path / "split" / "last.safetensors").model_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-1"], "--lr must be positive"),
    (["train", "--batch-size", "0"], "--batch-size must be positive"),
    (["train", "--model", "resnet"], "choose from"),
    (["train", "--dataset", "cifar"], "choose from"),
    (["train", "--model", "logistic"], "binary"),
    (["train", "--name", "../escape"], "--name"),
])
def test_bad_flags_one_line_before_any_work(tmp_path, capsys, argv, message):
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["train", "--hidden", "a,b"], ["train", "--optimizer", "rmsprop"], ["train", "--epochs", "x"]])
def test_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["predict", "RUN", "--skip-bad", "a.png", "b.png"], {"run": "RUN", "images": ["a.png", "b.png"], "skip_bad": True}),
    (["predict", "RUN", "a.png", "--json", "b.png", "--top-k", "2"], {"images": ["a.png", "b.png"], "json": True, "top_k": 2}),
    (["predict", "RUN", "a.png", "--json", "--", "-odd.png"], {"images": ["a.png", "-odd.png"], "json": True}),
    (["predict", "predict", "--json", "predict"], {"run": "predict", "images": ["predict"]}),  # a file named like the command
    (["datasets", "export", "--format", "csv", "mnist", "out"], {"action": "export", "name": "mnist", "dir": "out"}),
    (["predict", "RUN", "a.png", "b.png"], {"images": ["a.png", "b.png"], "skip_bad": False}),  # argparse's own
])
def test_a_commands_positionals_may_be_split_by_its_options(argv, expected):
    from mnistlab.cli import build_parser, parse_command_line

    args = vars(parse_command_line(build_parser(), argv))
    assert args["command"] == argv[0] and callable(args["func"])
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize("argv, left", [
    (["predict", "RUN", "a.png", "--no-such-flag", "b.png"], "--no-such-flag b.png"),
    (["train", "--epochs", "1", "stray"], "stray"),
    (["lm", "train", "text.txt", "stray"], "text.txt stray"),  # a command with subcommands is not intermixed
])
def test_what_no_command_takes_is_still_argparses_one_line(argv, left, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mnistlab: error: unrecognized arguments: {left}"


def test_models_and_datasets_listing(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out and "7,850" in out
    assert main(["datasets", "list"]) == 0
    assert "fashion-mnist" in capsys.readouterr().out
    assert main(["datasets", "verify", "mnist"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("ok") for line in lines)


def test_logistic_one_against_rest(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--model", "logistic", "--positive", "7", "--epochs", "2",
                 "--val-size", "0", "--out-dir", str(tmp_path), "--name", "bin", "--no-figures"]) == 0
    assert "Accuracy" in capsys.readouterr().out
    report = json.loads((tmp_path / "bin" / "evaluation.json").read_text())
    assert report["num_classes"] == 2 and report["accuracy"] > 0.9


def test_quiet_prints_only_the_result(tmp_path, capsys):
    assert _train(tmp_path, "-q") == 0
    out = capsys.readouterr().out
    assert "epoch" not in out and "Test set: Average loss" in out


def test_resuming_a_finished_run_is_refused(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert "already finished" in capsys.readouterr().err


def test_preset_takes_its_overrides_for_the_chosen_data_set(tmp_path):
    from mnistlab.cli import build_parser
    from mnistlab.cli.train import config_from_args

    def cfg(*argv):
        return config_from_args(build_parser().parse_args(["train", *argv]))

    fashion = cfg("--preset", "best", "--dataset", "fashion-mnist")
    assert fashion.aug_flip and fashion.aug_rotate == 0 and fashion.aug_scale == 0
    assert fashion.conv_channels == (32, 48, 96) and fashion.convs_per_stage == 2  # the rest of the preset stays
    digits = cfg("--preset", "best")
    assert not digits.aug_flip and digits.aug_rotate == 10 and digits.aug_scale == 0.1
    # Flags still win over the preset's overrides, and a config file may name the data set.
    assert cfg("--preset", "best", "--dataset", "fashion-mnist", "--aug-rotate", "5").aug_rotate == 5
    conf = tmp_path / "run.json"
    conf.write_text('{"dataset": "fashion-mnist"}')
    assert cfg("--preset", "best", "--config", str(conf)).aug_flip
    assert cfg("--preset", "speedrun").model == "fastcnn"
