"""Checkpoints written by main at commit 6a3e47d (before the layout move) still load and give the
same answers. The expected figures were printed by that commit's own commands:

    mnistlab train --name fastcnn-tiny --steps 30 --train-size 2000 --val-size 500 --no-figures -q
    mnistlab lm train --steps 150 --hidden-size 32 --embed-size 8 --out lm-tiny -q
    mnistlab train --engine numpy --model mlp --hidden 32 --steps 30 --name numpy-mlp -q --no-figures
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "legacy-6a3e47d"

# `mnistlab evaluate fastcnn-tiny --json` at 6a3e47d
FASTCNN_ACCURACY = 0.9456999897956848
FASTCNN_LOSS = 0.19153148803710937
# `mnistlab lm sample lm-tiny/lm.safetensors --prompt "The " --length 60 --seed 3 --json` at 6a3e47d
LM_SAMPLE = "ol sc  heo t\nrecit e\n asae ae tt fi \n ec\ntan*aststa\"ee*e\n ar"
# argmax of the NumPy MLP on the first 200 MNIST test images (standardised with its stored mean/std)
NUMPY_PREDS_ACCURACY_200 = 0.91


def test_fastcnn_run_from_6a3e47d_evaluates_the_same(capsys):
    assert main(["evaluate", str(FIXTURES / "fastcnn-tiny"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(FASTCNN_ACCURACY, abs=1e-6)
    assert report["loss"] == pytest.approx(FASTCNN_LOSS, rel=1e-4)


def test_lm_from_6a3e47d_samples_the_same_text(capsys):
    args = ["lm", "sample", str(FIXTURES / "lm-tiny" / "lm.safetensors"), "--prompt", "The ", "--length", "60",
            "--seed", "3", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["generated"] == LM_SAMPLE


def test_numpy_model_from_6a3e47d_predicts_the_same(capsys):
    from mnistlab.data.raw import load_raw
    from mnistlab.lessons.scratch.train import load_numpy_model

    model, meta = load_numpy_model(FIXTURES / "numpy-mlp")
    raw = load_raw("mnist")
    x = ((raw.test_x[:200].reshape(200, -1) / 255.0 - meta["mean"]) / meta["std"]).astype(np.float32)
    logits, _ = model.forward(x)
    assert float((logits.argmax(1) == raw.test_y[:200]).mean()) == pytest.approx(NUMPY_PREDS_ACCURACY_200)
