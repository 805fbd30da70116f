"""Every plot function writes a real PNG of reasonable size, atomically, and leaves no figure open."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab.reporting import plots


def _check_png(path, min_side=200):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_side <= w <= 4000 and min_side <= h <= 4000
        # Not a blank canvas: more than one colour.
        assert len(im.convert("L").getcolors(maxcolors=1 << 16) or [0, 0]) > 1
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    assert plt.get_fignums() == []


def _records():
    out = []
    for step in range(0, 200, 10):
        out.append({"kind": "step", "step": step, "epoch": step / 100, "loss": 2.3 / (1 + step / 50),
                    "acc": min(0.99, 0.1 + step / 220), "lr": 1e-3})
        if step and step % 100 == 0:
            out.append({"kind": "epoch", "epoch": step // 100, "step": step, "train_loss": 0.5,
                        "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.78, "time_s": 1.5})
    out.append({"kind": "epoch", "epoch": 2, "step": 200, "train_loss": 0.3, "train_acc": 0.9,
                "val_loss": None, "val_acc": None, "time_s": 1.4})
    out.append({"kind": "test", "test_loss": 0.4, "test_acc": 0.88})
    return out


def test_training_curves(tmp_path):
    path = plots.plot_training_curves(_records(), tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    _check_png(path)


def test_training_curves_from_epoch_records_only(tmp_path):
    records = [r for r in _records() if r["kind"] == "epoch"]
    _check_png(plots.plot_training_curves(records, tmp_path / "sub" / "curves.png"))
    with pytest.raises(ValueError, match="no 'step' or 'epoch'"):
        plots.plot_training_curves([{"kind": "test", "test_acc": 0.5}], tmp_path / "x.png")


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix(tmp_path, normalize):
    cm = torch.tensor([[5, 1, 0], [0, 3, 2], [0, 0, 0]])  # an empty row must not divide by zero
    _check_png(plots.plot_confusion_matrix(cm, ["zero", "one", "two"], tmp_path / "cm.png", normalize))


def test_confusion_matrix_labels_the_cells_that_hold_images_and_leaves_the_others_blank(tmp_path, monkeypatch):
    from PIL import ImageDraw

    drawn = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: drawn.append(
        (xy, text, k.get("anchor"))) or real(self, xy, text, *a, **k))
    cm = np.array([[5, 1, 0], [0, 3, 2], [0, 0, 0]])

    def cell_labels():  # the texts drawn inside the matrix, as (row, column, text), from their positions
        numbers = [(xy, t) for xy, t, anchor in drawn if anchor == "mm" and t.replace(".", "").isdigit()]  # centred
        xs, ys = sorted({round(xy[0]) for xy, _ in numbers}), sorted({round(xy[1]) for xy, _ in numbers})
        return sorted((ys.index(round(xy[1])), xs.index(round(xy[0])), t) for xy, t in numbers)

    plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png")
    assert [t for *_, t in cell_labels()] == ["0.83", "0.17", "0.60", "0.40"]  # row by row, zeros left blank
    drawn.clear()
    plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "counts.png", normalize=False)
    assert [t for *_, t in cell_labels()] == ["5", "1", "3", "2"]
    with Image.open(tmp_path / "cm.png") as im:
        assert im.size[0] > 150 and im.size[1] > 150


def test_a_one_class_confusion_matrix_keeps_its_whole_title_and_a_two_line_name(tmp_path):
    from mnistlab.reporting import raster

    path = plots.plot_confusion_matrix(np.array([[3]]), ["ankle\nboot"], tmp_path / "cm.png")
    with Image.open(path) as im:
        assert im.width >= raster.text_width(["confusion matrix (row-normalised)"], 12)


def test_run_figures_are_drawn_without_importing_matplotlib(tmp_path):
    import subprocess
    import sys

    code = f"""
