"""Fault battery, checkpoints: every bad checkpoint through `mnistlab evaluate`, `predict` and `lm sample`.

Each gives one line naming the file and exit 1, never a traceback. Library-level tests in
tests/test_checkpoint.py hold the rest: a planted pickle executes nothing
(test_planted_pickle_executes_nothing) and weights that do not match their config are refused
(test_config_not_matching_weights); here the same faults, and more, reach the user through the CLI.
"""

from __future__ import annotations

import json
import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mnistlab.runs.checkpoint import FORMAT_VERSION, load_checkpoint
from mnistlab.cli import main


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    """The shared tiny run (tests/conftest.py)."""
    return tiny_run


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "seven.png"
    a = np.full((28, 28), 255, np.uint8)
    a[5:8, 6:22] = 0
    a[8:24, 17:20] = 0
    Image.fromarray(a).save(path)
    return path


def _meta_and_tensors(path: Path) -> tuple[dict, dict]:
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return json.loads(header["__metadata__"]["mnistlab"]), load_checkpoint(path).tensors


def _rewrite(good: Path, bad: Path, change) -> None:
    meta, tensors = _meta_and_tensors(good)
    change(meta, tensors)
    save_file(tensors, bad, metadata={"mnistlab": json.dumps(meta)})


class _Boom:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-mnistlab-canary",))


def _future(meta, tensors):
    meta["format_version"] = FORMAT_VERSION + 1


def _mismatch(meta, tensors):
    meta["config"]["model"] = "mlp"


def _bad_config(meta, tensors):
    meta["config"]["learning_rate"] = 0.1


def _missing_key(meta, tensors):
    del meta["class_names"]


def _nan_weight(meta, tensors):
    tensors[next(k for k in sorted(tensors) if k.startswith("model."))].view(-1)[3] = float("nan")


def _inf_weight(meta, tensors):
    tensors["model.linear.bias"][0] = float("inf")  # the softmax model's bias


def _zero_std(meta, tensors):
    meta["std"] = [0.0]


def _lm(path: Path) -> Path:
    """A tiny untrained character LM checkpoint at `path`."""
    from mnistlab.lessons.lm.checkpoint import save_lm
    from mnistlab.lessons.lm.data import Vocab
    from mnistlab.lessons.lm.train import LMConfig, build_lm

    cfg = LMConfig(model="rnn", hidden_size=4, embed_size=2, device="cpu")
    return save_lm(path, build_lm(cfg, 3), cfg, Vocab(tuple("ab ")), " ")


def _numpy_model(path: Path) -> Path:
    from mnistlab.config import Config
    from mnistlab.lessons.scratch import SoftmaxRegression
    from mnistlab.lessons.scratch.train import save_numpy_model

    model = SoftmaxRegression(784, 10, seed=0)
    return save_numpy_model(path, model, Config(model="softmax", engine="numpy"), tuple("0123456789"), (0.1, 0.3))


def _fifo(bad: Path) -> None:
    import os

    os.mkfifo(bad)


