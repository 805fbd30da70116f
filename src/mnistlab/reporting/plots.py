"""Figures written to PNG files: training curves, confusion matrix, image grids, series, bars, maps.

A run's own four figures (curves, confusion matrix, the prediction and mistake grids) are drawn
by Pillow (reporting/raster.py: no matplotlib import, a few milliseconds each); the lessons' other
figures are built with `matplotlib.figure.Figure`, imported when first needed and never through
pyplot, so nothing here touches pyplot's global figure list or the user's backend (importing
this module from a notebook changes nothing). Every function is safe to call from server
threads, renders into memory, writes the PNG atomically, and returns its path.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mnistlab.fileio import atomic_write_bytes
from mnistlab.reporting import raster

if TYPE_CHECKING:  # matplotlib is imported only when a lesson's figure needs it (_figure)
    from matplotlib.figure import Figure

DPI = raster.DPI  # dots per inch of every PNG; figure sizes below are in inches
WRONG_COLOR = "tab:red"


def _save(fig: Figure, path: str | os.PathLike, tight: bool = True) -> Path:
    """Render `fig` to PNG bytes, write them atomically to `path` and return the path.

    Args:
        tight: crop to the drawn content (bbox_inches="tight"): a second full drawing pass, so a
            figure whose layout is fixed to fit its content passes False.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _to_numpy(a: Any) -> np.ndarray:
    """torch tensors (any device), lists and arrays -> numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    return [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(num_classes)]


# ---------------------------------------------------------------------------- training curves


def plot_training_curves(records: list[dict], path: str | os.PathLike) -> Path:
    """Loss and accuracy against iterations: training (step records) and validation (epoch records).

    Args:
        records: the lines of a run's metrics.jsonl; "step", "epoch" and "test" kinds are used,
            anything else is ignored. Accuracies are fractions in [0, 1].
    """
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    tests = [r for r in records if r.get("kind") == "test"]
    if not steps and not epochs:
        raise ValueError("no 'step' or 'epoch' records to plot")
    # x is the optimizer step when every record has one; otherwise fall back to epochs.
    by_step = all("step" in r for r in steps + epochs)
    xkey, xlabel = ("step", "iteration (optimizer steps)") if by_step else ("epoch", "epoch")

    # Two panels side by side, 1000 x 400 pixels, drawn by Pillow (raster.py says why).
    picture = Image.new("RGB", (1000, 400), "white")
    for box, train_key, val_key, test_key, label in (
        ((80, 38, 485, 338), "loss", "val_loss", "test_loss", "loss"),
        ((580, 38, 985, 338), "acc", "val_acc", "test_acc", "accuracy"),
    ):
        series = []  # (xs, ys, colour, legend, marker)
        pts = [(r[xkey], r[train_key]) for r in steps if r.get(train_key) is not None]
        if pts:
            series.append((*zip(*pts), "tab:blue", "training (per logged step)", None))
        else:  # no step records: the per-epoch training numbers stand in
            pts = [(r[xkey], r["train_" + train_key]) for r in epochs if r.get("train_" + train_key) is not None]
            if pts:
                series.append((*zip(*pts), "tab:blue", "training (per epoch)", "o"))
        pts = [(r[xkey], r[val_key]) for r in epochs if r.get(val_key) is not None]
        if pts:
            series.append((*zip(*pts), "tab:orange", "validation (end of epoch)", "o"))
        last_x = max([r[xkey] for r in steps + epochs], default=0)
        for r in tests:
            if r.get(test_key) is not None:
                series.append(([last_x], [r[test_key]], "tab:green", "test (final)", "*"))
        xs = [x for s_ in series for x in s_[0]] + [r[xkey] for r in steps + epochs]
        ys = [y for s_ in series for y in s_[1]]
        panel = raster.Panel(picture, box, xs, ys, percent=label == "accuracy")
        panel.frame(f"{label} during training", xlabel, label + (" (cross-entropy, nats)" if label == "loss" else ""))
        for sx, sy, color, legend, marker in series:
            panel.line(sx, sy, color, legend, width=2 if marker else 1, marker=marker)
        panel.legend()
    return raster.save_png(picture, path)


# ---------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(cm: Any, class_names: Sequence[str] | None, path: str | os.PathLike,
                          normalize: bool = True) -> Path:
    """Heat map of a confusion matrix (rows true, columns predicted), row-normalised by default; each
    cell that holds images is labelled with its value, and cells that hold none are left blank.

    Args:
        normalize: divide each row by its count, so the diagonal is per-class recall.
    """
    counts = _to_numpy(cm).astype(np.float64)
    k = counts.shape[0]
    names = [" ".join(n.split()) for n in _names(class_names, k)]  # one line each (a newline cannot be laid out)
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts

    # Drawn by Pillow (raster.py says why): cells of `cell` pixels, the class names left and below
    # (the columns' turned 90 degrees), a colour bar on the right.
    cell = max(24, min(56, round(560 / max(k, 1))))
    matrix = cell * k
    name_w = math.ceil(raster.text_width(names, 10)) + 4
    top, left = HEADER_PX + 10, GAP + 22 + name_w
    bottom_labels = name_w + 30
    bar_x = left + matrix + 20
    scale = ["0.0", "0.5", "1.0"] if normalize else ["0", f"{values.max(initial=0):g}"]
    title = "confusion matrix" + (" (row-normalised)" if normalize else " (counts)")
    title_w = math.ceil(raster.text_width([title], 12)) + 2 * GAP
    title_x = max(left + matrix / 2, title_w / 2)  # centred over the matrix, unless that would cut it off
    width = max(bar_x + 18 + 8 + math.ceil(raster.text_width(scale, 9)) + GAP, math.ceil(title_x + title_w / 2))
    height = top + matrix + bottom_labels + GAP
    vmax = 1.0 if normalize else float(values.max(initial=0)) or 1.0
    colours = raster.blues(values / vmax)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[top:top + matrix, left:left + matrix] = colours.repeat(cell, axis=0).repeat(cell, axis=1)
    bar = raster.blues(np.linspace(1, 0, matrix))[:, None, :]
    canvas[top:top + matrix, bar_x:bar_x + 18] = bar
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    f_names, f_cells, f_scale = raster.font(10), raster.font(8), raster.font(9)
    draw.rectangle([left - 1, top - 1, left + matrix, top + matrix], outline=raster.AXES)
    draw.rectangle([bar_x - 1, top - 1, bar_x + 18, top + matrix], outline=raster.AXES)
    for i, name in enumerate(names):
        y = top + i * cell + cell / 2
        draw.text((left - 6, y), name, fill=(0, 0, 0), font=f_names, anchor="rm")
        turned = raster.turned_text(name, 10)
        picture.paste(turned, (round(left + i * cell + (cell - turned.width) / 2), top + matrix + 6), turned)
    draw.text((left + matrix / 2, top + matrix + bottom_labels - 4), "predicted class", fill=(0, 0, 0),
              font=f_names, anchor="md")
    turned = raster.turned_text("true class", 10)
    picture.paste(turned, (GAP, round(top + (matrix - turned.height) / 2)), turned)
    for t, text in zip((1.0, 0.5, 0.0) if normalize else (1.0, 0.0), scale[::-1]):
        draw.text((bar_x + 24, top + (1 - t) * (matrix - 1)), text, fill=raster.AXES, font=f_scale, anchor="lm")
    draw.text((title_x, HEADER_PX / 2 + 4), title, fill=(0, 0, 0), font=raster.font(12), anchor="mm")
    if k <= 20:  # cell labels stop being readable beyond ~20 classes
        for i, j in zip(*np.nonzero(counts)):  # a cell no image fell into stays blank (most of a good model's)
            text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            color = (255, 255, 255) if values[i, j] > 0.6 * vmax else (0, 0, 0)
            draw.text((left + j * cell + cell / 2, top + i * cell + cell / 2), text, fill=color, font=f_cells,
                      anchor="mm")
    return raster.save_png(picture, path)


# ---------------------------------------------------------------------------- image grids


def _images(images: Any) -> np.ndarray:
    """(N, H, W), (N, 1, H, W) or (N, H, W, 3) -> (N, H, W) or (N, H, W, 3)."""
    x = _to_numpy(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        raise ValueError(f"expected (N, H, W) or (N, H, W, 3) images, got shape {x.shape}")
    return x


def _confidences(probs: Any, preds: np.ndarray) -> np.ndarray:
    """(N, K) probabilities or (N,) confidences -> (N,) probability of each prediction."""
    p = _to_numpy(probs).astype(np.float64)
    if p.ndim == 2:
        return p[np.arange(len(preds)), preds]
    return p


# Mosaic layout, in pixels of the PNG (DPI above): each image is scaled by a whole factor to about CELL
# pixels, with its title in a band above it; one white canvas holds every cell and every caption.
CELL = 112  # pixels on the longest side of a cell (28-pixel digits are drawn 4x)
GAP = 10  # pixels between neighbouring cells, and around the grid
TITLE_PT = 8  # cell titles, points
LINE_PX = 14  # pixels per line of a cell title
HEADER_PX = 36  # pixels above the grid for the figure's title


def warm_up() -> None:
    """Load the fonts a run's figures use and encode a tiny PNG, ahead of the first figure (a drawer
    waiting for work pays this instead of the run's end)."""
    _grid(np.zeros((1, 2, 2), dtype=np.uint8), ["0"], ["black"], "0", None)
    for points in (8, 9, 10, 12):
        raster.font(points)


