"""Issue 16: the worked examples against oracles, convolution and pooling, `experiment all`, and that each
lesson's defaults are the lecture's own settings (the runs at those settings are too slow for the suite:
their numbers are in the README's fidelity table)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from lesson_helpers import record_lesson_configs

from mnistlab.cli import main
from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments import ALL_PAGE, Options, run_all, run_experiment
from mnistlab.lessons.experiments import convolution, depth, overfit, rnn, softmax, worked
from mnistlab.lessons.experiments.common import LECTURE_TABLE
from mnistlab.models import create_model
from mnistlab.reporting.html import escape
from cores import THREADS


# ----------------------------------------------------------------------------- worked examples


def test_cross_entropy_example_is_minus_log_point_two_in_base_10_and_in_nats():
    ce = worked.cross_entropy_example()
    assert ce["nats"] == pytest.approx(-math.log(0.2), rel=1e-12)  # 1.6094
    assert ce["base10"] == pytest.approx(-math.log10(0.2), rel=1e-12)  # 0.69897: the lecture's "0.698"
    assert round(ce["base10"], 3) == 0.699 and math.floor(ce["base10"] * 1000) / 1000 == worked.LECTURE_CE


def test_binary_cross_entropy_of_three_sigmoid_outputs_is_2_63():
    bce = worked.binary_cross_entropy_example()
    oracle = -(math.log(0.6) + math.log(0.3) + math.log(0.4))
    assert bce["torch_sum"] == pytest.approx(oracle, rel=1e-12)
    assert bce["mnistlab_bce_times_3"] == pytest.approx(oracle, rel=1e-9)
    assert round(oracle, 2) == worked.LECTURE_BCE


def test_two_class_softmax_is_the_sigmoid_of_the_logit_difference():
    assert worked.two_class_softmax_gap() < 1e-12


def test_mlp_negative_slope_is_the_lectures_leaky_relu_and_only_an_mlp_option():
    assert worked.leaky_relu_gap(0.1) == 0.0
    default = create_model("mlp", 10, (1, 28, 28), hidden=(4,), activation="leaky_relu")
    assert next(m for m in default.modules() if isinstance(m, torch.nn.LeakyReLU)).negative_slope == 0.01
    with pytest.raises(ConfigError, match="lenet does not use"):
        create_model("lenet", 10, (1, 28, 28), negative_slope=0.1)
    with pytest.raises(ConfigError, match="needs --activation leaky_relu"):
        create_model("mlp", 10, (1, 28, 28), negative_slope=0.1)


def test_cli_refuses_negative_slope_for_other_models(capsys):
    assert main(["train", "--model", "lenet", "--negative-slope", "0.1", "--no-save-run", "--steps", "1"]) != 0
    assert "--negative-slope 0.1: lenet does not use it (models that do: mlp)" in capsys.readouterr().err


def test_house_table_squared_errors_and_mean():
    rows = worked.house_table()
    squared = [r["squared_error"] for r in rows["rows"]]
    assert squared == pytest.approx([20.9 ** 2, 41.9 ** 2, 63.0 ** 2])  # 436.81, 1755.61, 3969
    assert rows["mse"] == pytest.approx(sum(squared) / 3)  # 2053.81
    # The lecture's 2,058 is the mean of its own rounded squares, 449 among them (449 is not 20.9^2).
    assert sum(worked.LECTURE_SQUARED) / 3 == pytest.approx(worked.LECTURE_MEAN, abs=0.5)
    assert [round(q) for q in squared[1:]] == list(worked.LECTURE_SQUARED[1:]) and round(squared[0]) != 449


def test_tabular_example_lecture_prints_the_table(capsys):
    assert main(["tabular", "--example", "lecture"]) == 0
    out = capsys.readouterr().out
    assert "436.81" in out and "1755.61" in out and "3969.00" in out and "mean (MSE) 2053.81" in out


def test_worked_lesson_puts_each_number_beside_the_lectures(tmp_path):
    result = run_experiment("worked", Options(out_dir=tmp_path, device="cpu"))
    rows = {r["quantity"]: r for r in result.tables[LECTURE_TABLE]}
    ce = next(r for q, r in rows.items() if q.startswith("cross entropy"))
    assert ce["lecture"] == "0.698" and "0.69897" in ce["mnistlab"] and "1.6094" in ce["mnistlab"]
    assert rows["house table: average squared error"]["lecture"] == "2,058"
    assert rows["house table: average squared error"]["mnistlab"] == "2,053.81"
    assert any("449" in n and "436.81" in n for n in result.notes)


# ----------------------------------------------------------------------------- convolution and pooling


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 2), (3, 1)])
def test_conv2d_by_hand_matches_pytorch(stride, padding):
    g = torch.Generator().manual_seed(stride * 10 + padding)
    x, w = torch.randn(9, 9, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    theirs = F.conv2d(x[None, None], w[None, None], stride=stride, padding=padding)[0, 0]
    assert torch.allclose(convolution.conv2d_by_hand(x, w, stride, padding), theirs)


def test_the_worked_convolution_example():
    x = torch.tensor(convolution.EXAMPLE_INPUT, dtype=torch.float32)
    w = torch.tensor(convolution.EXAMPLE_KERNEL, dtype=torch.float32)
    assert convolution.conv2d_by_hand(x, w).tolist() == [list(map(float, r)) for r in convolution.EXAMPLE_OUTPUT]


def test_output_size_formula_matches_pytorch_over_the_grid():
    checked, wrong = convolution.output_size_grid()
    assert checked > 1000 and wrong == []
    assert convolution.output_size(28, 5) == 24 and convolution.output_size(28, 5, 2) == 28  # valid, same
    assert convolution.output_size(28, 3, 1, 2) == 14 and convolution.output_size(32, 5, 0, 3) == 10


def test_pooling_the_lectures_4x4_example():
    x = torch.tensor(convolution.POOL_INPUT, dtype=torch.float32)
    assert convolution.pool_by_hand(x, how="max").tolist() == [[6, 8], [3, 4]]
    assert F.max_pool2d(x[None, None], 2)[0, 0].tolist() == [[6, 8], [3, 4]]
    assert convolution.pool_by_hand(x, how="avg").tolist() == [[3.25, 5.25], [2.0, 2.0]]


def test_max_pool_commutes_with_relu_and_average_pool_does_not():
    worst_max, worst_avg = convolution.max_pool_commutes_with_relu(trials=20)
    assert worst_max == 0.0 and worst_avg > 0.1


def test_cli_experiment_convolution_quick(tmp_path, capsys):
    args = ["experiment", "convolution", "--quick", "--out-dir", str(tmp_path), "--device", "cpu", "--threads", str(THREADS)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[[6, 8], [3, 4]]" in out and "0 wrong" in out
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    lenet = {r["layer"]: r for r in data["tables"]["trained LeNet"]}
    assert lenet["conv1"]["feature_maps"] == [10, 24, 24] and lenet["conv2"]["feature_maps"] == [20, 8, 8]
    for name in ("convolution_conv1_filters.png", "convolution_conv1_maps.png", "convolution_conv2_maps.png"):
        assert (tmp_path / name).stat().st_size > 1000
    acc = next(r for r in data["tables"][LECTURE_TABLE] if r["quantity"] == "LeNet test accuracy")
    assert float(acc["mnistlab"].rstrip("%")) > 50  # 3 epochs of 2,000 images learn something


# ----------------------------------------------------------------------------- experiment all


def test_run_all_writes_one_page_with_every_lesson_named(tmp_path):
    results = run_all(Options(out_dir=tmp_path, quick=True, device="cpu", threads=THREADS), names=["worked", "softmax"])
    assert [r.name for r in results] == ["worked", "softmax"]
    page = (tmp_path / ALL_PAGE).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    for r in results:
        assert escape(f"{r.name}: {r.title}") in page and (tmp_path / r.name / "report.html").is_file()
    assert ">2,058</td>" in page and ">82%</td>" in page  # the lecture's numbers, in the summary table
    assert "<h3>" in page  # each lesson's own tables sit under its heading


# ----------------------------------------------------------------------------- the defaults are the lecture's


SGD_05 = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "nesterov": False, "batch_size": 64, "schedule": "constant",
          "weight_decay": 0.0, "loss": "ce"}


def _has(cfg, **fields):
    return {k: getattr(cfg, k) for k in fields} == fields


def test_lesson_defaults_are_the_lectures_settings(lesson_configs):
    d = lesson_configs("depth")
    assert [c.hidden for c in d[:3]] == [(420, 120), (520, 320, 240, 120), (650, 530, 420, 350, 290, 200, 150, 80)]
    assert all(_has(c, epochs=9.0, model="mlp", init="default", **SGD_05) for c in d[:3])
    assert depth.LECTURE_ACC == {3: 0.96, 5: 0.97, 9: 0.11}

    (s,) = lesson_configs("softmax")
    assert _has(s, model="softmax", optimizer="sgd", lr=0.001, momentum=0.0, batch_size=100, steps=3000,
                normalize="unit", schedule="constant", weight_decay=0.0)
    assert softmax.LECTURE_REGRESSION_ACC == 0.82

    r = lesson_configs("rnn")
    assert _has(r[0], model="rnn", hidden_size=128, optimizer="adam", lr=0.001, batch_size=128, epochs=10.0,
                schedule="constant", weight_decay=0.0)
    assert rnn.LECTURE_ACC == 0.972

    o = lesson_configs("overfit")
    assert all(_has(c, model="mlp", hidden=(50, 20), optimizer="sgd", lr=0.01, momentum=0.9, batch_size=20, steps=500)
               for c in o)
    assert [c.train_size for c in o[:3]] == [20, 20, 20]
    assert (o[1].weight_decay, o[2].dropout) == (0.001, 0.4)
    assert overfit.LECTURE_VAL == "52-61%"

    (lenet,) = lesson_configs("convolution")
    assert _has(lenet, model="lenet", epochs=9.0, **SGD_05)

    a = {c.activation: c for c in lesson_configs("activations")}
    assert a["leaky_relu"].negative_slope == 0.1


def test_the_depth_lesson_measures_how_long_the_deep_net_sat_on_the_plateau():
    from mnistlab.lessons.experiments.depth import _plateau_epochs

    curve = [{"val_acc": a} for a in (0.1124, 0.1124, 0.1131, 0.1124, 0.1124, 0.19, 0.72, 0.91, 0.9264)]
    assert _plateau_epochs(curve) == 6
    assert _plateau_epochs([{"val_acc": 0.95}]) == 0
    assert _plateau_epochs([{"val_acc": 0.11}] * 3) == 3
    assert _plateau_epochs([{"val_acc": None}]) is None


# ----------------------------------------------------------------------------- depth --lecture: the plateau over seeds


def test_depth_lecture_defaults_are_the_lectures_settings_over_five_seeds(tmp_path):
    runs = depth.seed_configs(Options(out_dir=tmp_path, lecture=True))
    assert [c.seed for c in runs] == [0, 1, 2, 3, 4]
    assert all(_has(c, epochs=9.0, model="mlp", init="default", activation="relu", val_size=0.0, train_size=None,
                    hidden=(650, 530, 420, 350, 290, 200, 150, 80), **SGD_05) for c in runs)
    assert [c.seed for c in depth.seed_configs(Options(out_dir=tmp_path, lecture=True, seeds=(7, 2)))] == [7, 2]


def test_depth_lecture_runs_what_gives_11_percent_when_no_seed_stays_on_the_plateau(monkeypatch, tmp_path):
    monkeypatch.setattr(depth, "left_plateau_epoch", lambda accs, below=0.0: 1)  # every seed "leaves" at epoch 1
    runs = record_lesson_configs("depth", tmp_path / "depth", lecture=True, seeds=(3, 4), quick=True, threads=1)
    assert [(c.seed, c.activation, c.lr) for c in runs] == [(3, "relu", 0.01), (4, "relu", 0.01), (3, "sigmoid", 0.01),
                                                             (3, "relu", 0.001)]
    result = json.loads((tmp_path / "depth" / "results.json").read_text(encoding="utf-8"))
    extra = result["tables"]["what does give the lecture's 11%: the same net, one setting changed"]
    assert [r["variant"] for r in extra] == ["9 layers, sigmoid", "9 layers, lr 0.001"]
    assert any(n.startswith("no seed of 2 stayed on the plateau") for n in result["notes"])


def test_seed_lists_and_ranges_parse_and_bad_ones_are_one_line_errors(tmp_path, capsys):
    assert depth.parse_seeds("0-9") == tuple(range(10))
    assert depth.parse_seeds("0,3,7") == (0, 3, 7)
    assert depth.parse_seeds(" 0-2, 9") == (0, 1, 2, 9)
    assert depth.parse_seeds("5") == (5,)
    for bad, message in (("", "'' is not a seed"), ("a", "'a' is not a seed"), ("5-2", "runs backwards"),
                         ("1,0-2", "seed 1 is given twice"), ("-3", "'-3' is not a seed"), ("1-2-3", "'1-2-3'"),
                         ("0,,1", "'' is not a seed")):
        with pytest.raises(ConfigError, match=message):
            depth.parse_seeds(bad)
    out = str(tmp_path / "x")
    for argv, message in (
        (["depth", "--lecture", "--seeds", "3-1"], "--seeds: the range '3-1' runs backwards (write 1-3)"),
        (["depth", "--seeds", "0-4"], "--seeds runs the 9-layer net once per seed: add --lecture"),
        (["depth", "--lecture", "--seed", "1", "--seeds", "0-4"], "give either --seed S or --seeds LIST, not both"),
        (["softmax", "--lecture"], "--lecture: only `mnistlab experiment depth` has it, not softmax"),
        (["all", "--seeds", "0,1"], "--seeds: only `mnistlab experiment depth` has it, not all"),
    ):
        assert main(["experiment", *argv, "--out-dir", out]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_left_plateau_epoch_and_the_seed_summary_count_the_recorded_accuracies():
    assert depth.left_plateau_epoch([0.1135, 0.1135, 0.1135, 0.2111, 0.5879]) == 4
    assert depth.left_plateau_epoch([0.1135] * 9) is None
    assert depth.left_plateau_epoch([0.20]) == 1  # 20% or more has left
    assert depth.left_plateau_epoch([0.1999, 0.1999]) is None
    rows = [{"seed": 0, "left_plateau_epoch": None, "test_correct_by_epoch": [1135, 1135]},
            {"seed": 1, "left_plateau_epoch": None, "test_correct_by_epoch": [1135, 980]},
            {"seed": 2, "left_plateau_epoch": 2, "test_correct_by_epoch": [1135, 4000]}]
    summary = depth.summarize_seeds(rows, 1135, 10000)
    assert summary["stuck"] == [0, 1] and summary["at_chance"] == [0] and summary["left"] == {2: 2}
    assert summary["chance"] == 0.1135


def test_depth_lecture_prints_a_summary_that_matches_the_per_seed_histories(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["experiment", "depth", "--lecture", "--seeds", "0,1", "--quick", "--epochs", "1", "--threads", "1",
                 "--device", "cpu", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = result["tables"]["the 9-layer net, one row per seed"]
    assert [r["seed"] for r in rows] == [0, 1]
    test_n = 1000  # --quick's test images
    for r in rows:  # the row's own fields agree with its recorded per-epoch accuracies
        assert len(r["test_acc_by_epoch"]) == 1 and r["test_acc"] == r["test_acc_by_epoch"][-1]
        assert r["test_correct_by_epoch"] == [round(a * test_n) for a in r["test_acc_by_epoch"]]
        assert r["left_plateau_epoch"] == next((i + 1 for i, a in enumerate(r["test_acc_by_epoch"]) if a >= 0.2), None)
        assert r["grad_ratio_last_to_first"] == pytest.approx(r["grad_last_layer"] / r["grad_first_layer"])
    stuck = [r["seed"] for r in rows if all(a < 0.2 for a in r["test_acc_by_epoch"])]
    claims = {c["quantity"]: c["mnistlab"] for c in result["tables"][LECTURE_TABLE]}
    plateau = claims["seeds still on the plateau after 1 epochs"]
    assert plateau.startswith(f"{len(stuck)} of 2 ") and plateau in printed
    assert "the lecture's 11% is one outcome of a seed-dependent race" in printed
    assert printed.index("seed 0: ") < printed.index("seed 1: ") < printed.index("lecture vs mnistlab")
    assert "left_plateau_epoch: the first epoch whose test accuracy is 20% or more" in printed
    assert result["figures"] == ["depth_seeds.png"] and (out / "depth_seeds.png").stat().st_size > 10_000
