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


# ----------------------------------------------------------------------------- unreadable inputs


def _labels(run: Path, files: list[str], capsys) -> list:
    """Each file predicted on its own (the oracle): its class, or "blank"."""
    labels = []
    for f in files:
        main(["predict", str(run), f, "--json"])
        (r,) = json.loads(capsys.readouterr().out)
        labels.append("blank" if r["blank"] else (r["class"], round(r["prob"], 5)))
    return labels


def test_bad_files_among_good_ones_each_get_one_error_line(run, pictures, tmp_path, capsys):
    """Issue 27: one bad file once stopped the command before any file was classified."""
    corrupt = tmp_path / "corrupt.png"
    png = pictures["seven.png"].read_bytes()
    corrupt.write_bytes(png[: len(png) // 2])
    missing = tmp_path / "missing.png"
    good = [str(pictures["seven.png"]), str(pictures["white.png"]), str(pictures["seven-inverted.png"])]
    argv = [good[0], str(corrupt), good[1], str(missing), good[2]]
    assert main(["predict", str(run), *argv]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(": ")[0] for line in lines] == good  # the readable ones, in the order given
    assert lines[1] == f"{good[1]}: no digit found (blank image)"
    errors = captured.err.splitlines()
    assert len(errors) == 2 and "Traceback" not in captured.err
    assert errors[0].startswith(f"mnistlab: error: {corrupt}: truncated or corrupt image data (")
    assert errors[1] == f"mnistlab: error: {missing}: no such file"
    # The classes are those of each file predicted alone; JSON holds the errors in place.
    assert main(["predict", str(run), *argv, "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert results[1] == {"file": str(corrupt), "error": errors[0].split(f"{corrupt}: ", 1)[1]}
    assert results[3] == {"file": str(missing), "error": "no such file"}
    batch = ["blank" if r["blank"] else (r["class"], round(r["prob"], 5)) for r in results[::2]]
    assert batch == _labels(run, good, capsys)
    # --skip-bad: the same answers, the errors as warnings, exit 0; before the images or among them too.
    for where in (len(argv), 0, 2):
        assert main(["predict", str(run), *argv[:where], "--skip-bad", *argv[where:]]) == 0, where
        captured = capsys.readouterr()
        assert captured.out.splitlines() == lines
        assert captured.err.splitlines() == [e.replace("error:", "warning:", 1) for e in errors]


def test_options_between_the_images_leave_the_list_whole(run, pictures, capsys):
    """`predict RUN a.png --json b.png`: argparse alone took a.png only and refused b.png."""
    good = [str(pictures["seven.png"]), str(pictures["seven-inverted.png"])]
    assert main(["predict", str(run), *good, "--json", "--top-k", "2"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in expected] == good
    assert main(["predict", str(run), good[0], "--json", good[1], "--top-k", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    with pytest.raises(SystemExit) as info:  # an unknown option is still argparse's one line, exit 2
        main(["predict", str(run), good[0], "--no-such-flag", good[1]])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"mnistlab: error: unrecognized arguments: --no-such-flag {good[1]}"


def test_nothing_readable_exits_1_with_or_without_skip_bad(run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert main(["predict", str(run), str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"mnistlab: error: {bad}: not a recognised image format"]
    assert main(["predict", str(run), str(bad), str(tmp_path / "gone.png"), "--skip-bad"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"mnistlab: warning: {bad}: not a recognised image format",
        f"mnistlab: warning: {tmp_path / 'gone.png'}: no such file",
        "mnistlab: error: none of the 2 images could be read",
    ]


def _csv_with_bad_rows(path: Path, rows: np.ndarray) -> tuple[Path, list[int]]:
    """`rows` written as a pixel CSV with a blank line after row 2 and these rows broken (1-based)."""
    broken = {3: "short", 7: "word", 12: "range", 20: "nan", 130: "negative", 299: "long"}
    lines = [",".join(f"pixel{i}" for i in range(rows.shape[1]))]
    for n, r in enumerate(rows.tolist(), 1):
        cells = [str(v) for v in r]
        kind = broken.get(n)
        if kind == "short":
            cells = cells[:-1]
        elif kind == "long":
            cells.append("0")
        elif kind:
            cells[100] = {"word": "ink", "range": "300", "nan": "nan", "negative": "-1"}[kind]
        lines.append(",".join(cells))
        if n == 2:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path, sorted(broken)


def test_csv_with_bad_rows_writes_nothing_unless_skip_bad(run, mnist_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rows = mnist_raw.test_x[:300].reshape(300, -1)  # three parsing chunks: the bad rows sit in two of them
    csv, bad = _csv_with_bad_rows(tmp_path / "test.csv", rows)
    out = tmp_path / "submission.csv"
    out.write_text("an earlier submission\n")
    assert main(["predict", str(run), "--csv", str(csv), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    message = (f"{csv}: 6 of 300 rows cannot be read: rows 3, 7, 12 and 3 more "
               "(first: row 3 (line 5) has 783 values, expected 784 (pixels))")  # the blank line 4 is no row
    assert _one_line_error(captured.err) == (f"mnistlab: error: {message}; nothing written (--skip-bad writes the "
                                             "table with those rows labelled as blank images)")
    assert captured.out == "" and out.read_text() == "an earlier submission\n"
    assert main(["predict", str(run), "--csv", str(csv)]) == 1  # to stdout: the same
    assert capsys.readouterr().out == ""
    # --skip-bad: every ImageId, the readable rows labelled as the model labels them, the bad ones as a blank image.
    assert main(["predict", str(run), "--csv", str(csv), "--out", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote 300 predictions to {out}"
    assert _one_line_error(captured.err) == (f"mnistlab: warning: {message}; --skip-bad: their ImageIds are in the "
                                             "table, labelled as blank images (guesses)")
    table = out.read_text().splitlines()
    assert table[0] == "ImageId,Label" and [int(t.split(",")[0]) for t in table[1:]] == list(range(1, 301))
    from mnistlab.evaluation.predict import Predictor

    predictor = Predictor.from_checkpoint(run)
    expected = predictor.classify(rows.reshape(300, 28, 28).astype(np.uint8))
    expected[np.array(bad) - 1] = predictor.classify(np.zeros((1, 28, 28), np.uint8))[0]
    assert [int(t.split(",")[1]) for t in table[1:]] == expected.tolist()


def test_a_csv_without_any_readable_row_writes_nothing_even_with_skip_bad(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    csv = _write_csv(tmp_path / "test.csv", np.full((2, 784), 999))
    out = tmp_path / "sub.csv"
    assert main(["predict", str(run), "--csv", str(csv), "--out", str(out), "--skip-bad"]) == 1
    assert _one_line_error(capsys.readouterr().err) == (
        f"mnistlab: error: {csv}: 2 of 2 rows cannot be read: rows 1 and 2 "
        "(first: row 1 (line 2): pixel0 = 999 is outside 0..255); nothing written")
    assert not out.exists()


def test_the_row_list_is_compact():
    from mnistlab.data.custom import describe_rows

    assert describe_rows([5]) == "row 5"
    assert describe_rows([3, 7]) == "rows 3 and 7"
    assert describe_rows(np.array([3, 7, 12, 40])) == "rows 3, 7, 12 and 40"
    assert describe_rows(np.arange(1, 44) * 1000) == "rows 1,000, 2,000, 3,000 and 40 more"


# ----------------------------------------------------------------------------- errors name their files


def test_evaluate_errors_name_the_data_and_the_checkpoint(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    small = tmp_path / "small.csv"
    small.write_text("label," + ",".join(f"pixel{i}" for i in range(16)) + "\n"
                     + "".join(f"{i % 2}," + ",".join(map(str, rng.integers(0, 256, 16))) + "\n" for i in range(20)))
    three = tmp_path / "three.csv"
    three.write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
                     + "".join(f"{i % 3}," + ",".join(["0"] * 784) + "\n" for i in range(30)))
    ckpt = run / "last.safetensors"
    assert main(["evaluate", str(run), "--dataset", f"csv:{small}"]) == 1
    assert _one_line_error(capsys.readouterr().err) == (
        f"mnistlab: error: csv:{small}: images are (1, 4, 4) but {ckpt} was trained on (1, 28, 28)")
    assert main(["evaluate", str(run), "--dataset", f"csv:{three}"]) == 1
    assert _one_line_error(capsys.readouterr().err) == f"mnistlab: error: csv:{three}: 3 classes, but {ckpt} has 10"
    assert main(["predict", str(run), "--csv", str(small)]) == 1
    assert _one_line_error(capsys.readouterr().err) == (
        f"mnistlab: error: {small}: rows are 4x4 images but {run} takes 28x28")
