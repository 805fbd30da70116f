"""folder: and csv: data sets: real training on drawn shapes, the decode cache, CSV predict, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab import cli
from mnistlab.data import custom
from mnistlab.data.custom import load_csv, load_custom, load_folder, read_pixel_csv
from mnistlab.data.images import prepare_image
from mnistlab.data.loader import load_dataset
from mnistlab.errors import DataError, MnistlabWarning

SHAPES = ("circle", "cross", "square")
SIZES = ((40, 40), (64, 48), (90, 90), (33, 57))
SUFFIXES = ("png", "jpg", "bmp", "gif")
FAST = ["--model", "softmax", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--no-figures", "-q"]


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Decoded images are cached under tmp_path, never in the real user cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def draw(kind: str, size: tuple[int, int], rng: np.random.Generator, colour: bool) -> Image.Image:
    """One dark (or coloured) outline shape on light paper, jittered in place and size."""
    w, h = size
    im = Image.new("RGB" if colour else "L", size, (255, 255, 255) if colour else 255)
    d = ImageDraw.Draw(im)
    s = rng.uniform(0.5, 0.8) * min(w, h)
    cx, cy = w / 2 + rng.uniform(-4, 4), h / 2 + rng.uniform(-4, 4)
    box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
    ink = tuple(int(v) for v in rng.integers(0, 180, 3)) if colour else 0
    width = max(2, int(s / 8))
    if kind == "circle":
        d.ellipse(box, outline=ink, width=width)
    elif kind == "square":
        d.rectangle(box, outline=ink, width=width)
    else:
        d.line(box, fill=ink, width=width)
        d.line((box[0], box[3], box[2], box[1]), fill=ink, width=width)
    return im


def make_folder(root, n: int = 24, colour: bool = False, split: bool = False, seed: int = 0):
    """root/<shape>/* (or root/train|test/<shape>/*): n images per class, mixed sizes and formats."""
    rng = np.random.default_rng(seed)
    for part in ("train", "test") if split else ("",):
        for kind in SHAPES:
            folder = root / part / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n if part != "test" else n // 2):
                draw(kind, SIZES[i % 4], rng, colour).save(folder / f"{kind}{i:03d}.{SUFFIXES[i % 4]}")
    return root


def accuracy(run_dir) -> float:
    return json.loads((run_dir / "evaluation.json").read_text())["accuracy"]


# ----------------------------------------------------------------------------- folders


def test_grey_folder_trains_from_the_cli(tmp_path, capsys):
    data = make_folder(tmp_path / "shapes")
    code = cli.main(["train", "--dataset", f"folder:{data}", "--val-size", "0", "--epochs", "8", "--test-size", "0.25",
                     "--out-dir", str(tmp_path / "runs"), "--name", "grey", *FAST])
    assert code == 0
    config = json.loads((tmp_path / "runs" / "grey" / "config.json").read_text())
    assert config["dataset"] == f"folder:{data}"
    assert accuracy(tmp_path / "runs" / "grey") >= 0.8  # chance is 1/3
    # evaluate rebuilds the same split from the run's settings and agrees with the training run
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "runs" / "grey"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(accuracy(tmp_path / "runs" / "grey"), abs=1e-6)


def test_colour_train_test_folders_train_as_three_channels(tmp_path):
    from mnistlab.config import Config
    from mnistlab.runs.session import TrainSession

    data = make_folder(tmp_path / "colour", n=24, colour=True, split=True)
    cfg = Config(dataset=f"folder:{data}", val_size=0, epochs=8, model="softmax", optimizer="adam", lr=0.01,
                 batch_size=16, save_run=False, figures=False)
    session = TrainSession.start(cfg)
    assert session.data.in_shape == (3, 28, 28)
    assert session.data.class_names == SHAPES
    assert len(session.data.train) == 72 and len(session.data.test) == 36
    assert session.fit().test.acc >= 0.8


def test_channels_and_image_size(tmp_path):
    grey = make_folder(tmp_path / "grey", n=4)
    colour = make_folder(tmp_path / "colour", n=4, colour=True)
    assert load_folder(grey, image_size=16).train_x.shape[1:] == (16, 16)
    assert load_folder(grey, channels=3).train_x.shape[1:] == (28, 28, 3)
    assert load_folder(colour).train_x.shape[1:] == (28, 28, 3)  # auto: colour images -> 3 channels
    assert load_folder(colour, channels=1).train_x.shape[1:] == (28, 28)
    bundle = load_dataset(f"folder:{colour}", val_size=0, image_size=20, channels=3)
    assert bundle.in_shape == (3, 20, 20)


def test_images_are_prepared_like_predict_unless_already_mnist_style(tmp_path):
    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    ready = np.zeros((28, 28), np.uint8)
    ready[3:9, 2:12] = 255  # off-centre, black background: taken as it is, not re-centred
    Image.fromarray(ready).save(root / "a" / "0.png")
    paper = np.full((50, 30), 255, np.uint8)
    paper[10:40, 12:16] = 0  # dark ink on white paper: inverted, cropped and centred
    Image.fromarray(paper).save(root / "b" / "0.png")
    Image.fromarray(255 - ready).save(root / "b" / "1.png")  # 28x28 but white paper: prepared
    raw = load_folder(root, test_size=0.5)
    x = np.concatenate([raw.train_x, raw.test_x])
    assert any(np.array_equal(img, ready) for img in x)
    assert any(np.array_equal(img, prepare_image(root / "b" / "0.png")) for img in x)
    assert any(np.array_equal(img, prepare_image(root / "b" / "1.png")) for img in x)


def test_single_tree_split_is_stratified_and_seeded(tmp_path):
    data = make_folder(tmp_path / "d", n=8)
    a = load_folder(data, test_size=0.25, seed=1)
    assert np.bincount(a.test_y).tolist() == [2, 2, 2] and len(a.train_y) == 18
    b = load_folder(data, test_size=0.25, seed=1)
    c = load_folder(data, test_size=0.25, seed=2)
    assert np.array_equal(a.test_x, b.test_x)
    assert not np.array_equal(a.test_x, c.test_x)


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "d", n=6)
    first = load_folder(data)

    def broken(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(custom, "_decode_image", broken)
    second = load_folder(data)
    assert np.array_equal(first.train_x, second.train_x) and np.array_equal(first.test_y, second.test_y)
    # A changed file (size or modification time) is decoded again.
    victim = data / "circle" / "circle000.png"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_folder(data)


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    data = make_folder(tmp_path / "d", n=6)
    (data / "cross" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "square" / "empty.jpg").write_bytes(b"")
    (data / "square" / "notes.txt").write_text("not an image: ignored")
    with pytest.warns(MnistlabWarning, match=r"skipped 2 unreadable images \(first: "):
        raw = load_folder(data)
    assert len(raw.train_y) + len(raw.test_y) == 18
    assert len(raw.notes) == 2 and str(data / "cross" / "broken.png") in raw.notes[0]
    with pytest.warns(MnistlabWarning, match="skipped 2"):
        assert load_folder(data).notes == raw.notes  # the cache remembers what was skipped


@pytest.mark.parametrize("case", ["empty class", "one class", "no classes", "unknown test class", "all unreadable"])
def test_bad_folders_name_the_folder(tmp_path, case):
    root = make_folder(tmp_path / "d", n=2, split=case == "unknown test class")
    if case == "empty class":
        (root / "empty").mkdir()
        where = root / "empty"
    elif case == "one class":
        for kind in SHAPES[1:]:
            for f in (root / kind).iterdir():
                f.unlink()
            (root / kind).rmdir()
        where = root
    elif case == "no classes":
        root = tmp_path / "flat"
        root.mkdir()
        Image.new("L", (9, 9)).save(root / "x.png")
        where = root
    elif case == "unknown test class":
        (root / "test" / "star").mkdir()
        Image.new("L", (9, 9)).save(root / "test" / "star" / "x.png")
        where = root / "test" / "star"
    else:
        for f in (root / "cross").iterdir():
            f.write_bytes(b"garbage")
        where = root / "cross"
    with pytest.raises(DataError, match=str(where)):
        load_custom(f"folder:{root}")


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=2)
    (root / "empty").mkdir()
    code = cli.main(["train", "--dataset", f"folder:{root}", "--out-dir", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and f"{root / 'empty'}: empty class folder" in err


# ----------------------------------------------------------------------------- CSV


def shapes_csv(path, n: int, seed: int, labelled: bool = True) -> np.ndarray:
    """Drawn shapes as MNIST-style rows label,pixel0..pixel783; returns the labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.stack([prepare_image(draw(SHAPES[c], SIZES[i % 4], rng, False)) for i, c in enumerate(y)])
    rows = x.reshape(n, -1)  # (N, 28, 28) -> (N, 784)
    header = ("label," if labelled else "") + ",".join(f"pixel{j}" for j in range(784))
    lines = [(f"{c}," if labelled else "") + ",".join(map(str, r)) for c, r in zip(y, rows.tolist())]
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return y


def test_csv_trains_and_predicts_a_submission(tmp_path, capsys):
    data = tmp_path / "csv"
    data.mkdir()
    shapes_csv(data / "train.csv", 90, seed=0)
    truth = shapes_csv(data / "test.csv", 30, seed=1, labelled=False)  # the Digit Recognizer layout
    raw = load_csv(data, test_size=0.2)
    assert raw.class_names == ("0", "1", "2") and len(raw.test_y) == 18 and "no label column" in raw.notes[0]
    runs = tmp_path / "runs"
    assert cli.main(["train", "--dataset", f"csv:{data}", "--val-size", "0", "--epochs", "8",
                     "--out-dir", str(runs), "--name", "csv", *FAST]) == 0
    assert accuracy(runs / "csv") >= 0.8
    out = tmp_path / "submission.csv"
    assert cli.main(["predict", str(runs / "csv"), "--csv", str(data / "test.csv"), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 31
    ids, labels = zip(*(map(int, line.split(",")) for line in lines[1:]))
    assert list(ids) == list(range(1, 31))
    assert np.mean(np.array(labels) == truth) >= 0.8


def test_predict_needs_images_or_csv(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path)]) == 2
    assert "IMAGE files or --csv" in capsys.readouterr().err


def test_csv_without_header_and_single_file_split(tmp_path):
    rows = np.random.default_rng(0).integers(0, 256, size=(20, 16))
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(f"{i % 2}," + ",".join(map(str, r)) for i, r in enumerate(rows.tolist())) + "\n")
    raw = load_custom(f"csv:{path}", test_size=0.25)
    assert raw.train_x.shape == (15, 4, 4) and raw.test_x.shape == (5, 4, 4)
    x, y = read_pixel_csv(path)
    assert np.array_equal(x.reshape(20, 16), rows) and y.tolist() == [i % 2 for i in range(20)]


HEADER = "label," + ",".join(f"pixel{j}" for j in range(4))


@pytest.mark.parametrize(
    "text, message",
    [
        ("label,pixel0,pixel1,pixel2\n1,0,0,0\n", "header column 4 is 'pixel2'|3 pixel columns is not a square"),
        (HEADER + ",pixel4\n1,0,0,0,0,0\n", "5 pixel columns is not a square number"),
        ("label,pixel0,pixel1,pixelX,pixel3\n", "header column 4 is 'pixelX', expected 'pixel2'"),
        (HEADER + "\n1,0,0,0,0\n0,1,2,3\n", r"row 2 \(line 3\) has 4 values, expected 5"),
        (HEADER + "\n1,0,0,0,0\n0,1,2,3,4,5\n", r"row 2 \(line 3\) has 6 values, expected 5"),
        (HEADER + "\n1,0,0,0,0\n0,1,x,3,4\n", r"row 2 \(line 3\): pixel1 = 'x' is not an integer"),
        (HEADER + "\n1,0,0,0,0\n0,1,2,300,4\n", r"row 2 \(line 3\): pixel2 = 300 is outside 0..255"),
        (HEADER + "\n1,0,0,0,0\n0,-1,2,3,4\n", r"row 2 \(line 3\): pixel0 = -1 is outside 0..255"),
        (HEADER + "\n1,0,0,0,0\n2.5,1,2,3,4\n", r"row 2 \(line 3\): label '2.5' is not an integer"),
        (HEADER + "\n1,0,0,0,0\ncat,1,2,3,4\n", r"row 2 \(line 3\): label 'cat' is not an integer"),
        (HEADER + "\n", "no data rows"),
        ("", "empty file"),
        (HEADER + "\n1,0,0,0,0\n1,0,0,0,0\n", "only one class"),
        ("pixel0,pixel1,pixel2,pixel3\n0,0,0,0\n", "no label column"),
    ],
)
def test_bad_csv_names_file_and_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_custom(f"csv:{path}")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_bad_rows_are_counted_and_marked_and_cached(tmp_path):
    from mnistlab.data.custom import read_pixel_rows

    path = tmp_path / "rows.csv"
    path.write_text(HEADER + "\n1,0,0,0,0\n0,1,2,3\n\n1,4,nan,0,0\n0,9,9,9,9\n1,5,5,5,300\n")
    with pytest.raises(DataError) as info:
        load_custom(f"csv:{path}")
    assert str(info.value) == (f"{path}: 3 of 5 rows cannot be read: rows 2, 3 and 5 "
                               "(first: row 2 (line 3) has 4 values, expected 5 (label + pixels))")
    for _ in range(2):  # parsed, then read back from the cache
        rows = read_pixel_rows(path)
        assert rows.bad_rows().tolist() == [2, 3, 5] and rows.problem.startswith("row 2 (line 3)")
        assert rows.x.reshape(5, 4).tolist() == [[0, 0, 0, 0], [0] * 4, [0] * 4, [9, 9, 9, 9], [0] * 4]
        assert rows.y.tolist() == [1, 0, 0, 0, 0]
