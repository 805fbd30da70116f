"""Validation and test splits that fit the data: a fraction or a count, 10% by default (bounded),
a warning for splits that will train poorly, and the "Digit Recognizer" CSV scenario end to end."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from mnistlab import cli
from mnistlab.config import Config
from mnistlab.data.custom import load_csv, load_folder
from mnistlab.data.loader import load_dataset
from mnistlab.data.splits import SplitWarning, holdout_size, split_train_val, stratified_split
from mnistlab.errors import ConfigError


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _labels(n: int, k: int = 10) -> np.ndarray:
    return np.arange(n) % k


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size, pool, cap, want", [
    (None, 60_000, 5000, 5000),  # MNIST: 55,000 / 5,000 as before
    (None, 7_200, 5000, 720),  # the 8,000-row CSV after its test split
    (None, 2_048, 5000, 205),  # --dataset synthetic
    (None, 200_000, 10_000, 10_000),  # a big single-tree folder: the test cap
    (None, 5, 5000, 1),  # tiny pools still get one
    (None, 1, 5000, 0),  # nothing to spare
    (0, 60_000, 5000, 0),
    (0.25, 1_000, 5000, 250),  # fractions are not capped
    (0.5, 60_000, 5000, 30_000),
    (0.01, 20, 5000, 1),  # a fraction asks for at least one
    (300, 1_000, 5000, 300),
    (7000, 60_000, 5000, 7000),  # counts are not capped either
])
def test_holdout_size(size, pool, cap, want):
    assert holdout_size(size, pool, cap, "--val-size") == want


def test_holdout_that_leaves_nothing_names_the_pool():
    with pytest.raises(ConfigError, match=r"^--val-size 2048 holds out 2,048 of the 2,048 images in the pool, "
                                          r"leaving none to train on"):
        holdout_size(2048, 2048, 5000, "--val-size")
    with pytest.raises(ConfigError, match=r"^--test-size 1000 holds out 1,000 of the 1,000 images"):
        holdout_size(1000, 1000, 10_000, "--test-size")
    assert holdout_size(0.999, 1000, 10_000, "--test-size") == 999  # one left is enough to refuse nothing


def test_mnist_keeps_todays_split(mnist_raw):
    """The default on MNIST's 60,000 is exactly the 5,000-image split it always was."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, val = split_train_val(mnist_raw.train_y, None, None, seed=0)
    old_train, old_val = stratified_split(mnist_raw.train_y, 5000, seed=0)
    assert len(train) == 55_000 and np.array_equal(train, old_train) and np.array_equal(val, old_val)


def test_train_size_beyond_what_is_left_is_an_error(mnist_raw):
    with pytest.raises(ConfigError, match=r"^--train-size 100,000 is more than the 55,000 images there are to train on "
                                          r"\(the training pool of 60,000 minus 5,000 held out for validation\)$"):
        split_train_val(mnist_raw.train_y, None, 100_000, seed=0)
    with pytest.raises(ConfigError, match=r"--train-size 60,000 is more than the 59,999 .*pool of 60,000 minus 1 held"):
        split_train_val(mnist_raw.train_y, 1, 60_000, seed=0)
    train, val = split_train_val(mnist_raw.train_y, 0, 60_000, seed=0)
    assert len(train) == 60_000 and len(val) == 0
    train, _ = split_train_val(mnist_raw.train_y, None, 55_000, seed=0)
    assert len(train) == 55_000