# name -> (make(good, bad_path) -> path to pass, phrase). Each is one injected fault.
CASES = {
    "pickle planted as .safetensors": (lambda good, bad: bad.write_bytes(pickle.dumps(_Boom())), "never unpickles"),
    "torch.save zip": (lambda good, bad: torch.save({"w": torch.zeros(2)}, bad), "not an mnistlab checkpoint"),
    "safetensors from elsewhere": (lambda good, bad: save_file({"weight": torch.zeros(3, 3)}, bad),
                                   "not an mnistlab checkpoint (no mnistlab metadata)"),
    "foreign metadata": (lambda good, bad: save_file({"w": torch.zeros(1)}, bad, metadata={"mnistlab": "{not json"}),
                         "no mnistlab metadata"),
    "future format_version": (lambda good, bad: _rewrite(good, bad, _future), f"newer mnistlab (format {FORMAT_VERSION + 1})"),
    "config does not match weights": (lambda good, bad: _rewrite(good, bad, _mismatch), "do not match the model its config"),
    "invalid stored config": (lambda good, bad: _rewrite(good, bad, _bad_config), "stored config is invalid"),
    "metadata key missing": (lambda good, bad: _rewrite(good, bad, _missing_key), "stored config is invalid"),
    "truncated": (lambda good, bad: bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "not a valid safetensors"),
    "header only": (lambda good, bad: bad.write_bytes(good.read_bytes()[:8]), "not a valid safetensors"),
    "absurd header length": (lambda good, bad: bad.write_bytes((2**60).to_bytes(8, "little") + b"{}"), "not a valid safetensors"),
    "empty file": (lambda good, bad: bad.write_bytes(b""), "not a valid safetensors"),
    "random bytes": (lambda good, bad: bad.write_bytes(np.random.default_rng(0).bytes(4096)), "not a valid"),
    "folder without a checkpoint": (lambda good, bad: bad.mkdir() or (bad / "config.json").write_text("{}"), "no checkpoint in this folder"),
    "no such path": (lambda good, bad: None, "no such run directory or checkpoint file"),
    "no read permission": (lambda good, bad: shutil.copy(good, bad), "cannot read: Permission denied"),
    "a NaN weight": (lambda good, bad: _rewrite(good, bad, _nan_weight), "holds NaN or infinite values"),
    "an infinite weight": (lambda good, bad: _rewrite(good, bad, _inf_weight), "tensor model.linear.bias holds NaN or infinite"),
    "zero std in the metadata": (lambda good, bad: _rewrite(good, bad, _zero_std), "normalisation is unusable"),
    "header cut short": (lambda good, bad: bad.write_bytes(good.read_bytes()[:100]), "not a valid safetensors"),
    "last byte missing": (lambda good, bad: bad.write_bytes(good.read_bytes()[:-1]), "not a valid safetensors"),
    "a language model": (lambda good, bad: _lm(bad), "a character language-model checkpoint (use `mnistlab lm sample`)"),
    "a NumPy model": (lambda good, bad: _numpy_model(bad), "a NumPy model (--engine numpy"),
    "a language-model run folder": (lambda good, bad: bad.mkdir() or _lm(bad / "lm.safetensors"),
                                    "this folder holds a character language-model checkpoint"),
    "a NumPy run folder": (lambda good, bad: bad.mkdir() or _numpy_model(bad / "weights.safetensors"),
                           "this folder holds a NumPy model"),
    "a FIFO": (lambda good, bad: _fifo(bad), "not a regular file"),
}
COMMANDS = ["evaluate", "predict", "export"]  # every command that reads a checkpoint names it in its error


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_checkpoint_is_one_line_and_exit_1(run, image, tmp_path, capsys, monkeypatch, command, case):
    make, phrase = CASES[case]
    bad = tmp_path / "bad.safetensors"
    make(run / "last.safetensors", bad)
    if case == "no read permission":  # root reads anything: make the OS refusal happen
        real = Path.open  # Path.read_bytes opens through it too

        def refuse(self, *args, **kwargs):
            if self == bad:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    argv = {"evaluate": ["evaluate", str(bad)], "predict": ["predict", str(bad), str(image)],
            "export": ["export", str(bad), "--out", str(tmp_path / "m.onnx")]}[command]
    if case == "a FIFO":  # opening a FIFO for reading waits for a writer: fail instead of hanging
        signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the FIFO blocked"))
        signal.alarm(20)
    try:
        assert main(argv) == 1
    finally:
        signal.alarm(0)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"mnistlab: error: {bad}") and phrase in err, err
    assert captured.out == ""


def test_the_good_checkpoint_works_for_both(run, image, capsys):
    """The control: the file every case starts from evaluates and predicts."""
    assert main(["evaluate", str(run / "last.safetensors")]) == 0
    assert main(["predict", str(run / "last.safetensors"), str(image)]) == 0
    assert str(image) in capsys.readouterr().out




# `mnistlab lm sample` goes through the same reader: the same faults, plus the image kinds.
LM_CASES = {
    "empty file": (lambda good, lm, bad: bad.write_bytes(b""), "not a valid safetensors checkpoint (empty file)"),
    "truncated": (lambda good, lm, bad: bad.write_bytes(lm.read_bytes()[:-9]), "not a valid safetensors"),
    "pickle": (lambda good, lm, bad: bad.write_bytes(pickle.dumps(_Boom())), "never unpickles"),
    "torch.save zip": (lambda good, lm, bad: torch.save({"w": torch.zeros(2)}, bad), "never unpickles"),
    "an image-model checkpoint": (lambda good, lm, bad: shutil.copy(good, bad), "an image-model checkpoint (use `mnistlab predict`"),
    "an image-model run folder": (lambda good, lm, bad: shutil.copytree(good.parent, bad), "this folder holds an image-model checkpoint"),
    "a NumPy model": (lambda good, lm, bad: _numpy_model(bad), "a NumPy model"),
    "folder without a checkpoint": (lambda good, lm, bad: bad.mkdir(), "no checkpoint in this folder (expected lm.safetensors)"),
    "no such path": (lambda good, lm, bad: None, "no such run directory or checkpoint file"),
    "safetensors from elsewhere": (lambda good, lm, bad: save_file({"w": torch.zeros(1)}, bad), "not an mnistlab language-model"),
    "a NaN weight": (lambda good, lm, bad: _lm_nan(lm, bad), "tensor embed.weight holds NaN or infinite values"),
}


def _lm_nan(lm: Path, bad: Path) -> None:
    from safetensors import safe_open

    with safe_open(lm, framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k).clone() for k in f.keys()}
    tensors["embed.weight"][1, 0] = float("nan")
    save_file(tensors, bad, metadata=header)


@pytest.mark.parametrize("case", list(LM_CASES))
def test_bad_lm_checkpoint_is_one_line_and_exit_1(run, tmp_path, capsys, case):
    make, phrase = LM_CASES[case]
    lm = _lm(tmp_path / "good-lm.safetensors")
    assert main(["lm", "sample", str(lm), "--length", "5"]) == 0  # the control
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    make(run / "last.safetensors", lm, bad)
    assert main(["lm", "sample", str(bad), "--length", "5"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"mnistlab: error: {bad}") and phrase in err, err
    assert captured.out == ""


NUM_CHECKPOINT_FAULTS = len(CASES) * len(COMMANDS) + len(LM_CASES)
