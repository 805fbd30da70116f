"""Every lesson in --quick mode on the embedded MNIST: its qualitative result, and every promised file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments import Options, Result, get_experiment, list_experiments, run_experiment
from mnistlab.lessons.experiments.common import format_table, format_value
from mnistlab.lessons.experiments.softmax import EXAMPLE, EXPECTED, naive_softmax, stable_softmax
from cores import THREADS

NAMES = ("depth", "activations", "overfit", "losses", "ova", "softmax", "templates", "rnn", "shapes")


def run_quick(name: str, out_dir: Path) -> Result:
    return run_experiment(name, Options(out_dir=out_dir, quick=True, seed=0, device="cpu", threads=THREADS))


def check_files(result: Result, out_dir: Path) -> dict:
    """Every file the result names exists and opens; the report holds each table's first cell."""
    assert result.figures, "an experiment draws at least one figure"
    for name in result.figures:
        assert name.endswith(".png")
        with Image.open(out_dir / name) as image:
            image.verify()
    data = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    assert data["name"] == result.name and data["quick"] is True
    assert set(data["files"]) == set(result.figures) | {"results.json", "report.html"}
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "rough" in page and "data:image/png;base64," in page
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    for rows in result.tables.values():
        first_key = next(iter(rows[0]))
        assert f">{first_key}</th>" in page
    return data


def rows_by(result: Result, table: str, key: str) -> dict[str, dict]:
    return {row[key]: row for row in result.tables[table]}


def test_registry_lists_the_nine_lessons_in_order():
    names = list_experiments()
    assert [n for n in names if n in NAMES] == list(NAMES)  # others may be registered among them
    with pytest.raises(ConfigError, match="choose from depth"):
        get_experiment("nope")


def test_format_table_is_fixed_width():
    lines = format_table([{"name": "a", "test_acc": 0.5, "n": 3}, {"name": "bbb", "test_acc": 0.96, "n": 10}])
    assert len({len(line) for line in lines[:2]}) == 1
    assert "50.00%" in lines[2] and "96.00%" in lines[3]
    assert format_value("x", float("nan")) == "nan" and format_value("x", None) == "-"


def test_softmax_numbers_match_the_lecture_and_stay_finite(tmp_path):
    import torch

    assert [round(float(p), 3) for p in stable_softmax(torch.tensor(EXAMPLE))] == list(EXPECTED)
    big = torch.tensor([1000.0, 999.0, 997.0])
    assert torch.isnan(naive_softmax(big)).all() and torch.isfinite(stable_softmax(big)).all()
    result = run_quick("softmax", tmp_path)
    example = result.tables["worked example: softmax([5, 2, -1, 3])"]
    assert [row["softmax"] for row in example] == list(EXPECTED)
    assert [row["hard_max"] for row in example] == [1.0, 0.0, 0.0, 0.0]
    entropies = [row["entropy_nats"] for row in result.tables["temperature"]]
    assert entropies == sorted(entropies)  # a higher temperature flattens the distribution
    overflow = result.tables["overflow: logits [1000, 999, 997]"]
    assert [row["finite"] for row in overflow] == [False, True, False, True]
    check_files(result, tmp_path)


@pytest.mark.slow
def test_depth_nine_layer_sgd_predicts_one_class_while_fixes_learn(tmp_path):
    result = run_quick("depth", tmp_path)
    rows = rows_by(result, "accuracy by depth and fix", "variant")
    deep = rows["9 layers, SGD"]
    assert deep["top_class_share"] > 0.9 and deep["test_acc"] < 0.2
    best_fix = max(rows[v]["test_acc"] for v in ("9 layers, SGD + Kaiming init", "9 layers, SGD + batch norm", "9 layers, Adam"))
    assert best_fix > 0.6
    assert rows["3 layers, SGD"]["test_acc"] > 0.5
    grads = rows_by(result, "gradient norm per layer at initialisation", "variant")
    # Vanishing gradients: the 9-layer SGD net's first layer gets far less than the Kaiming one's.
    assert grads["9 layers, SGD"]["layer 1"] * 100 < grads["9 layers, SGD + Kaiming init"]["layer 1"]
    check_files(result, tmp_path)


