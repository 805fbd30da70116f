"""`mnistlab predict` and `evaluate` answer honestly: blank images get no digit, bad options one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.errors import ConfigError


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    """The shared tiny run (tests/conftest.py): 10 classes, 28x28 gray."""
    return tiny_run


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, mnist_raw) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    arrays = {
        "white.png": np.full((64, 64), 255, np.uint8),
        "black.png": np.zeros((64, 64), np.uint8),
        "one-pixel.png": np.full((1, 1), 255, np.uint8),
        "noise.png": np.clip(rng.normal(128, 30, (100, 100)), 0, 255).astype(np.uint8),
        "seven.png": mnist_raw.test_x[0],
        "seven-inverted.png": 255 - mnist_raw.test_x[0],
    }
    paths = {}
    for name, a in arrays.items():
        Image.fromarray(a).save(folder / name)
        paths[name] = folder / name
    return paths


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


BLANK = ["white.png", "black.png", "one-pixel.png", "noise.png"]


def test_blank_images_say_no_digit_and_exit_1(run, pictures, capsys):
    """On 6a3e47d each of these was answered with a digit at about 50%, exit 0."""
    files = [str(pictures[n]) for n in BLANK]
    assert main(["predict", str(run), *files]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{f}: no digit found (blank image)" for f in files]
    assert _one_line_error(captured.err) == "mnistlab: error: no digit found in any of the 4 images (all blank)"
    assert main(["predict", str(run), files[0]]) == 1
    assert capsys.readouterr().err.strip() == f"mnistlab: error: {files[0]}: no digit found (the image is blank)"


def test_json_marks_blanks_and_gives_them_no_class(run, pictures, capsys):
    files = [str(pictures["seven.png"]), str(pictures["white.png"]), str(pictures["seven-inverted.png"])]
    assert main(["predict", str(run), *files, "--json"]) == 0  # not every input is blank
    seven, white, inverted = json.loads(capsys.readouterr().out)
    assert white == {"file": files[1], "blank": True}
    for r in (seven, inverted):
        assert r["blank"] is False and {"label", "class", "prob", "top"} <= set(r)
    assert seven["class"] == inverted["class"]  # the same digit, whichever the polarity
    assert main(["predict", str(run), files[1], "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == [{"file": files[1], "blank": True}]


def test_text_output_mixes_digits_and_blanks(run, pictures, capsys):
    assert main(["predict", str(run), str(pictures["seven.png"]), str(pictures["noise.png"])]) == 0
    digit, blank = capsys.readouterr().out.splitlines()
    assert digit.startswith(f"{pictures['seven.png']}: ") and "%" in digit
    assert blank == f"{pictures['noise.png']}: no digit found (blank image)"


def _write_csv(path: Path, rows: np.ndarray) -> Path:
    header = ",".join(f"pixel{i}" for i in range(rows.shape[1]))
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows.tolist()))
    return path


def test_csv_rows_all_get_a_label_and_blanks_are_counted(run, mnist_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rows = mnist_raw.test_x[:5].reshape(5, -1).copy()
    rows[1] = 0
    rows[3] = 255
    csv = _write_csv(tmp_path / "test.csv", rows)
    out = tmp_path / "sub.csv"
    assert main(["predict", str(run), "--csv", str(csv), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote 5 predictions to {out}"
    assert captured.err.strip() == (f"mnistlab: warning: {csv}: 2 of 5 rows are blank (no ink); their labels are guesses")
    table = out.read_text().splitlines()
    assert table[0] == "ImageId,Label" and [r.split(",")[0] for r in table[1:]] == ["1", "2", "3", "4", "5"]
    # Every row blank: the table is still written, and the exit status says nothing was found.
    blank = _write_csv(tmp_path / "blank.csv", np.zeros((3, 784), np.int64))
    assert main(["predict", str(run), "--csv", str(blank)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "ImageId,Label" and len(captured.out.splitlines()) == 4
    assert "3 of 3 rows are blank" in _one_line_error(captured.err)


def test_clean_csv_has_no_warning(run, mnist_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    csv = _write_csv(tmp_path / "test.csv", mnist_raw.test_x[:4].reshape(4, -1))
    assert main(["predict", str(run), "--csv", str(csv)]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- options


BAD_OPTIONS = [  # (argv after the command and RUN, phrase)
    ("evaluate", ["--batch-size", "0"], "--batch-size must be positive, got 0"),
    ("evaluate", ["--batch-size", "-1"], "--batch-size must be positive, got -1"),
    ("evaluate", ["--threshold", "0"], "--threshold is a probability in (0, 1), got 0.0"),
    ("evaluate", ["--threshold", "1"], "--threshold is a probability in (0, 1), got 1.0"),
    ("evaluate", ["--threshold", "1.5"], "--threshold is a probability in (0, 1), got 1.5"),
    ("evaluate", ["--threshold=-0.2"], "--threshold is a probability in (0, 1), got -0.2"),
    ("evaluate", ["--threshold", "nan"], "--threshold is a probability in (0, 1), got nan"),
    ("predict", ["IMAGE", "--top-k", "0"], "--top-k must be positive, got 0"),
    ("predict", ["IMAGE", "--top-k", "-1"], "--top-k must be positive, got -1"),
]


@pytest.mark.parametrize("command, flags, phrase", BAD_OPTIONS, ids=[" ".join([c, *f]) for c, f, _ in BAD_OPTIONS])
def test_bad_options_are_one_line_and_exit_2_before_loading(pictures, tmp_path, capsys, command, flags, phrase):
    """The run path does not exist: the option must be refused before anything is loaded."""
    flags = [str(pictures["seven.png"]) if f == "IMAGE" else f for f in flags]
    assert main([command, str(tmp_path / "no-such-run"), *flags]) == 2
    captured = capsys.readouterr()
    assert _one_line_error(captured.err) == f"mnistlab: error: {phrase}"
    assert captured.out == ""


def test_top_k_beyond_the_classes_lists_them_all(run, pictures, capsys):
    assert main(["predict", str(run), str(pictures["seven.png"]), "--top-k", "50", "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert len(r["top"]) == 10 and sorted(c["class"] for c in r["top"]) == list(range(10))
    assert sum(c["prob"] for c in r["top"]) == pytest.approx(1.0, abs=1e-5)


def test_library_calls_validate_too(run, pictures):
    from mnistlab.evaluation.evaluate import evaluate_checkpoint
    from mnistlab.evaluation.predict import Predictor

    predictor = Predictor.from_checkpoint(run)
    with pytest.raises(ConfigError, match="--top-k"):
        predictor.predict_files([pictures["seven.png"]], top_k=0)
    with pytest.raises(ConfigError, match="batch_size"):
        predictor.classify(np.zeros((2, 28, 28), np.uint8), batch_size=0)
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="--batch-size must be positive"):
            evaluate_checkpoint(str(run), batch_size=bad)
    with pytest.raises(ConfigError, match="--threshold"):
        evaluate_checkpoint(str(run), threshold=2.0)
