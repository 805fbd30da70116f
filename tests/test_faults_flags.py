"""Fault battery, flags: every impossible value is one argparse-style line and exit 2, before any work.

"Before any work" is checked, not timed: loading data fails the test if it is reached, and no run
folder may appear. Cases already held by tests/test_cli.py (negative lr, zero batch size, unknown
model or data set, logistic without two classes, unsafe --name) are not repeated here.
"""

from __future__ import annotations

import pytest

from mnistlab.cli import main

# (flags, phrase the one-line error must contain). Config validation: "mnistlab: error: ...".
CONFIG_ERRORS = [
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--batch-size", "-5"], "--batch-size must be positive"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be positive"),
    (["--hidden", "0"], "--hidden must be positive integers"),
    (["--hidden", "64,-3"], "--hidden must be positive integers"),
    (["--conv-channels", "0,8"], "--conv_channels must be positive integers"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--epochs", "-1"], "--epochs must be positive"),
    (["--steps", "0"], "--steps must be positive"),
    (["--classes", "3"], "--classes needs at least two distinct classes"),
    (["--classes", "3,3"], "--classes needs at least two distinct classes"),
    (["--classes", "3,99"], "--classes [99] out of range: synthetic has classes 0-9"),
    (["--classes=-1,2"], "--classes [-1] out of range"),
    (["--positive", "12"], "--positive 12 out of range"),
    (["--positive", "-1"], "--positive -1 out of range"),
    (["--classes", "1,2", "--positive", "1"], "either --classes or --positive"),
    (["--val-size", "-1"], "--val-size is a fraction (0 < f < 1) or a whole number of images, or 0 for none, got -1"),
    (["--val-size", "1.5"], "--val-size is a fraction (0 < f < 1) or a whole number of images, or 0 for none, got 1.5"),
    (["--train-size", "0"], "--train-size must be positive"),
    (["--target-acc", "2"], "--target-acc is a fraction in (0, 1]"),
    (["--target-acc", "0"], "--target-acc is a fraction in (0, 1]"),
    (["--target-acc", "0.99", "--val-size", "0"], "--target-acc watches validation accuracy"),
    (["--threads", "0"], "--threads must be positive"),
    (["--momentum", "-1"], "--momentum must be 0 or more"),
    (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
    (["--grad-clip", "-1"], "--grad-clip must be 0 or more"),
    (["--warmup", "1"], "--warmup must be a fraction in [0, 1)"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--log-every", "0"], "--log-every must be positive"),
    (["--gamma", "0"], "--gamma and --step-every must be positive"),
    (["--betas", "0.9"], "--betas must be two numbers"),
    (["--betas", "0.9,1.5"], "--betas must be two numbers"),
    (["--kernel-size", "0"], "--kernel-size must be positive"),
    (["--padding", "-1"], "--padding must be 0 or more"),
    (["--hidden-size", "0"], "--hidden-size must be positive"),
    (["--layers", "0"], "--layers must be positive"),
    (["--image-size", "4"], "--image-size must be at least 8"),
    (["--channels", "2"], "--channels must be 1 or 3"),
    (["--test-size", "0"], "--test-size is a fraction (0 < f < 1) or a whole number of images, got 0"),
    (["--test-size", "250.5"], "--test-size is a fraction (0 < f < 1) or a whole number of images, got 250.5"),
    (["--threshold", "1"], "--threshold is a probability in (0, 1)"),
    (["--aug-scale", "1"], "augmentation sizes"),
    (["--aug-shift", "-2"], "augmentation sizes"),
    (["--aug-flip"], "--aug-flip: a mirrored image of synthetic is a different character"),
    (["--space-to-depth", "0"], "--space-to-depth must be positive"),
    (["--config", "/nonexistent/run.json"], "cannot read config"),
]

# Rejected by argparse itself: usage line + "mnistlab train: error: ..." naming the valid choices.
ARGPARSE_ERRORS = [
    (["--hidden", "a,b"], "expected comma-separated ints"),
    (["--hidden", "1.5"], "expected comma-separated ints"),
    (["--conv-channels", "x"], "expected comma-separated ints"),
    (["--epochs", "x"], "invalid float value"),
    (["--seed", "1.5"], "invalid int value"),
    (["--batch-size", "ten"], "invalid int value"),
    (["--optimizer", "rmsprop"], "(choose from 'sgd', 'adam', 'adamw', 'adadelta')"),
    (["--loss", "hinge"], "(choose from 'ce', 'nll', 'mse', 'bce')"),
    (["--schedule", "exp"], "(choose from 'constant', 'step', 'cosine', 'onecycle')"),
    (["--device", "tpu"], "(choose from 'auto', 'cpu', 'cuda', 'mps')"),
    (["--activation", "gelu"], "(choose from 'relu', 'sigmoid', 'tanh', 'leaky_relu')"),
    (["--init", "zeros"], "(choose from 'default', 'kaiming', 'xavier')"),
    (["--normalize", "foo"], "(choose from 'standard', 'unit', 'symmetric')"),
    (["--engine", "jax"], "(choose from 'torch', 'numpy')"),
    (["--preset", "nope"], "(choose from 'best', 'lecture', 'mlp', 'speedrun')"),
]

NUM_BAD_FLAGS = len(CONFIG_ERRORS) + len(ARGPARSE_ERRORS) + 3  # + unknown data set, taken name, unknown flag


@pytest.fixture(autouse=True)
def no_data_loading(monkeypatch, tmp_path):
    """Any attempt to load data (the first real work) fails the test."""
    import mnistlab.data.custom
    import mnistlab.data.raw

    def refuse(*args, **kwargs):
        raise AssertionError("data were loaded before the flags were checked")

    monkeypatch.setattr(mnistlab.data.raw, "load_raw", refuse)
    monkeypatch.setattr(mnistlab.data.custom, "load_custom", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _argv(tmp_path, flags):
    return ["train", "--dataset", "synthetic", "--out-dir", str(tmp_path / "runs"), *flags]


@pytest.mark.parametrize("flags, phrase", CONFIG_ERRORS, ids=[" ".join(f) for f, _ in CONFIG_ERRORS])
def test_impossible_value_is_one_line_exit_2_before_any_work(tmp_path, capsys, flags, phrase):
    assert main(_argv(tmp_path, flags)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("mnistlab: error: ") and len(err.splitlines()) == 1, err
    assert phrase in err and "Traceback" not in err
    assert captured.out == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, phrase", ARGPARSE_ERRORS, ids=[" ".join(f) for f, _ in ARGPARSE_ERRORS])
def test_argparse_rejects_with_choices(tmp_path, capsys, flags, phrase):
    with pytest.raises(SystemExit) as info:
        main(_argv(tmp_path, flags))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # A short usage line, then the one error line (argparse's format), nothing else.
    assert len(lines) == 2 and lines[0].startswith("usage: mnistlab train"), lines
    assert lines[1].startswith("mnistlab train: error: ") and phrase in lines[1], lines
    assert not (tmp_path / "runs").exists()


def test_unknown_data_set_lists_the_registered_ones(tmp_path, capsys):
    assert main(["train", "--dataset", "cifar10", "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown data set 'cifar10' (choose from " in err
    for name in ("mnist", "fashion-mnist", "kmnist", "synthetic"):
        assert name in err
    assert not (tmp_path / "runs").exists()


def test_taken_name_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "last.safetensors").write_bytes(b"a run")  # an empty folder would be reused
    assert main(_argv(tmp_path, ["--name", "mine"])) == 2
    assert "already exists" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == [tmp_path / "runs" / "mine"]


def test_unknown_flag_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(_argv(tmp_path, ["--no-such-flag"]))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "mnistlab: error: unrecognized arguments: --no-such-flag"
    assert not (tmp_path / "runs").exists()
