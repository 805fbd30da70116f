"""`datasets export`: every layout reads back identical, and training from an export matches the original."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistlab import cli
from mnistlab.data.custom import load_custom
from mnistlab.data.export import IDX_NAMES, class_folder_names, export_dataset, write_folder
from mnistlab.data.idx import read_images, read_labels
from mnistlab.data.raw import RawData, load_raw
from mnistlab.errors import DataError

KEYS = ("train_x", "train_y", "test_x", "test_y")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def synthetic() -> RawData:
    return load_raw("synthetic")


def read_back(fmt: str, out) -> dict[str, np.ndarray]:
    if fmt == "idx":
        return {k: (read_labels if k.endswith("_y") else read_images)(out / IDX_NAMES[k]) for k in KEYS}
    raw = load_custom(f"{fmt}:{out}")
    assert raw.class_names == tuple("0123456789")
    return {k: getattr(raw, k) for k in KEYS}


@pytest.mark.parametrize("fmt", ["folder", "csv", "idx"])
def test_export_round_trip_is_exact(tmp_path, synthetic, fmt, capsys):
    out = tmp_path / fmt
    assert cli.main(["datasets", "export", "synthetic", str(out), "--format", fmt]) == 0
    assert f"wrote synthetic as {fmt} to {out}" in capsys.readouterr().out
    back = read_back(fmt, out)
    for k in KEYS:
        assert np.array_equal(back[k], getattr(synthetic, k)), k
    if fmt == "folder":
        assert sorted(p.name for p in (out / "train").iterdir()) == list("0123456789")
        assert len(list((out / "test").rglob("*.png"))) == len(synthetic.test_y)
    if fmt == "csv":
        assert (out / "train.csv").read_text().split("\n", 1)[0] == "label," + ",".join(f"pixel{j}" for j in range(784))


def test_training_from_an_exported_folder_matches_the_original(tmp_path):
    export_dataset("synthetic", "folder", tmp_path / "png")
    common = ["--val-size", "256", "--epochs", "1", "--model", "softmax", "--no-figures", "-q",
              "--out-dir", str(tmp_path / "runs")]
    assert cli.main(["train", "--dataset", "synthetic", "--name", "idx", *common]) == 0
    assert cli.main(["train", "--dataset", f"folder:{tmp_path / 'png'}", "--name", "png", *common]) == 0
    a, b = (json.loads((tmp_path / "runs" / n / "evaluation.json").read_text()) for n in ("idx", "png"))
    assert a["accuracy"] == b["accuracy"] > 0.5
    assert a["nll"] == pytest.approx(b["nll"], rel=1e-6)


def test_colour_folder_export_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 28, 28, 3), dtype=np.uint8)
    x[:, :3] = 0  # a black frame: already MNIST-style, so read back as it is
    x[:, -3:] = 0
    x[:, :, :3] = 0
    x[:, :, -3:] = 0
    y = np.arange(12) % 2
    raw = RawData(x[:8], y[:8], x[8:], y[8:], ("red", "blue"), "colour")
    out = tmp_path / "colour"
    write_folder(raw, out)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0-red", "1-blue"]  # keeps label order
    back = load_custom(f"folder:{out}")
    assert back.class_names == ("0-red", "1-blue")
    assert np.array_equal(back.train_x, raw.train_x) and np.array_equal(back.test_y, raw.test_y)


def test_class_folder_names():
    assert class_folder_names(tuple("0123456789")) == list("0123456789")
    assert class_folder_names(("T-shirt/top", "Trouser"))[0] == "0-T-shirt_top"
    assert class_folder_names(tuple("Aa"))[1] == "1-a"  # distinct only by case


def test_export_refuses_a_non_empty_folder_and_bad_requests(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        export_dataset("synthetic", "csv", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert cli.main(["datasets", "export", "synthetic"]) == 2
    assert "needs NAME and DIR" in capsys.readouterr().err
    assert cli.main(["datasets", "export", "no-such-set", str(tmp_path / "x")]) != 0
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    colour = RawData(np.zeros((2, 4, 4, 3), np.uint8), np.arange(2), np.zeros((2, 4, 4, 3), np.uint8),
                     np.arange(2), ("a", "b"), "colour")
    from mnistlab.data.export import write_csv, write_idx_files

    for write in (write_csv, write_idx_files):
        with pytest.raises(DataError, match="grey images"):
            write(colour, tmp_path / "c")