import sys
import numpy as np
from pathlib import Path
from mnistlab.reporting import plots
out = Path({str(tmp_path)!r})
records = [{{"kind": "step", "step": s, "loss": 1 / s, "acc": 1 - 1 / s}} for s in range(1, 20)]
records += [{{"kind": "epoch", "step": 19, "epoch": 1, "val_loss": 0.2, "val_acc": 0.9}}, {{"kind": "test", "test_acc": 0.9}}]
plots.plot_training_curves(records, out / "curves.png")
plots.plot_confusion_matrix(np.eye(10, dtype=int) * 9 + 1, None, out / "confusion.png")
images = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
y = np.arange(30) % 10
plots.plot_prediction_grid(images[:25], y[:25], np.full(25, 0.9), out / "predictions.png", labels=y[:25])
plots.plot_confident_mistakes(images, y, (y + 1) % 10, np.full(30, 0.9), out / "mistakes.png")
plots.warm_up()
assert "matplotlib" not in sys.modules, "matplotlib was imported"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("curves", "confusion", "predictions", "mistakes"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.format == "PNG" and min(im.size) > 150, name


def test_prediction_grid_and_mistakes(tmp_path, seeded):
    n, k = 20, 10
    images = np.random.randint(0, 256, size=(n, 28, 28), dtype=np.uint8)
    probs = torch.softmax(torch.randn(n, k) * 3, dim=1)
    preds = probs.argmax(1)
    labels = preds.clone()
    labels[::3] = (labels[::3] + 1) % k
    names = [f"c{i}" for i in range(k)]
    _check_png(plots.plot_prediction_grid(images, preds, probs, tmp_path / "grid.png",
                                          labels=labels, class_names=names, title="test set"))
    _check_png(plots.plot_prediction_grid(images[:5], preds[:5], probs.max(1).values, tmp_path / "g5.png"),
               min_side=100)
    rgb = np.random.randint(0, 256, size=(4, 28, 28, 3), dtype=np.uint8)
    _check_png(plots.plot_prediction_grid(rgb, preds[:4], probs[:4], tmp_path / "rgb.png"), min_side=100)
    _check_png(plots.plot_confident_mistakes(images, labels, preds, probs, tmp_path / "mistakes.png",
                                             names, k=4), min_side=100)
    # No mistakes at all still gives a picture rather than an error.
    _check_png(plots.plot_confident_mistakes(images, preds, preds, probs, tmp_path / "none.png", names),
               min_side=50)


def test_series_bars_and_weights(tmp_path):
    xs = np.arange(1, 11)
    _check_png(plots.plot_series(xs, {"sgd": 1 / xs, "adam": 0.5 / xs}, tmp_path / "s.png",
                                 "loss", "epoch", "loss (nats)", logy=True))
    _check_png(plots.plot_bars(["linear", "mlp", "cnn"], [0.92, 0.98, 0.992], tmp_path / "b.png",
                               "test accuracy", "accuracy (fraction)"))
    w = torch.randn(10, 784)
    _check_png(plots.plot_weight_templates(w, tmp_path / "w.png", [str(i) for i in range(10)]))
    _check_png(plots.plot_weight_templates(w.reshape(10, 28, 28).numpy(), tmp_path / "w3.png"))
    with pytest.raises(ValueError, match="square"):
        plots.plot_weight_templates(torch.randn(3, 10), tmp_path / "bad.png")


def test_accuracy_per_epoch_draws_one_line_per_run_and_the_reference_lines(tmp_path):
    series = {"seed 0": [0.1135] * 5 + [0.36, 0.89, 0.93, 0.95], "seed 1": [0.1135] * 3 + [0.22, 0.53, 0.93, 0.94, 0.95, 0.96],
              "sigmoid": [0.098] + [0.1135] * 8}
    path = plots.plot_accuracy_per_epoch(series, tmp_path / "e.png", "9 layers", lines={"plateau": 0.2, "lecture": 0.11},
                                         dashed=["sigmoid"])
    _check_png(path)
    # The two solid runs in matplotlib's C0 and C1, the dashed one in black; C2 is not used.
    with Image.open(path) as im:
        colours = {c for _, c in im.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert {(31, 119, 180), (255, 127, 14), (0, 0, 0)} <= colours and (44, 160, 44) not in colours


def test_overwrite_is_atomic_replacement(tmp_path):
    path = tmp_path / "b.png"
    path.write_bytes(b"old")
    plots.plot_bars(["a"], [1.0], path, "t", "y")
    assert path.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------------- image grids: one mosaic


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _upscaled(image: np.ndarray, s: int) -> np.ndarray:
    """The oracle for one cell: a uint8 image as RGB, each pixel an s x s block."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return np.kron(rgb, np.ones((s, s, 1), dtype=np.uint8))


def _find(png: np.ndarray, cell: np.ndarray) -> list[tuple[int, int]]:
    """Every (row, column) of the PNG where `cell` appears pixel for pixel."""
    h, w = cell.shape[:2]
    corner = (png[:png.shape[0] - h + 1, :png.shape[1] - w + 1] == cell[0, 0]).all(axis=-1)
    return [(int(y), int(x)) for y, x in np.argwhere(corner) if np.array_equal(png[y:y + h, x:x + w], cell)]


def _red(png: np.ndarray) -> np.ndarray:
    """(row, column) of the strongly red pixels (the wrong predictions' titles; grey images have none)."""
    r, g, b = (png[..., i].astype(int) for i in range(3))
    return np.argwhere((r > 150) & (g < 90) & (b < 90))


def test_prediction_grid_is_a_mosaic_of_the_images_pixel_for_pixel(tmp_path):
    rng = np.random.default_rng(0)
    n = 11  # two rows of 8, the second one part full
    images = rng.integers(1, 255, size=(n, 28, 28), dtype=np.uint8)  # never white, the gaps' colour
    preds = np.arange(n) % 10
    probs = np.full(n, 0.9)
    png = _png(plots.plot_prediction_grid(images, preds, probs, tmp_path / "g.png", labels=preds))
    s = plots.CELL // 28
    spots = [_find(png, _upscaled(im, s)) for im in images]
    assert all(len(found) == 1 for found in spots), spots  # each image once, whole and unresampled
    spots = [found[0] for found in spots]
    rows = sorted({y for y, _ in spots})
    assert len(rows) == 2 and [y for y, _ in spots] == [rows[0]] * 8 + [rows[1]] * 3  # row-major, 8 a row
    xs = [x for _, x in spots[:8]]
    assert xs == sorted(xs) and min(np.diff(xs)) >= 28 * s + 2  # side by side with a gap, no overlap
    assert png[rows[0] + 28 * s:rows[1], :].min() < 255  # the second row's titles sit between the rows
    assert len(_red(png)) == 0  # every prediction right: no red title


def test_a_wrong_prediction_gets_a_red_title_above_its_own_cell(tmp_path):
    images = np.random.default_rng(1).integers(1, 255, size=(6, 28, 28), dtype=np.uint8)
    preds = np.array([1, 2, 3, 4, 5, 6])
    labels = preds.copy()
    labels[4] = 9  # the fifth one is wrong
    png = _png(plots.plot_prediction_grid(images, preds, np.full(6, 0.8), tmp_path / "g.png", labels=labels))
    s = plots.CELL // 28
    (y0, x0), = _find(png, _upscaled(images[4], s))
    red = _red(png)
    assert len(red) > 20
    assert red[:, 0].max() < y0 and red[:, 0].min() > y0 - 3 * plots.LINE_PX  # in the band just above it
    assert x0 - 20 < red[:, 1].min() and red[:, 1].max() < x0 + 28 * s + 20  # and over that cell only


def test_grid_scales_float_and_colour_images_as_before(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    raw[:, 0, 0], raw[:, 0, 1] = 0, 255  # each image spans 0..255, so stretching it back is exact
    floats = raw.astype(np.float32) / 255 * 7.0 - 2.0  # any range: stretched to black..white per image
    png = _png(plots.plot_prediction_grid(floats, np.zeros(3, int), np.ones(3), tmp_path / "f.png"))
    s = plots.CELL // 28
    assert all(len(_find(png, _upscaled(im, s))) == 1 for im in raw)
    # uint8 keeps 0-255: a dim image stays dim rather than being stretched.
    dim = rng.integers(10, 60, size=(2, 28, 28), dtype=np.uint8)
    png = _png(plots.plot_prediction_grid(dim, np.zeros(2, int), np.ones(2), tmp_path / "d.png"))
    assert all(len(_find(png, _upscaled(im, s))) == 1 for im in dim)
    rgb = rng.integers(1, 255, size=(4, 28, 28, 3), dtype=np.uint8)
    png = _png(plots.plot_prediction_grid(rgb, np.zeros(4, int), np.ones(4), tmp_path / "c.png"))
    assert all(len(_find(png, _upscaled(im, s))) == 1 for im in rgb)


def test_label_set_grid_and_mistakes_are_mosaics_too(tmp_path):
    rng = np.random.default_rng(3)
    wide = rng.integers(1, 255, size=(6, 28, 84), dtype=np.uint8)  # Multi-MNIST's canvas
    pred = np.zeros((6, 10), bool)
    pred[np.arange(6), np.arange(6)] = True
    truth = pred.copy()
    png = _png(plots.plot_label_set_grid(wide, pred, tmp_path / "s.png", truth, ncols=4))
    s = plots.CELL // 84
    spots = [_find(png, _upscaled(im, s)) for im in wide]
    assert [len(f) for f in spots] == [1] * 6 and len({f[0][0] for f in spots}) == 2  # 4 + 2
    assert len(_red(png)) == 0
    truth[2, 7] = True  # one set wrong
    assert len(_red(_png(plots.plot_label_set_grid(wide, pred, tmp_path / "s.png", truth, ncols=4)))) > 20
    # The mistakes grid shows exactly the wrong images, most confident first.
    images = rng.integers(1, 255, size=(10, 28, 28), dtype=np.uint8)
    y = np.zeros(10, int)
    preds = np.array([0, 1, 0, 2, 0, 0, 3, 0, 0, 0])
    conf = np.linspace(0.5, 0.95, 10)
    png = _png(plots.plot_confident_mistakes(images, y, preds, conf, tmp_path / "m.png"))
    s = plots.CELL // 28
    shown = [_find(png, _upscaled(images[i], s)) for i in range(10)]
    assert [i for i in range(10) if shown[i]] == [1, 3, 6]
    assert shown[6][0][1] < shown[3][0][1] < shown[1][0][1]  # left to right by confidence
    assert len(_red(png)) > 20