def test_one_warning_for_a_split_that_trains_poorly():
    with pytest.warns(SplitWarning, match=r"^only 810 images left to train on \(a pool of 900, 90 held out"):
        train, val = split_train_val(_labels(900), None, None, seed=0)
    assert (len(train), len(val)) == (810, 90)
    with pytest.warns(SplitWarning) as record:
        split_train_val(_labels(3000), 0.6, None, seed=0)
    assert len(record) == 1  # one line, even where both apply
    assert str(record[0].message).startswith("validation (1,800 images) is larger than training (1,200)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_train_val(_labels(2048), None, None, seed=0)  # synthetic: fine
        split_train_val(_labels(60_000), 1000, 100, seed=0)  # --train-size chose a small set on purpose
        split_train_val(_labels(900), None, None, seed=0, warn=False)


# ----------------------------------------------------------------------------- config and CLI


def test_config_takes_a_fraction_or_a_count():
    assert Config().val_size is None and Config().test_size is None
    assert Config(val_size=0.2).val_size == 0.2
    cfg = Config.from_dict({"val_size": 5000.0, "test_size": 300})
    assert cfg.val_size == 5000 and isinstance(cfg.val_size, int) and cfg.test_size == 300
    assert json.loads(json.dumps(cfg.to_dict()))["val_size"] == 5000  # config.json says 5000, not 5000.0
    assert Config.from_dict(cfg.to_dict()).val_size == 5000
    for bad in (1.5, -1, -0.5):
        with pytest.raises(ConfigError, match="--val-size is a fraction"):
            Config(val_size=bad)
    with pytest.raises(ConfigError, match="--test-size is a fraction"):
        Config(test_size=0)
    assert Config(target_acc=0.9).val_size is None  # the default has a validation split
    with pytest.raises(ConfigError, match="--target-acc watches validation accuracy"):
        Config(target_acc=0.9, val_size=0)


def test_synthetic_trains_with_its_defaults(tmp_path, capsys):
    """2,048 training images: 5,000 for validation used to refuse; now 1,843 / 205, without a warning."""
    bundle = load_dataset("synthetic")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1843, 205, 512)
    assert cli.main(["train", "--dataset", "synthetic", "--steps", "3", "--no-save-run", "-q"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_cli_prints_a_split_warning_as_one_line(capsys):
    code = cli.main(["train", "--dataset", "synthetic", "--val-size", "0.6", "--model", "softmax", "--steps", "2",
                     "--no-save-run", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and err == ["mnistlab: warning: validation (1,229 images) is larger than training (819) in a pool "
                                 "of 2,048: lower --val-size (e.g. 0.1)"]


def test_train_size_beyond_the_pool_is_one_line_and_exit_2(capsys):
    code = cli.main(["train", "--dataset", "synthetic", "--train-size", "100000", "--no-save-run", "-q"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("mnistlab: error: --train-size 100,000 is more than the 1,843 images "
                                               "there are to train on (the training pool of 2,048 minus 205 held out "
                                               "for validation)")


def test_numpy_engine_uses_the_same_split():
    from mnistlab.lessons.scratch.train import _prepare

    data = _prepare(Config(engine="numpy", model="softmax", dataset="synthetic", save_run=False))
    assert (len(data["train"][1]), len(data["val"][1])) == (1843, 205)
    with pytest.raises(ConfigError, match="--train-size 5,000 is more than the 1,843"):
        _prepare(Config(engine="numpy", model="softmax", dataset="synthetic", train_size=5000, save_run=False))


# ----------------------------------------------------------------------------- folder: and csv:


def test_single_tree_folder_holds_out_ten_percent(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 40, (28, 28), dtype=np.uint8)).save(tmp_path / "d" / c / f"{i}.png")
    raw = load_folder(tmp_path / "d")
    assert (len(raw.train_y), len(raw.test_y)) == (36, 4) and np.bincount(raw.test_y).tolist() == [2, 2]
    raw = load_folder(tmp_path / "d", test_size=10)  # a count
    assert (len(raw.train_y), len(raw.test_y)) == (30, 10)
    with pytest.raises(ConfigError, match=r"--test-size 40 holds out 40 of the 40 images"):
        load_folder(tmp_path / "d", test_size=40)


def _write_csv(path, x: np.ndarray, y: np.ndarray | None) -> None:
    """Rows in the Kaggle "Digit Recognizer" layout: label,pixel0..pixel783 (no label column for test.csv)."""
    header = ["label"] * (y is not None) + [f"pixel{i}" for i in range(x[0].size)]
    flat = x.reshape(len(x), -1).astype(np.int64)  # (N, 28, 28) -> (N, 784)
    np.savetxt(path, flat if y is None else np.column_stack([y, flat]), fmt="%d", delimiter=",",
               header=",".join(header), comments="")


@pytest.fixture(scope="module")
def digit_recognizer(mnist_raw, tmp_path_factory):
    """train.csv: 8,000 labelled MNIST rows; test.csv: 2,000 other rows, unlabelled; their labels; a 2,000-row train."""
    d = tmp_path_factory.mktemp("digit-recognizer")
    order = np.random.default_rng(123).permutation(len(mnist_raw.train_y))
    train, test = order[:8000], order[8000:10_000]
    _write_csv(d / "train.csv", mnist_raw.train_x[train], mnist_raw.train_y[train])
    _write_csv(d / "test.csv", mnist_raw.train_x[test], None)
    _write_csv(d / "small.csv", mnist_raw.train_x[train[:2000]], mnist_raw.train_y[train[:2000]])
    return d, mnist_raw.train_y[test]


def test_digit_recognizer_csv_trains_on_most_of_its_rows(digit_recognizer):
    """8,000 rows: 800 test, 720 validation, 6,480 to train on (the defaults trained on 1,400)."""
    d, _ = digit_recognizer
    bundle = load_dataset(f"csv:{d / 'train.csv'}")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6480, 720, 800)
    raw = load_csv(d / "train.csv")
    assert np.bincount(raw.test_y).min() >= 60  # stratified: every digit is tested


def test_a_small_csv_trains(digit_recognizer, tmp_path):
    """2,000 rows (below ~6,250 the old 5,000-image validation refused): 1,620 / 180 / 200."""
    d, _ = digit_recognizer
    bundle = load_dataset(f"csv:{d / 'small.csv'}")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1620, 180, 200)
    assert cli.main(["train", "--dataset", f"csv:{d / 'small.csv'}", "--steps", "3", "--no-save-run", "-q"]) == 0


@pytest.mark.slow
def test_digit_recognizer_submission_scores_95_percent(digit_recognizer, tmp_path):
    """The new user's path with defaults only: `train --dataset csv:train.csv`, then `predict --csv`."""
    d, truth = digit_recognizer
    runs = tmp_path / "runs"
    assert cli.main(["train", "--dataset", f"csv:{d / 'train.csv'}", "--out-dir", str(runs), "--name", "dr",
                     "--no-figures", "-q"]) == 0
    out = tmp_path / "sub.csv"
    assert cli.main(["predict", str(runs / "dr"), "--csv", str(d / "test.csv"), "--out", str(out)]) == 0
    table = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.int64)
    assert table[:, 0].tolist() == list(range(1, 2001))
    assert np.mean(table[:, 1] == truth) >= 0.95
