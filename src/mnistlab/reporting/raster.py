"""Pillow drawing for a run's own figures: text in matplotlib's font, chart panels with axes, heat-map cells.

Why not matplotlib for these: at the end of a few-second run its import (about 0.7 s on the 2-core
machines here) and its text layout (0.2-0.3 s a figure) were most of the time between the result
and the prompt. A run's figures are simple: an image mosaic with captions, two line charts, a
heat map, so they are drawn here in a few milliseconds each. The font is matplotlib's own DejaVu
Sans, found in its package data without importing it (Pillow's default font where it is missing),
so these figures read like the matplotlib ones the lessons draw.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnistlab.fileio import atomic_write_bytes

DPI = 100  # pixels per inch, as matplotlib's figures here: a point is DPI / 72 pixels
COLORS = {  # matplotlib's names for the colours the figures use
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128),
    "tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14), "tab:green": (44, 160, 44), "tab:red": (214, 39, 40),
}
GRID = (230, 230, 230)  # grid lines
SUPERSAMPLE = 3  # data lines are drawn this many times finer and scaled down: smooth (antialiased) lines
MARGIN = 10  # pixels around a panel where its markers may still be drawn
AXES = (60, 60, 60)  # axis frame and ticks


def rgb(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour by matplotlib name, "#rrggbb", or an (r, g, b) tuple of 0-255 ints."""
    if isinstance(color, tuple):
        return color
    if color in COLORS:
        return COLORS[color]
    if color.startswith("#") and len(color) == 7:
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    raise ValueError(f"unknown colour {color!r}")


@functools.lru_cache(maxsize=1)
def _font_file() -> str | None:
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=16)
def font(points: float) -> Any:
    """The figures' font at `points` (DejaVu Sans, else Pillow's default)."""
    pixels = max(1, round(points * DPI / 72))
    path = _font_file()
    return ImageFont.truetype(path, pixels) if path else ImageFont.load_default(pixels)


def text_width(texts: Sequence[str], points: float) -> float:
    """The widest line among `texts`, in pixels."""
    f = font(points)
    return max((f.getlength(line) for t in texts for line in t.split("\n")), default=0.0)


def turned_text(text: str, points: float, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """`text` on a transparent strip turned 90 degrees (reading upwards), to paste with itself as the mask."""
    f = font(points)
    strip = Image.new("RGBA", (int(f.getlength(text)) + 4, 16), (255, 255, 255, 0))
    ImageDraw.Draw(strip).text((2, 8), text, fill=(*fill, 255), font=f, anchor="lm")
    return strip.rotate(90, expand=True)


def star(x: float, y: float, r: float) -> list[tuple[float, float]]:
    """The corners of a five-pointed star of outer radius `r` centred on (x, y), point up."""
    return [(x + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5),
             y - (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5)) for k in range(10)]


