"""Nothing silently ignored: model options, settings the rest of a config makes meaningless, empty
lists, --resume with changed settings, presets, and the first line that shows what will run."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.cli import build_parser, main
from mnistlab.cli.train import config_from_args
from mnistlab.config import MODEL_FIELDS, PRESET_DATASET_OVERRIDES, PRESETS, Config, optimiser_summary, preset_values
from mnistlab.errors import ConfigError
from mnistlab.models import create_model, list_models, model_options, models_using
from mnistlab.runs.session import check_names
from mnistlab.training.trainer import Trainer, build_optimizer, lr_at
from cores import THREADS

FAST = ["--dataset", "synthetic", "--model", "softmax", "--epochs", "2", "--val-size", "200", "--threads", str(THREADS)]


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """Loading data (the first real work) fails the test: checks must come before it."""
    import mnistlab.runs.session

    def refuse(*args, **kwargs):
        raise AssertionError("data were loaded before the options were checked")

    monkeypatch.setattr(mnistlab.runs.session, "load_data", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _cfg(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("mnistlab: error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert captured.out == ""
    return err


# ----------------------------------------------------------------------------- model options


def test_lenet_with_dropout_is_refused_naming_the_models_that_use_it(tmp_path, capsys, no_data):
    assert main(["train", "--model", "lenet", "--dropout", "0.5", "--out-dir", str(tmp_path / "runs")]) == 2
    err = _one_error_line(capsys)
    assert "--dropout 0.5: lenet does not use it (models that do: cnn, fastcnn, mlp)" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", list_models())
def test_every_model_refuses_each_option_it_does_not_use(name):
    k = 2 if name == "logistic" else 10
    samples = {"hidden": (16,), "activation": "tanh", "dropout": 0.1, "batch_norm": True, "init": "kaiming",
               "channels": (8, 16), "kernel_size": 3, "padding": 1, "space_to_depth": 1, "convs_per_stage": 2,
               "hidden_size": 16, "layers": 2, "negative_slope": 0.1}
    assert set(samples) == set(MODEL_FIELDS.values())
    for keyword, value in samples.items():
        if keyword in model_options(name):
            # LeakyReLU's slope needs the LeakyReLU activation (the mlp refuses it with any other).
            extra = {"activation": "leaky_relu"} if keyword == "negative_slope" else {}
            model = create_model(name, k, (1, 28, 28), **{keyword: value}, **extra)
            assert model(torch.zeros(2, 1, 28, 28)).shape[0] == 2
        else:
            # A ConfigError is a ValueError: Python callers get the usual exception type.
            with pytest.raises(ValueError, match=rf"{name} does not use the keyword '{keyword}'"):
                create_model(name, k, (1, 28, 28), **{keyword: value})


def test_declared_options():
    assert model_options("lenet") == () and model_options("softmax") == ()
    assert set(model_options("mlp")) == {"hidden", "activation", "dropout", "batch_norm", "init", "negative_slope"}
    assert model_options("fastcnn") == model_options("cnn")  # fastcnn is cnn with other defaults
    assert models_using("hidden_size") == ["gru", "lstm", "rnn"]
    with pytest.raises(ConfigError, match="unknown model"):
        model_options("resnet")
    with pytest.raises(ValueError, match="no model does"):
        create_model("mlp", dropuot=0.5)


def test_model_overrides_hold_only_what_was_given():
    assert Config(model="mlp").model_overrides() == {}
    cfg = Config(model="cnn", conv_channels=(8,), dropout=0.2)
    assert cfg.model_overrides() == {"channels": (8,), "dropout": 0.2}
    assert cfg.model_overrides(options=("dropout",)) == {"dropout": 0.2}


@pytest.mark.parametrize("flags, phrase", [
    (["--model", "lenet", "--hidden", "64"], "--hidden 64: lenet does not use it (models that do: cnn, fastcnn, mlp)"),
    (["--model", "softmax", "--conv-channels", "8"], "--conv-channels 8: softmax does not use it (models that do: cnn, fastcnn)"),
    (["--model", "cnn", "--activation", "tanh"], "--activation tanh: cnn does not use it (models that do: mlp)"),
    (["--model", "fastcnn", "--batch-norm"], "--batch-norm: fastcnn does not use it (models that do: mlp)"),
    (["--model", "mlp", "--init", "xavier", "--kernel-size", "3"], "--kernel-size 3: mlp does not use it"),
    (["--model", "gru", "--dropout", "0.1"], "--dropout 0.1: gru does not use it"),
    (["--model", "mlp", "--hidden-size", "32"], "--hidden-size 32: mlp does not use it (models that do: gru, lstm, rnn)"),
    # Settings that the rest of the config makes meaningless.
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum 0.5: only --optimizer sgd uses it, not adam"),
    (["--optimizer", "adamw", "--no-nesterov"], "--no-nesterov: only --optimizer sgd uses it, not adamw"),
    (["--betas", "0.8,0.99"], "--betas 0.8,0.99: only --optimizer adam and adamw use it, not sgd"),
    (["--optimizer", "adadelta", "--betas", "0.8,0.99"], "not adadelta"),
    (["--gamma", "0.5"], "--gamma 0.5: only --schedule step uses it, not onecycle"),
    (["--schedule", "cosine", "--step-every", "2"], "--step-every 2: only --schedule step uses it, not cosine"),
    (["--steps", "10", "--epochs", "3"], "--epochs 3: --steps 10 sets the length of the run"),
    (["--aug-rotate", "5"], "--aug-rotate 5: augmentation is off: add --augment"),
    (["--aug-shift", "1"], "--aug-shift 1: augmentation is off"),
    (["--aug-scale", "0.1"], "--aug-scale 0.1: augmentation is off"),
    (["--loss", "mse", "--label-smoothing", "0.1"], "--label-smoothing 0.1: only --loss ce smooths labels, not mse"),
    (["--model", "logistic", "--positive", "3", "--loss", "mse"], "--loss mse: the logistic model always trains with binary cross entropy"),
    (["--model", "logistic", "--positive", "3", "--label-smoothing", "0.1"], "--label-smoothing 0.1: the logistic model"),
    (["--threshold", "0.3"], "--threshold 0.3: only multi-label data sets (multimnist) use it; synthetic has one class"),
    (["--image-size", "32"], "--image-size 32: only folder: and csv: data sets use it, not synthetic"),
    (["--test-size", "0.1"], "--test-size 0.1: only folder: and csv: data sets use it"),
    (["--channels", "3"], "--channels 3: only folder: and csv: data sets use it"),
    (["--no-save-run", "--name", "x"], "--name x: --no-save-run writes no run directory"),
    (["--device", "cpu", "--bf16"], "--bf16: bfloat16 autocast runs on CUDA only, not on cpu"),
    (["--engine", "numpy", "--optimizer", "adam"], "--optimizer adam: the numpy engine does not use it"),
    (["--engine", "numpy", "--model", "mlp", "--dropout", "0.2"], "--dropout 0.2: the numpy engine does not use it"),
    (["--engine", "numpy", "--model", "softmax", "--hidden", "32"], "--hidden 32: the numpy engine's softmax has no hidden layers"),
])
def test_an_option_that_would_be_ignored_is_one_line_before_any_work(tmp_path, capsys, no_data, flags, phrase):
    assert main(["train", "--dataset", "synthetic", "--out-dir", str(tmp_path / "runs"), *flags]) == 2
    assert phrase in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_turning_off_what_is_already_off_or_giving_a_default_is_fine():
    # The default value is no request at all; neither is --no-figures without a run directory.
    check_names(_cfg("--model", "lenet", "--dropout", "0", "--activation", "relu", "--no-batch-norm"))
    check_names(_cfg("--optimizer", "adam", "--momentum", "0.9", "--nesterov"))
    check_names(_cfg("--no-save-run", "--no-figures"))
    check_names(_cfg("--augment", "--aug-rotate", "5", "--schedule", "step", "--gamma", "0.5"))
    check_names(_cfg("--dataset", "multimnist", "--loss", "bce", "--threshold", "0.3", "--model", "cnn"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 runs on CUDA")
def test_bf16_on_a_cpu_only_machine_is_refused_before_loading(tmp_path, capsys, no_data):
    assert main(["train", "--dataset", "synthetic", "--bf16", "--out-dir", str(tmp_path / "runs")]) == 2
    assert "--bf16: bfloat16 autocast runs on CUDA only; this run trains on cpu" in _one_error_line(capsys)


# ----------------------------------------------------------------------------- empty lists


@pytest.mark.parametrize("flag", ["--hidden", "--conv-channels", "--classes", "--betas"])
def test_empty_list_flag_is_refused(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "synthetic", "--out-dir", str(tmp_path / "runs"), flag, ""])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and f"argument {flag}: expected at least one" in lines[1]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("field", ["hidden", "conv_channels", "classes", "betas"])
def test_empty_list_in_a_config_is_refused(tmp_path, field):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}"):
        Config(**{field: ()})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({field: []}))
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}"):
        Config.load(path)


# ----------------------------------------------------------------------------- presets and layers


PRESET_CASES = [(name, None) for name in PRESETS] + [
    (name, dataset) for name, by_set in PRESET_DATASET_OVERRIDES.items() for dataset in by_set
]


@pytest.mark.parametrize("preset, dataset", PRESET_CASES)
def test_every_preset_is_consistent_and_builds(preset, dataset):
    argv = ["--preset", preset] + (["--dataset", dataset] if dataset else [])
    cfg = _cfg(*argv)
    for key, value in preset_values(preset, dataset).items():  # nothing of the preset was dropped
        assert getattr(cfg, key) == (tuple(value) if isinstance(value, list) else value), key
    check_names(cfg)
    model = create_model(cfg.model, 10, (1, 28, 28), **cfg.model_overrides())  # strict: every knob is used
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lecture_preset_is_the_lectures_loop_exactly(synthetic_bundle):
    cfg = Config.from_dict({**preset_values("lecture"), "val_size": 64, "save_run": False})
    check_names(cfg)
    assert (cfg.model, cfg.batch_size, cfg.label_smoothing, cfg.grad_clip, cfg.augment, cfg.loss) == ("lenet", 64, 0, 0, False, "ce")
    torch.manual_seed(0)
    model = create_model(cfg.model, 10, synthetic_bundle.in_shape, **cfg.model_overrides())
    opt = build_optimizer(model, cfg)
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == (0.01, 0.5, False, 0.0, 0.0)
    trainer = Trainer(model, synthetic_bundle, cfg, optimizer=opt)
    assert trainer.total_steps == 3 * trainer.steps_per_epoch
    assert [trainer.lr(step) for step in range(trainer.total_steps)] == [0.01] * trainer.total_steps
    # warmup 0 means constant from step 0 for any length, and the first steps really use that rate
    assert all(lr_at(s, n, 0.01, "constant", 0.0) == 0.01 for n in (1, 7, 938) for s in range(n))
    trainer.fit()
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["momentum"] == 0.5


def test_a_preset_setting_made_meaningless_by_a_flag_goes_back_to_its_default():
    adam = _cfg("--preset", "lecture", "--optimizer", "adam")
    defaults = Config()
    assert (adam.momentum, adam.nesterov) == (defaults.momentum, defaults.nesterov)  # SGD's, unused by adam
    assert (adam.lr, adam.batch_size, adam.weight_decay, adam.schedule) == (0.01, 64, 0.0, "constant")  # the rest stays
    check_names(adam)
    lenet = _cfg("--preset", "best", "--model", "lenet")
    assert lenet.conv_channels is None and lenet.hidden is None and lenet.dropout == 0
    assert lenet.augment and lenet.epochs == 20  # still the preset's training
    check_names(lenet)
    steps = _cfg("--preset", "speedrun", "--steps", "50")
    assert steps.steps == 50 and steps.epochs == defaults.epochs


def test_a_config_file_that_contradicts_itself_is_refused_naming_the_file(tmp_path, capsys, no_data):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "lenet", "dropout": 0.5}))
    assert main(["train", "--config", str(path), "--dataset", "synthetic", "--out-dir", str(tmp_path / "runs")]) == 2
    assert f"--config {path}: --dropout 0.5: lenet does not use it" in _one_error_line(capsys)
    # A run's whole config.json with another model on top: its own knobs go back to their defaults.
    path.write_text(json.dumps(Config(model="mlp", hidden=(64,), activation="tanh").to_dict()))
    cfg = _cfg("--config", str(path), "--model", "cnn")
    assert cfg.hidden == (64,) and cfg.activation == "relu"  # the cnn head uses --hidden; only mlp uses --activation


# ----------------------------------------------------------------------------- the first line


def _first_line(tmp_path, capsys, *extra):
    assert main(["train", *FAST, "--out-dir", str(tmp_path), "--name", "run", "--no-figures", *extra]) == 0
    return capsys.readouterr().out.splitlines()[0]


def test_first_line_shows_the_effective_optimiser_schedule_and_splits(tmp_path, capsys):
    line = _first_line(tmp_path, capsys, "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.8", "--nesterov",
                       "--weight-decay", "0.001", "--schedule", "onecycle", "--warmup", "0.2", "--batch-size", "64")
    assert line == (f"softmax (7,850 parameters) on synthetic: 1,848 train / 200 val / 512 test; "
                    f"sgd lr 0.1 momentum 0.8 nesterov wd 0.001, onecycle warmup 20%, batch 64, 2 epochs (58 steps); "
                    f"device cpu; run {tmp_path / 'run'}")


def test_first_line_for_adam_and_a_constant_rate(tmp_path, capsys):
    line = _first_line(tmp_path, capsys, "--optimizer", "adam", "--lr", "0.002", "--betas", "0.8,0.99",
                       "--weight-decay", "0", "--schedule", "constant", "--warmup", "0", "--label-smoothing", "0.1")
    assert "; adam lr 0.002 betas 0.8,0.99 wd 0, constant, label smoothing 0.1, batch " in line


@pytest.mark.parametrize("fields", [
    dict(optimizer="sgd", momentum=0.9, nesterov=True), dict(optimizer="sgd", momentum=0.0, nesterov=True),
    dict(optimizer="sgd", momentum=0.5, nesterov=False, weight_decay=0.0), dict(optimizer="adam", betas=(0.8, 0.9)),
    dict(optimizer="adamw", lr=0.01), dict(optimizer="adadelta"),
])
def test_optimiser_summary_says_what_build_optimizer_builds(fields):
    cfg = Config(**fields)
    group = build_optimizer(create_model("softmax"), cfg).param_groups[0]
    words = optimiser_summary(cfg).split()
    assert words[0] == cfg.optimizer and float(words[words.index("lr") + 1]) == group["lr"]
    assert float(words[words.index("wd") + 1]) == group["weight_decay"]
    assert ("nesterov" in words) == bool(group.get("nesterov"))
    assert ("momentum" in words) == ("momentum" in group)
    if "momentum" in group:
        assert float(words[words.index("momentum") + 1]) == group["momentum"]
    if "betas" in group:
        assert words[words.index("betas") + 1] == ",".join(f"{b:g}" for b in group["betas"])


# ----------------------------------------------------------------------------- --resume


@pytest.fixture
def stopped_run(tmp_path):
    """A run stopped after 3 steps (resumable), as Ctrl-C leaves it."""
    from mnistlab.runs.session import TrainSession

    cfg = Config(dataset="synthetic", model="softmax", epochs=2, val_size=200, out_dir=str(tmp_path), name="run",
                 figures=False, threads=THREADS)
    session = TrainSession.start(cfg)
    steps = []
    with pytest.raises(TrainSession.Interrupted):
        session.fit(on_step=steps.append, should_stop=lambda: len(steps) >= 3)
    return tmp_path / "run"


def test_resume_with_changed_settings_lists_every_difference(stopped_run, capsys, no_data):
    before = (stopped_run / "last.safetensors").read_bytes()
    assert main(["train", "--resume", str(stopped_run), "--lr", "0.5", "--epochs", "3", "--no-nesterov"]) == 2
    err = _one_error_line(capsys)
    assert "these settings differ" in err
    for diff in ("--lr (stored unset, given 0.5)", "--epochs (stored 2, given 3)", "--nesterov (stored yes, given no)"):
        assert diff in err
    assert "only --device, --threads, --figures may change" in err
    assert main(["train", "--resume", str(stopped_run), "--preset", "lecture"]) == 2
    assert "--model (stored softmax, given lenet)" in _one_error_line(capsys)
    assert (stopped_run / "last.safetensors").read_bytes() == before


def test_resume_may_change_where_it_runs(stopped_run, capsys):
    # The stored values given again are no change; device and threads may change.
    assert main(["train", "--resume", str(stopped_run), "--model", "softmax", "--val-size", "200",
                 "--device", "cpu", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("softmax (7,850 parameters) on synthetic: 1,848 train / 200 val / 512 test; ")
    assert first.endswith(f"run {stopped_run} (resumed at step 3)")


def test_a_run_saved_with_a_knob_its_model_never_used_still_loads(tmp_path):
    """Before models declared their options, `--model lenet --dropout 0.5` trained (without dropout) and saved."""
    from mnistlab.runs.checkpoint import load_checkpoint, save_checkpoint

    cfg = Config(model="lenet", dropout=0.5)  # what such a run stored
    model = create_model("lenet")
    path = save_checkpoint(tmp_path / "best.safetensors", model, cfg, tuple("0123456789"), (1, 28, 28), ((0.1,), (0.3,)))
    rebuilt = load_checkpoint(path).build_model()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))