def _figure(*args: Any, **kwargs: Any) -> Any:
    """A matplotlib Figure (imported here: a run's own figures are drawn without matplotlib)."""
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def _cells(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) images -> (N, h, w, 3) uint8 RGB cells of about CELL pixels.

    uint8 keeps its absolute 0-255 scale; other grey images are stretched to their own range (black to
    white, like imshow's default), other colour images are taken as 0-1 floats or 0-255 integers.
    """
    x = images
    if x.dtype != np.uint8:
        if x.ndim == 3:
            x = np.nan_to_num(x.astype(np.float64))
            lo = x.min(axis=(1, 2), keepdims=True) if len(x) else 0.0
            span = (x.max(axis=(1, 2), keepdims=True) - lo) if len(x) else 1.0
            x = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
            x = np.round(x * 255)
        elif np.issubdtype(x.dtype, np.floating):
            x = np.round(np.clip(np.nan_to_num(x), 0, 1) * 255)
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)  # grey -> RGB
    side = max(x.shape[1], x.shape[2], 1)
    if side <= CELL:
        s = CELL // side
        return x.repeat(s, axis=1).repeat(s, axis=2) if s > 1 else x
    f = math.ceil(side / CELL)  # large images: the mean of each f x f block
    n, h, w = x.shape[0], x.shape[1] // f, x.shape[2] // f
    blocks = x[:, :h * f, :w * f].reshape(n, h, f, w, f, 3).astype(np.float32)
    return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)


def _grid(images: np.ndarray, titles: list[str], colors: list[str], title: str, path: str | os.PathLike | None,
          ncols: int = 8) -> Path | None:
    """One image: every cell pasted into a white canvas, its title above it; drawn and written by Pillow.

    The canvas is exactly the PNG, drawn 1:1 (no resampling), so a cell's pixels are the image's.
    The text is matplotlib's font rendered by Pillow: a grid is a picture with captions, and Pillow
    draws it in a few milliseconds where a matplotlib figure of 25 captions took 0.3 s.
    """
    cells = _cells(images)
    n, ch, cw = cells.shape[:3]
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    band = lines * LINE_PX + 4  # title band above each row of cells
    font, title_font = raster.font(TITLE_PT), raster.font(12)
    slot = max(cw, math.ceil(raster.text_width(titles, TITLE_PT))) if n else 160
    rows_h = ch if n else 40
    grid_w = ncols * slot + (ncols - 1) * GAP
    width = max(grid_w, math.ceil(raster.text_width([title], 12))) + 2 * GAP
    height = HEADER_PX + nrows * (band + rows_h) + (nrows - 1) * GAP + GAP
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    left = (width - grid_w) // 2
    spots = []  # (x centre, y of the cell's top) per cell, in canvas pixels
    for i in range(n):
        r, c = divmod(i, ncols)
        x0 = left + c * (slot + GAP) + (slot - cw) // 2
        y0 = HEADER_PX + r * (band + rows_h + GAP) + band
        canvas[y0:y0 + ch, x0:x0 + cw] = cells[i]
        spots.append((x0 + cw / 2, y0))
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for (x, y), text, color in zip(spots, titles, colors):
        fill = raster.rgb(color)
        # Bottom-aligned in the band above the cell, one line every LINE_PX pixels.
        for k, line in enumerate(reversed(text.split("\n"))):
            draw.text((x, y - 3 - k * LINE_PX), line, fill=fill, font=font, anchor="md")
    if n == 0:
        draw.text((width / 2, HEADER_PX + (band + rows_h) / 2), "nothing to show", fill=(0, 0, 0), font=title_font,
                  anchor="mm")
    draw.text((width / 2, HEADER_PX / 2), title, fill=(0, 0, 0), font=title_font, anchor="mm")
    return raster.save_png(picture, path)  # (path None: warm_up, encoded only)


def plot_prediction_grid(images: Any, preds: Any, probs: Any, path: str | os.PathLike,
                         labels: Any = None, class_names: Sequence[str] | None = None,
                         title: str = "predictions") -> Path:
    """A grid of images titled "predict: 7 (98%)"; titles are red where `labels` disagree.

    Args:
        probs: (N, K) class probabilities, or (N,) probability of each prediction.
        labels: optional true classes; wrong predictions also show "true: 4".
    """
    x = _images(images)
    preds = _to_numpy(preds).astype(np.int64)
    conf = _confidences(probs, preds)
    truth = None if labels is None else _to_numpy(labels).astype(np.int64)
    num_names = int(max(preds.max(initial=0), -1 if truth is None else truth.max(initial=0))) + 1
    names = _names(class_names, num_names)
    titles, colors = [], []
    for i in range(len(x)):
        text = f"predict: {names[preds[i]]} ({conf[i]:.0%})"
        wrong = truth is not None and truth[i] != preds[i]
        if wrong:
            text += f"\ntrue: {names[truth[i]]}"
        titles.append(text)
        colors.append(WRONG_COLOR if wrong else "black")
    return _grid(x, titles, colors, title, path)


def plot_label_set_grid(images: Any, pred_sets: Any, path: str | os.PathLike, true_sets: Any = None,
                        class_names: Sequence[str] | None = None, title: str = "predicted label sets",
                        ncols: int = 4) -> Path:
    """Multi-label predictions: each image titled "predict: {3, 7}"; red, with the true set, where they differ.

    Args:
        pred_sets, true_sets: (N, K) boolean or 0/1 label sets.
    """
    x = _images(images)
    pred = _to_numpy(pred_sets).astype(bool)
    truth = None if true_sets is None else _to_numpy(true_sets).astype(bool)
    names = _names(class_names, pred.shape[1])

    def as_text(row: np.ndarray) -> str:
        return "{" + ", ".join(names[k] for k in np.flatnonzero(row)) + "}"

    titles, colors = [], []
    for i in range(len(x)):
        wrong = truth is not None and bool((truth[i] != pred[i]).any())
        titles.append(f"predict: {as_text(pred[i])}" + (f"\ntrue: {as_text(truth[i])}" if wrong else ""))
        colors.append(WRONG_COLOR if wrong else "black")
    return _grid(x, titles, colors, title, path, ncols=ncols)


def plot_confident_mistakes(images: Any, y: Any, preds: Any, probs: Any, path: str | os.PathLike,
                            class_names: Sequence[str] | None = None, k: int = 16) -> Path:
    """The k wrong predictions made with the highest confidence, titled "true 4 -> pred 9 (99%)"."""
    x = _images(images)
    y = _to_numpy(y).astype(np.int64)
    preds = _to_numpy(preds).astype(np.int64)
    conf = _confidences(probs, preds)
    wrong = np.flatnonzero(preds != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    names = _names(class_names, int(max(y.max(initial=0), preds.max(initial=0))) + 1)
    titles = [f"true {names[y[i]]} -> pred {names[preds[i]]} ({conf[i]:.0%})" for i in order]
    title = f"{len(order)} most confident mistakes (of {len(wrong)} wrong out of {len(y)})"
    return _grid(x[order], titles, [WRONG_COLOR] * len(order), title, path)


# ---------------------------------------------------------------------------- generic plots


def plot_series(xs: Sequence[float], series: dict[str, Sequence[float]], path: str | os.PathLike,
                title: str, xlabel: str, ylabel: str, logy: bool = False) -> Path:
    """Line plot of several named series against shared xs (put units in the labels)."""
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    xs = _to_numpy(xs)
    for name, ys in series.items():
        ax.plot(xs, _to_numpy(ys), marker="o" if len(xs) <= 30 else None, ms=3, label=str(name))
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both" if logy else "major")
    if series:
        ax.legend()
    return _save(fig, path)


def plot_accuracy_per_epoch(series: dict[str, Sequence[float]], path: str | os.PathLike, title: str,
                            lines: dict[str, float] | None = None, dashed: Collection[str] = ()) -> Path:
    """Accuracy (fractions, drawn as %) after each epoch, one line per named run (epoch 1 first).

    Args:
        lines: horizontal reference lines, label -> accuracy (e.g. a threshold, a published number).
        dashed: names of the series drawn dashed (runs of another kind than the rest).
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = _figure(figsize=(8, 5))
    ax = fig.subplots()
    solid = [name for name in series if name not in dashed]
    others = [name for name in series if name in dashed]
    for name, ys in series.items():
        ys = _to_numpy(ys)
        # Solid runs take the colour cycle in order; dashed ones black and greys, so no two lines share a style.
        color = f"C{solid.index(name) % 10}" if name in solid else ("black", "darkred", "0.3")[others.index(name) % 3]
        ax.plot(range(1, len(ys) + 1), ys, marker="o" if name in solid else "s", ms=4, lw=1.5, color=color,
                ls="--" if name in dashed else "-", label=str(name))
    for j, (label, y) in enumerate((lines or {}).items()):
        ax.axhline(y, color="0.4", lw=1, ls=(":", "-.", "--")[j % 3], label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (% of images)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if series or lines:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_bars(names: Sequence[str], values: Sequence[float], path: str | os.PathLike,
              title: str, ylabel: str) -> Path:
    """Bar chart with each value written above its bar."""
    values = _to_numpy(values).astype(np.float64)
    fig = _figure(figsize=(max(5.0, 0.7 * len(names) + 2), 4.5))
    ax = fig.subplots()
    bars = ax.bar(range(len(values)), values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(values)), [str(n) for n in names], rotation=30 if len(names) > 6 else 0,
                  ha="right" if len(names) > 6 else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)  # room for the value labels
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_weight_templates(weights: Any, path: str | os.PathLike,
                          class_names: Sequence[str] | None = None) -> Path:
    """Each class's weight vector drawn as an HxW image, blue negative / red positive, one shared scale.

    Args:
        weights: (K, H*W) with a square H*W, or (K, H, W).
    """
    w = _to_numpy(weights).astype(np.float64)
    if w.ndim == 2:
        side = math.isqrt(w.shape[1])
        if side * side != w.shape[1]:
            raise ValueError(f"cannot draw {w.shape[1]} weights per class as a square image")
        w = w.reshape(w.shape[0], side, side)  # (K, H*W) -> (K, H, W)
    if w.ndim != 3:
        raise ValueError(f"expected (K, H*W) or (K, H, W) weights, got shape {w.shape}")
    k = w.shape[0]
    names = _names(class_names, k)
    # One symmetric scale around 0, so colours compare across classes and white means 0.
    vmax = float(np.abs(w).max()) or 1.0
    ncols = min(k, 5)
    nrows = math.ceil(k / ncols)
    fig = _figure(figsize=(2.0 * ncols + 1, 2.1 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < k:
            im = ax.imshow(w[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_title(names[i], fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle("weight templates per class")
    return _save(fig, path)


def plot_sweep(trials: Sequence[dict], params: Sequence[str], path: str | os.PathLike,
               log_params: Collection[str] = (), title: str = "sweep") -> Path:
    """Validation accuracy per trial, and against each searched parameter (one panel each).

    `trials` are dicts with "number", "state" (COMPLETE, PRUNED, FAIL, ...), "val_acc" (the last value
    reported, so a pruned trial sits at the epoch where it was stopped; None for a failed trial) and
    "params". Failed trials are marked at the bottom.
    """
    style = {"COMPLETE": ("tab:blue", "o"), "PRUNED": ("tab:orange", "v"), "FAIL": ("tab:red", "x")}
    scored = [t["val_acc"] for t in trials if t.get("val_acc") is not None]
    floor = min(scored) if scored else 0.0
    panels = 1 + len(params)
    cols = min(panels, 3)
    rows = (panels + cols - 1) // cols
    fig = _figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()

    def scatter(ax: Any, xs: list, trial_rows: list[dict]) -> None:
        for state, (color, marker) in style.items():
            pts = [(x, t["val_acc"] if t.get("val_acc") is not None else floor)
                   for x, t in zip(xs, trial_rows) if t["state"] == state]
            if pts:
                ax.scatter(*zip(*pts), c=color, marker=marker, s=22, label=state.lower())
        ax.grid(alpha=0.3)

    scatter(axes[0], [t["number"] for t in trials], list(trials))
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel("validation accuracy")
    axes[0].set_title(title)
    if trials:
        axes[0].legend(fontsize=7)
    for ax, name in zip(axes[1:], params):
        having = [t for t in trials if name in t["params"]]
        values = [t["params"][name] for t in having]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            scatter(ax, values, having)
            if name in log_params:
                ax.set_xscale("log")
                from matplotlib.ticker import NullFormatter

                ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
        else:  # choices such as widths or an activation: one column per choice
            labels = sorted({",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for v in values})
            index = [labels.index(",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)) for v in values]
            scatter(ax, index, having)
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0)
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy")
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def plot_map_grid(maps: Any, path: str | os.PathLike, title: str, *, ncols: int = 10, symmetric: bool = False,
                  label: str = "value", cell_titles: Sequence[str] | None = None) -> Path:
    """A grid of 2-D maps (N, H, W): convolution filters or feature maps, one shared colour scale.

    Args:
        symmetric: a blue-white-red scale centred on 0 (for filters, whose sign matters); else grey.
        label: the colour bar's label (what a pixel's value means).
    """
    m = _to_numpy(maps).astype(np.float64)
    if m.ndim != 3:
        raise ValueError(f"expected (N, H, W) maps, got shape {m.shape}")
    n = m.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(1.4 * ncols + 1, 1.5 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    if symmetric:
        vmax = float(np.abs(m).max()) or 1.0
        kwargs = {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax}
    else:
        kwargs = {"cmap": "gray", "vmin": float(m.min()), "vmax": float(m.max()) or 1.0}
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            im = ax.imshow(m[i], **kwargs)
            ax.set_title(cell_titles[i] if cell_titles else str(i), fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.suptitle(title)
    return _save(fig, path)