def save_png(image: Image.Image, path: str | os.PathLike | io.BytesIO | None) -> Path | None:
    """Encode `image` as PNG and write it atomically to `path` (None: encode only, as a warm-up;
    a BytesIO: the PNG goes into it, for a TensorBoard image)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    if path is None:
        return None
    if isinstance(path, io.BytesIO):
        path.write(buf.getvalue())
        return None
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering lo..hi, about `count` of them."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_label(value: float, step: float, percent: bool = False) -> str:
    if percent:
        decimals = max(0, -math.floor(math.log10(step * 100))) if step > 0 else 0
        return f"{100 * value:.{decimals}f}%"
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{decimals}f}" if decimals else f"{value:,.0f}"


class Panel:
    """One chart's axes in a box of the picture: data-to-pixel mapping, lines, markers, labels, a legend."""

    def __init__(self, image: Image.Image, box: tuple[int, int, int, int], xs: Sequence[float],
                 ys: Sequence[float], percent: bool = False):
        self.image, self.draw, self.box, self.percent = image, ImageDraw.Draw(image), box, percent
        xs = [float(x) for x in xs if math.isfinite(x)] or [0.0, 1.0]
        ys = [float(y) for y in ys if math.isfinite(y)] or [0.0, 1.0]
        self.x0, self.x1 = min(xs), max(xs)
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        self.x1 += (self.x1 - self.x0) * 0.02  # room for a marker on the last x
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.05 or (abs(hi) * 0.05 or 0.05)
        self.y0, self.y1 = lo - pad, hi + pad
        self.legend_items: list[tuple[str, tuple[int, int, int], str]] = []
        self.drawn: list[tuple[float, float]] = []  # every point drawn, in pixels: the legend avoids them
        left, top, right, bottom = box
        size = ((right - left + 2 * MARGIN) * SUPERSAMPLE, (bottom - top + 2 * MARGIN) * SUPERSAMPLE)
        self.layer = Image.new("RGBA", size, (255, 255, 255, 0))  # the data, drawn finer (flush draws it in)

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + (x - self.x0) / (self.x1 - self.x0) * (right - left),
                bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top))

    def frame(self, title: str, xlabel: str, ylabel: str) -> None:
        """Grid, ticks with their labels, the frame, the axis labels and the title."""
        d, (left, top, right, bottom) = self.draw, self.box
        small, label = font(9), font(10)
        xt = [t for t in nice_ticks(self.x0, self.x1) if self.x0 <= t <= self.x1]
        yt = [t for t in nice_ticks(self.y0, self.y1) if self.y0 <= t <= self.y1]
        xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
        ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
        for t in xt:
            x, _ = self.px(t, self.y0)
            d.line([(x, top), (x, bottom)], fill=GRID)
            d.line([(x, bottom), (x, bottom + 4)], fill=AXES)
            d.text((x, bottom + 6), tick_label(t, xstep), fill=AXES, font=small, anchor="ma")
        for t in yt:
            _, y = self.px(self.x0, t)
            d.line([(left, y), (right, y)], fill=GRID)
            d.line([(left - 4, y), (left, y)], fill=AXES)
            d.text((left - 6, y), tick_label(t, ystep, self.percent), fill=AXES, font=small, anchor="rm")
        d.rectangle([left, top, right, bottom], outline=AXES)
        d.text(((left + right) / 2, bottom + 22), xlabel, fill=(0, 0, 0), font=label, anchor="ma")
        d.text(((left + right) / 2, top - 8), title, fill=(0, 0, 0), font=font(12), anchor="md")
        rotated = turned_text(ylabel, 10)
        widest = max((small.getlength(tick_label(t, ystep, self.percent)) for t in yt), default=0)
        self.image.paste(rotated, (int(left - 12 - widest - rotated.width), int((top + bottom - rotated.height) / 2)),
                         rotated)

    def line(self, xs: Sequence[float], ys: Sequence[float], color: str, label: str, width: int = 1,
             marker: str | None = None) -> None:
        """A series: its line (unless the marker is "*"), its markers ("o", "*") and its legend entry."""
        pts = [self.px(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
        self.drawn += pts
        c = rgb(color)
        fine = ImageDraw.Draw(self.layer)
        left, top = self.box[0] - MARGIN, self.box[1] - MARGIN
        scaled = [((x - left) * SUPERSAMPLE, (y - top) * SUPERSAMPLE) for x, y in pts]
        if len(scaled) > 1 and marker != "*":
            fine.line(scaled, fill=c, width=round(width * 1.3 * SUPERSAMPLE), joint="curve")
        for x, y in scaled if marker else []:
            r = (7 if marker == "*" else 3.5) * SUPERSAMPLE
            if marker == "*":
                fine.polygon(star(x, y, r), fill=c)
            else:
                fine.ellipse([x - r, y - r, x + r, y + r], fill=c)
        self.legend_items.append((label, c, marker or "-"))

    def flush(self) -> None:
        """Scale the finely drawn data down onto the picture (premultiplied alpha: no dark fringes)."""
        small = self.layer.convert("RGBa").resize((self.layer.width // SUPERSAMPLE, self.layer.height // SUPERSAMPLE),
                                                  Image.BOX).convert("RGBA")
        self.image.paste(small, (self.box[0] - MARGIN, self.box[1] - MARGIN), small)
        self.layer = Image.new("RGBA", self.layer.size, (255, 255, 255, 0))

    def legend(self) -> None:
        """The series' names in a box at the panel's top or bottom right, whichever covers fewer points
        (drawn last: the data goes onto the picture first)."""
        self.flush()
        if not self.legend_items:
            return
        d, f = self.draw, font(9)
        width = max(f.getlength(label) for label, _, _ in self.legend_items) + 34
        height = 16 * len(self.legend_items) + 6
        right = self.box[2] - 8
        corners = (self.box[1] + 8, self.box[3] - 8 - height)  # top, bottom

        def covered(top: float) -> int:
            return sum(right - width - 6 <= x <= right + 6 and top - 6 <= y <= top + height + 6 for x, y in self.drawn)

        top = min(corners, key=covered)
        d.rectangle([right - width, top, right, top + height], fill=(255, 255, 255), outline=(200, 200, 200))
        for i, (label, c, marker) in enumerate(self.legend_items):
            y, x = top + 11 + 16 * i, right - width + 15
            if marker in ("-", "o"):
                d.line([(x - 9, y), (x + 9, y)], fill=c, width=2)
            if marker == "o":
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
            if marker == "*":
                d.polygon(star(x, y, 6), fill=c)
            d.text((right - width + 30, y), label, fill=(0, 0, 0), font=f, anchor="lm")


BLUES = ((247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107))  # matplotlib's "Blues"


def blues(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (…, 3) uint8 colours along matplotlib's "Blues" colour map (5 stops, linear)."""
    v = np.clip(np.nan_to_num(values.astype(np.float64)), 0, 1) * (len(BLUES) - 1)
    lo = np.minimum(v.astype(int), len(BLUES) - 2)
    t = (v - lo)[..., None]
    stops = np.array(BLUES, dtype=np.float64)
    return np.round(stops[lo] * (1 - t) + stops[lo + 1] * t).astype(np.uint8)