@pytest.mark.slow
def test_activations_derivatives_and_training(tmp_path):
    result = run_quick("activations", tmp_path)
    rows = rows_by(result, "activations", "activation")
    assert rows["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-3)
    assert rows["relu"]["max_derivative"] == pytest.approx(1.0)
    assert rows["relu"]["test_acc"] > rows["sigmoid"]["test_acc"]
    check_files(result, tmp_path)


def test_overfit_remedies_narrow_the_gap(tmp_path):
    result = run_quick("overfit", tmp_path)
    rows = rows_by(result, "overfitting", "variant")
    base = rows["20 images"]
    assert base["train_acc_eval_mode"] >= 0.9 and base["val_acc"] < 0.7
    assert min(rows["20 images + weight decay 0.001"]["acc_gap"], rows["20 images + dropout 0.4"]["acc_gap"]) < base["acc_gap"]
    assert rows["200 images (more data)"]["acc_gap"] < base["acc_gap"]
    check_files(result, tmp_path)


def test_losses_mse_is_flat_after_a_poor_init(tmp_path):
    result = run_quick("losses", tmp_path)
    rows = rows_by(result, "losses", "variant")
    assert rows["softmax regression, ce"]["test_acc"] > 0.7
    assert rows["softmax regression, nll (log_softmax)"]["test_acc"] == pytest.approx(rows["softmax regression, ce"]["test_acc"], abs=0.01)
    poor = rows["softmax regression, mse (one-hot), poor init"]
    assert poor["saturated_share_init"] > 0.5
    assert poor["grad_norm_init"] * 100 < rows["softmax regression, ce, poor init"]["grad_norm_init"]
    assert rows["logistic regression 3 vs 8, bce"]["test_acc"] > 0.85
    check_files(result, tmp_path)


def test_ova_against_softmax(tmp_path):
    result = run_quick("ova", tmp_path)
    rows = result.tables["one-vs-all vs softmax"]
    assert [row["models"] for row in rows] == [1, 1, 10]
    assert rows[0]["prob_sum_mean"] == pytest.approx(1.0)
    assert all(row["test_acc"] > 0.5 for row in rows)
    check_files(result, tmp_path)


def test_templates_look_like_their_digits(tmp_path):
    result = run_quick("templates", tmp_path)
    rows = result.tables["templates"]
    assert len(rows) == 10 and all(row["corr_with_class_mean"] > 0 for row in rows)
    check_files(result, tmp_path)


@pytest.mark.slow
def test_rnn_cells(tmp_path):
    result = run_quick("rnn", tmp_path)
    rows = rows_by(result, "recurrent nets", "model")
    assert set(rows) == {"RNN", "LSTM", "GRU"}
    assert max(row["test_acc"] for row in rows.values()) > 0.3
    check_files(result, tmp_path)
    # Each model's line, in the terminal table and in report.html, puts our accuracy next to the lecture's.
    lines = format_table(result.tables["recurrent nets"])
    header = lines[0].split()
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for line in lines[2:]:
        cells = dict(zip(header, line.split()))
        ours = format_value("test_acc", rows[cells["model"]]["test_acc"])
        assert cells["test_acc"] == ours and (cells["lecture_acc"], cells["lecture_epochs"]) == ("97.20%", "10")
        html_row = next(r for r in page.split("<tr>") if f">{cells['model']}</td>" in r)
        assert f">{ours}</td>" in html_row and ">97.20%</td>" in html_row
    assert any("the lecture: 97.2%" in note for note in result.notes)


def test_shapes_chain_and_explained_head(tmp_path):
    result = run_quick("shapes", tmp_path)
    assert result.tables["shape chain"] == [{"chain": "1x28x28 -> 10x24x24 -> 10x12x12 -> 20x8x8 -> 20x4x4 = 320"}]
    shapes = [row["output_shape"] for row in result.tables["LeNet layer by layer"]]
    assert shapes == ["10x24x24", "10x12x12", "10x12x12", "20x8x8", "20x4x4", "20x4x4", "10"]
    raw, explained = (row["message"] for row in result.tables["a Linear(100, 10) head"])
    assert "mat1 and mat2 shapes cannot be multiplied (64x320 and 100x10)" in raw
    assert "receives 320 features" in explained and "Linear(320, 10)" in explained
    check_files(result, tmp_path)


def test_cli_experiment_softmax(tmp_path, capsys):
    assert main(["experiment", "softmax", "--quick", "--out-dir", str(tmp_path), "--device", "cpu", "--threads", str(THREADS)]) == 0
    out = capsys.readouterr().out
    assert "rough" in out and "0.842" in out and "report.html" in out
    assert (tmp_path / "results.json").is_file() and (tmp_path / "report.html").is_file()
    assert (tmp_path / "softmax_temperature.png").is_file()
