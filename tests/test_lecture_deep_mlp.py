"""benchmarks/lecture_deep_mlp.py: the lectures' 9-layer MLP outside mnistlab's trainer is the net the depth lesson trains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from mnistlab.lessons.experiments.depth import ARCHITECTURES
from mnistlab.models import count_parameters, create_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "lecture_deep_mlp.py"


def _script():
    spec = importlib.util.spec_from_file_location("lecture_deep_mlp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scripts_net_is_the_depth_lessons_9_layer_net():
    script = _script()
    assert script.SIZES[1:-1] == ARCHITECTURES[9]
    ours = create_model("mlp", num_classes=10, in_shape=(1, 28, 28), hidden=ARCHITECTURES[9])
    theirs = script.lecture_mlp()
    assert count_parameters(theirs) == count_parameters(ours)
    # The same weights give the same logits: the same layers in the same order (Linear, ReLU, ..., Linear).
    ours_linear = [m for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    theirs_linear = [m for m in theirs.modules() if isinstance(m, torch.nn.Linear)]
    for a, b in zip(ours_linear, theirs_linear):
        b.load_state_dict(a.state_dict())
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(theirs(x), ours(x))


def test_a_short_run_reports_one_test_accuracy_per_epoch(capsys):
    accs = _script().run(seed=0, epochs=1, train_size=256)
    assert len(accs) == 1 and 0.0 <= accs[0] <= 1.0
    assert capsys.readouterr().out.startswith("seed 0 epoch 1: test loss ")
