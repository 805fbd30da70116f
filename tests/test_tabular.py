"""`mnistlab tabular`: regression against closed-form least squares, classification of the shipped
example, weights in original units, bad CSVs as one-line errors, and the CLI with its plot."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.errors import DataError
from mnistlab.lessons.tabular import EXAMPLES, EXAMPLES_DIR, fit_table, read_table, run_tabular


def _lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.c_[x, np.ones(len(x))]
    return np.linalg.lstsq(a, y, rcond=None)[0]


def test_examples_exist_and_parse():
    for name, (file, target, task) in EXAMPLES.items():
        table = read_table(EXAMPLES_DIR / file, target, task)
        # The lecture's table of given predictions has its three rows; the fitting examples 10-20.
        assert len(table.y) == 3 if name == "lecture" else 10 <= len(table.y) <= 20, name


def test_regression_matches_least_squares_on_the_example():
    result = run_tabular(EXAMPLES_DIR / "houses_price.csv", "price", "regression", test_size=0.25, seed=0)
    table, fit = result["table"], result["fit"]
    train = result["train_idx"]
    expected = _lstsq(table.x[train], table.y[train])
    np.testing.assert_allclose([*fit.coef, float(fit.intercept)], expected, rtol=1e-3)
    assert result["test"]["r2"] > 0.99


def test_regression_matches_least_squares_with_correlated_features_in_odd_units():
    rng = np.random.default_rng(0)
    area = rng.uniform(30, 250, 200)
    rooms = np.round(area / 30 + rng.normal(0, 0.7, 200))  # correlated with area
    year = rng.uniform(1900, 2020, 200)
    x = np.c_[area, rooms, year]
    y = 2.5 * area + 12 * rooms + 0.8 * (year - 1900) + 4000 + rng.normal(0, 20, 200)
    fit = fit_table(x, y, "regression", features=["area", "rooms", "year"], target="price")
    np.testing.assert_allclose([*fit.coef, float(fit.intercept)], _lstsq(x, y), rtol=1e-3)
    assert fit.losses[-1] < fit.losses[0]


def test_classification_separates_the_example():
    table = read_table(EXAMPLES_DIR / "houses_quality.csv", "quality", "classification")
    assert table.classes == ("bad", "good")
    fit = fit_table(table.x, table.y, "classification", table.classes, table.features, "quality")
    assert (fit.predict(table.x) == table.y).all()
    assert fit.coef.shape == (2,) and (fit.coef > 0).all()  # more area, more bathrooms: better


def test_softmax_for_three_classes_in_original_units():
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]])
    y = rng.integers(0, 3, 150)
    x = centers[y] + rng.normal(0, 100, (150, 2))
    fit = fit_table(x, y, "classification", ("a", "b", "c"), ["u", "v"], "k")
    assert fit.coef.shape == (2, 3) and len(fit.equations()) == 3
    assert (fit.predict(x) == y).mean() > 0.97


@pytest.mark.parametrize("content,match", [
    ("", "empty CSV"),
    ("# only a comment\n", "empty CSV"),
    ("area,price\n", "no data rows"),
    ("area,cost\n1,2\n", "no column 'price'"),
    ("area,price\n50,100\n60,abc\n", r"row 3, column 'price': 'abc' is not a number"),
    ("area,price\n50,100\n,120\n", "row 3, column 'area'"),
    ("area,price\n50,100\n60\n", "row 3: expected 2 cells, got 1"),
    ("area,price\n50,100\nnan,3\n", "row 3, column 'area': 'nan' is not a finite number"),
])
def test_bad_csv_is_one_line_error_naming_file_and_row(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        read_table(path, "price", "regression")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cli_bad_csv_prints_one_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("area,price\n50,x\n")
    assert main(["tabular", "--csv", str(path), "--target", "price", "--task", "regression"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 2" in err and "bad.csv" in err


@pytest.mark.parametrize("example,expected", [("price", "price = 3."), ("quality", "logit P(quality=good)")])
def test_cli_examples_print_weights_and_plot(tmp_path, capsys, example, expected):
    plot = tmp_path / f"{example}.png"
    assert main(["tabular", "--example", example, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert expected in out and "test" in out
    assert plot.stat().st_size > 1000


# ----------------------------------------------------------------------------- degenerate tables (issue 28)


@pytest.mark.parametrize("content,task,test_size,message", [
    ("area,price\n50,100\n", "regression", "0", "one data row cannot be fitted meaningfully: regression needs at least 2 rows"),
    ("area,price\n50,100\n", "regression", "0.25", "one data row cannot be fitted meaningfully"),
    ("area,q\n50,good\n", "classification", "0", "one data row cannot be fitted meaningfully: classification needs at least 2"),
    ("area,price\n50,100\n60,100\n70,100\n", "regression", "0",
     "column 'price' holds the same value (100) in all 3 rows: there is nothing to fit, and R^2 is undefined"),
    ("area,price\n50,100\n60,120\n", "regression", "0.25",
     "2 data rows are too few for --test-size 0.25: 1 test row would leave 1 to fit, and a fit needs 2"),
    ("area,q\n50,a\n60,a\n70,a\n", "classification", "0", "column 'q' holds one class only ('a')"),
    ("area,q\n50,a\n60,b\n70,c\n80,c\n", "classification", "0.5",
     "class 'a' of column 'q' has 1 row, and --test-size 0.5 puts it in the test rows: the fit would never see it"),
])
def test_degenerate_tables_are_one_line_errors_not_nan(tmp_path, capsys, content, task, test_size, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    target = "price" if task == "regression" else "q"
    assert main(["tabular", "--csv", str(path), "--target", target, "--task", task, "--test-size", test_size]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"mnistlab: error: {path}: ") and message in err, err
    assert "\n" not in err and "nan" not in err.lower() and captured.out == ""


def test_r2_of_rows_without_spread_is_undefined_not_nan(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("area,price\n50,100\n60,120\n70,100\n80,100\n90,100\n")  # the test rows drawn hold 100 only
    result = run_tabular(path, "price", "regression", test_size=0.4, seed=0)
    test_y = result["table"].y[result["test_idx"]]
    assert len(test_y) == 2 and np.all(test_y == 100)  # (the seed-0 split this test relies on)
    assert result["test"]["r2"] is None and result["test"]["r2_undefined"] == "all 2 rows are 100"
    assert result["train"]["r2"] is not None and np.isfinite(result["train"]["r2"])
    assert main(["tabular", "--csv", str(path), "--target", "price", "--task", "regression", "--test-size", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "test   MSE 44.44  R^2 undefined (all 2 rows are 100: no spread to explain)" in out
    assert "nan" not in out.lower()


def test_as_many_parameters_as_training_rows_is_said_beside_the_perfect_r2(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("area,price\n50,100\n60,120\n")
    assert main(["tabular", "--csv", str(path), "--target", "price", "--task", "regression", "--test-size", "0"]) == 0
    out = capsys.readouterr().out
    assert "R^2 1.0000" in out
    assert "note: 2 training rows for 2 parameters (a weight per feature and the intercept)" in out
