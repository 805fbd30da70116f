"""The fast preparation (byte tables for 8-bit pictures) gives exactly what the float code of 02c9de9 gave.

`prepare_image`, `is_blank` and `find_blanks` now take a shortcut for any picture PIL hands over as
8-bit gray (every PNG/JPEG drawing, MNIST digits, phone photos). The oracle at the bottom of this file
is the preparation as it was before (commit 02c9de9), copied verbatim; every case below must come out
identical, byte for byte, from both, and so must the blank rule.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from mnistlab.data import images
from mnistlab.data.images import (
    BOX_FRACTION, MAX_PIXELS, MIN_CONTRAST, MIN_INK_PIXELS, NOISE_FLOOR, NOISE_SIGMAS, TRIM_MASS, WORK_SIDE,
    ImageSource, _one_line, load_image,
)
from mnistlab.errors import ImageError


def png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def canvas_drawing(i: int, size: int = 280, mode: str = "RGBA", ink="black", paper=(255, 255, 255, 255)) -> Image.Image:
    """Drawings like the serve page's: strokes 22 px wide, of a 1, a 0 or a 7, at random places."""
    rng = np.random.default_rng(i)
    im = Image.new(mode, (size, size), paper if mode == "RGBA" else paper[0])
    d = ImageDraw.Draw(im)
    s = size / 280
    cx, cy = rng.uniform(100, 180) * s, rng.uniform(100, 180) * s
    kind = i % 3
    if kind == 0:
        d.line([(cx, cy - 90 * s), (cx + rng.uniform(-20, 20) * s, cy + 90 * s)], fill=ink, width=max(1, int(22 * s)))
    elif kind == 1:
        pts = [(cx + 55 * s * math.sin(t / 15 * math.pi), cy - 85 * s * math.cos(t / 15 * math.pi)) for t in range(31)]
        d.line(pts, fill=ink, width=max(1, int(22 * s)), joint="curve")
    else:
        d.line([(cx - 70 * s, cy - 85 * s), (cx + 70 * s, cy - 85 * s), (cx - 20 * s, cy + 95 * s)], fill=ink,
               width=max(1, int(22 * s)), joint="curve")
    return im


def cases() -> dict[str, ImageSource]:
    rng = np.random.default_rng(0)
    from mnistlab.data.raw import load_raw

    mnist = load_raw("mnist").test_x[:40]
    out: dict[str, ImageSource] = {}
    for i in range(12):
        out[f"canvas-png-{i}"] = png(canvas_drawing(i))
    out["canvas-white-on-black"] = png(canvas_drawing(3, ink="white", paper=(0, 0, 0, 255)))
    out["canvas-gray-ink"] = png(canvas_drawing(4, ink=(120, 120, 120, 255)))
    out["canvas-L"] = canvas_drawing(5, mode="L", paper=(255,))
    out["canvas-RGB-jpeg"] = png(canvas_drawing(6).convert("RGB"), "JPEG", quality=85)
    out["big-jpeg-draft"] = png(canvas_drawing(7, size=1200).convert("RGB"), "JPEG", quality=90)
    out["big-png-reduced"] = png(canvas_drawing(8, size=1000))
    out["huge-but-allowed"] = canvas_drawing(9, size=3000, mode="L", paper=(255,))
    out["transparent-drawing"] = png(canvas_drawing(10, paper=(0, 0, 0, 0)))
    out["half-alpha"] = png(canvas_drawing(11, paper=(255, 255, 255, 128)))
    out["one-pixel-alpha"] = png(Image.new("RGBA", (280, 280), (255, 255, 255, 254)))
    pal = canvas_drawing(1, mode="L", paper=(255,)).convert("P")
    out["palette"] = png(pal)
    out["palette-transparency"] = png(pal, transparency=255)
    out["16-bit"] = Image.fromarray((np.asarray(canvas_drawing(2, mode="L", paper=(255,))).astype(np.uint16) * 257))
    out["float-array"] = np.asarray(canvas_drawing(0, mode="L", paper=(255,))).astype(np.float32) / 255
    out["rgb-array"] = np.asarray(canvas_drawing(1).convert("RGB"))
    out["exif-rotated"] = _rotated(canvas_drawing(2).convert("RGB"))
    out["blank-white"] = png(Image.new("RGBA", (280, 280), "white"))
    out["blank-black"] = np.zeros((28, 28), dtype=np.uint8)
    out["blank-gray"] = np.full((50, 70), 77, dtype=np.uint8)
    out["all-ink"] = np.zeros((280, 280), dtype=np.uint8)
    out["all-ink-but-corner"] = np.pad(np.zeros((270, 270), np.uint8), 5, constant_values=255)
    out["noise"] = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    out["gaussian-paper"] = np.clip(200 + rng.normal(0, 6, (280, 280)), 0, 255).astype(np.uint8)
    noisy = np.asarray(canvas_drawing(3, mode="L", paper=(255,))).astype(np.float64) * 0.8 + rng.normal(0, 8, (280, 280))
    out["noisy-photo-like"] = np.clip(noisy + 30, 0, 255).astype(np.uint8)
    speck = np.full((280, 280), 255, np.uint8)
    speck[100:102, 140] = 0
    out["tiny-speck"] = speck
    dot = np.full((280, 280), 255, np.uint8)
    dot[100:104, 140:143] = 0
    out["small-dot"] = dot
    faint = np.full((100, 100), 200, np.uint8)
    faint[30:70, 45:55] = 187  # 13/255 of contrast: just above MIN_CONTRAST
    out["faint-stroke"] = faint
    out["one-pixel"] = np.array([[0]], dtype=np.uint8)
    out["one-row"] = np.r_[np.full(40, 255), np.zeros(10), np.full(40, 255)].astype(np.uint8)[None]
    out["one-column"] = out["one-row"].T.copy()
    out["tiny-3x3"] = np.array([[255, 0, 255], [0, 0, 0], [255, 0, 255]], dtype=np.uint8)
    out["odd-sizes"] = np.asarray(canvas_drawing(4, size=131, mode="L", paper=(255,)))[:, 3:]
    out["wide"] = np.asarray(canvas_drawing(5, mode="L", paper=(255,)).resize((900, 120)))
    out["two-gray-levels"] = np.where(np.asarray(canvas_drawing(6, mode="L", paper=(255,))) < 128, 100, 160).astype(np.uint8)
    for i, digit in enumerate(mnist):
        out[f"mnist-{i}"] = digit
        if i < 10:
            out[f"mnist-inverted-png-{i}"] = png(Image.fromarray(255 - digit))
    return out


def _rotated(im: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return png(im, "JPEG", exif=exif)


CASES = cases()


@pytest.mark.parametrize("name", list(CASES))
def test_prepare_image_is_unchanged_from_the_float_code(name):
    source = CASES[name]
    expected = oracle_prepare_image(source)
    assert np.array_equal(images.prepare_image(source), expected)
    assert images.is_blank(source) == oracle_is_blank(source)


@pytest.mark.parametrize("name", [n for n in CASES if "array" not in n][:20])
def test_other_sizes_and_colour_are_unchanged(name):
    source = CASES[name]
    assert np.array_equal(images.prepare_image(source, size=32), oracle_prepare_image(source, size=32))
    assert np.array_equal(images.prepare_image(source, channels=3), oracle_prepare_image(source, channels=3))


def test_the_cases_cover_blank_and_inked_pictures_on_both_paths():
    blank = {n: oracle_is_blank(s) for n, s in CASES.items()}
    assert blank["blank-white"] and blank["tiny-speck"] and blank["noise"] and blank["gaussian-paper"]
    assert not blank["canvas-png-0"] and not blank["small-dot"] and not blank["faint-stroke"] and not blank["all-ink-but-corner"]
    assert not blank["noisy-photo-like"]
    noisy = CASES["noisy-photo-like"][::2, ::2]  # as WORK_SIDE reduces it: most neighbours differ, so
    assert np.count_nonzero(np.diff(noisy.astype(int), axis=1)) > noisy.size / 2  # the float noise median runs


def test_find_blanks_fast_and_batched_paths_agree_with_the_float_rule():
    rng = np.random.default_rng(1)
    prepared = np.stack([oracle_prepare_image(s) for s in CASES.values()])
    specks = np.zeros((20, 28, 28), np.uint8)
    for k in range(20):  # 1..6 lit pixels of random brightness: around the MIN_INK_PIXELS boundary
        idx = rng.choice(784, size=1 + k % 6, replace=False)
        specks[k].flat[idx] = rng.integers(5, 256, size=idx.size)
    noise = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    everything = np.concatenate([prepared, specks, noise])
    expected = oracle_find_blanks(everything)
    assert expected.any() and not expected.all()
    assert np.array_equal(images.find_blanks(everything), expected)  # over 64: the batched float rule
    for i in range(0, len(everything), 50):  # up to 64: the byte-table rule
        assert np.array_equal(images.find_blanks(everything[i : i + 50]), expected[i : i + 50])


def test_blank_rule_edges_from_the_table_match_the_float_rule():
    """Specks at exactly MIN_INK_PIXELS, contrast at exactly MIN_CONTRAST: the same side of each line."""
    for count in range(MIN_INK_PIXELS - 1, MIN_INK_PIXELS + 2):
        for value in (12, 13, 14, 255):  # 13/255 is just above 0.05, 12/255 just below
            x = np.zeros((28, 28), np.uint8)
            x.flat[:: 784 // count][:count] = value
            assert images.find_blanks(x[None])[0] == oracle_find_blanks(x[None])[0], (count, value)
            big = np.kron(x, np.ones((6, 6), np.uint8))  # 168x168: the large-picture path
            assert images.is_blank(big) == oracle_is_blank(big), (count, value)


def test_medians_of_bytes_equal_numpy_medians():
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 10, 1001, 4096):
        v = rng.integers(0, 256, n, dtype=np.uint8)
        expected = np.median(v.astype(np.float32) * np.float32(1 / 255))
        assert images._median_u8(v) == expected
        assert images._median_counts(np.cumsum(np.bincount(v, minlength=256))) == expected


def test_bad_input_still_gets_the_same_errors():
    with pytest.raises(ImageError, match="no pixels"):
        images.prepare_image(np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageError, match="over the limit"):
        images.prepare_image(np.zeros((MAX_PIXELS // 1000 + 1, 1000), np.float32))


# ----------------------------------------------------------------------------- the oracle: 02c9de9, verbatim

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_ORIENTATION = 0x0112

def _pil_to_array(im: Image.Image, name: str, channels: int, upright: bool = False) -> np.ndarray:
    """A PIL image -> an array of shape (H, W) or (H, W, C) with C in 2..4 (gray+alpha, RGB, RGBA).

    `upright`: the image is known to need no EXIF rotation (`load_image` has applied it).
    """
    try:
        if not upright and im.getexif().get(_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("RGBA", "LA") and im.getextrema()[-1][0] == 255:
            # Fully opaque (a canvas export, most PNGs): compositing would give the colours back
            # unchanged, so drop the alpha here, in C, and skip the float compositing.
            im = im.convert("RGB" if mode == "RGBA" else "L")
            mode = im.mode
        if mode.startswith("I;16") or mode in ("I", "F"):
            pass  # numpy reads them as ints or floats, scaled from their own range below
        elif mode in ("P", "PA") or "transparency" in im.info:
            # Palette transparency (and L/RGB with a transparent colour key) becomes a real alpha.
            has_alpha = mode == "PA" or "transparency" in im.info or (mode == "P" and im.palette.mode == "RGBA")
            im = im.convert("RGBA" if has_alpha else "RGB")
        elif mode in ("1", "La"):
            im = im.convert("L" if mode == "1" else "LA")
        elif mode == "RGBa":
            im = im.convert("RGBA")
        elif mode == "RGB" and channels == 1:
            im = im.convert("L")  # the C conversion is cheaper than float luminance in numpy
        elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        # Shrink big images early: the result is 20 px wide, and a C box reduce is far cheaper than
        # float work on every pixel of a photo.
        factor = -(-max(im.size) // WORK_SIDE)  # ceil: the longest side ends at most WORK_SIDE
        if factor >= 2:
            im = (im.convert("I") if im.mode.startswith("I;16") else im).reduce(factor)
        return np.asarray(im)
    except ImageError:
        raise
    except Exception as exc:  # a lazily opened image handed to us may fail to decode here
        raise ImageError(f"{name}: cannot convert the image ({_one_line(exc)})") from None


def _unit_range(x: np.ndarray) -> np.ndarray:
    """Colour values -> float32 in [0, 1] (all zeros when they hold no variation)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1 / 255)
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    x = x.astype(np.float64)  # 16/32-bit ints and floats of any range: scale their own range to 0..1
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    values = x if all_finite else x[finite]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.float32)  # blank, unless an alpha channel draws the digit
    y = ((x - lo) / (hi - lo)).astype(np.float32)
    if not all_finite:
        fill = (float(np.median(values)) - lo) / (hi - lo)  # NaN reads as background
        y = np.nan_to_num(y, nan=fill, posinf=1.0, neginf=0.0)
    return y


def _unit_alpha(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        top = 255 if a.dtype == np.uint8 else max(int(a.max(initial=0)), 1)
        return np.clip(a.astype(np.float32) / np.float32(top), 0.0, 1.0)
    a = np.nan_to_num(a.astype(np.float32), nan=1.0, posinf=1.0, neginf=0.0)
    top = float(a.max(initial=0.0))
    return np.clip(a / top if top > 1 else a, 0.0, 1.0)


def _border(x: np.ndarray) -> np.ndarray:
    """The outermost two rows and columns (or one, for tiny images), flattened to (N, ...)."""
    k = 2 if min(x.shape[0], x.shape[1]) >= 8 else 1
    return np.concatenate([
        x[:k].reshape(-1, *x.shape[2:]), x[-k:].reshape(-1, *x.shape[2:]),
        x[k:-k, :k].reshape(-1, *x.shape[2:]), x[k:-k, -k:].reshape(-1, *x.shape[2:]),
    ])


def _sample(x: np.ndarray, num: int = 16_384) -> np.ndarray:
    """A strided subsample of at most about `num` pixels: medians of it are as good and far cheaper."""
    step = max(1, int(np.ceil((x.shape[0] * x.shape[1] / num) ** 0.5)))
    return x[::step, ::step]


def _split_colour(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(H,W) or (H,W,C) array -> (gray (H,W), colour (H,W,3)) floats in [0,1], alpha composited.

    Returns None for a fully transparent image.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[2] <= 4):
        raise ImageError(f"{name}: expected an array of shape (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageError(f"{name}: image is {arr.shape[1]}x{arr.shape[0]} pixels, over the limit of {MAX_PIXELS:,}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ImageError(f"{name}: unsupported pixel type {arr.dtype}")

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    colour_part = arr if channels == 1 else arr[:, :, : 1 if channels == 2 else 3]
    colour = _unit_range(colour_part)
    if colour.ndim == 2:
        colour = colour[:, :, None]  # (H, W) -> (H, W, 1)
    if channels in (2, 4):
        alpha = _unit_alpha(arr[:, :, -1])[:, :, None]  # (H, W) -> (H, W, 1)
        colour = _composite(colour, alpha)
        if colour is None:
            return None
    if colour.shape[2] == 3:
        gray = colour @ _LUMA
    else:
        gray = colour[:, :, 0]
        colour = np.broadcast_to(colour, gray.shape + (3,))  # (H, W, 1) -> (H, W, 3), a view
    return gray, colour


def _composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """Flatten transparency onto a matte that keeps the ink visible.

    An opaque border gives its own (median) colour as the matte, so transparent holes look like
    paper. A transparent border means a drawing on nothing: dark strokes go onto white, light
    strokes onto black (compositing white strokes onto white would erase the digit).
    """
    border_alpha = _border(alpha)[:, 0]
    if np.median(border_alpha) > 0.5:
        border = _border(colour)
        matte = np.median(border[border_alpha > 0.5], axis=0)
    else:
        solid = _sample(alpha)[:, :, 0] > 0.5
        if not solid.any():
            return None  # fully transparent
        ink = float(_sample(colour)[solid].mean())
        matte = np.full(colour.shape[2], 1.0 if ink < 0.5 else 0.0, dtype=np.float32)
    matte = matte.astype(np.float32)
    return colour * alpha + matte * (1 - alpha)


# ----------------------------------------------------------------------------- geometry


def _noise(gray: np.ndarray) -> np.ndarray:
    """The pixel noise of each picture's paper, (N, H, W) -> (N,), as a Gaussian sigma.

    From the differences of horizontal neighbours: they cancel smooth shading (a photo's light
    falloff) and are zero on clean paper, and their median ignores the strokes' edges, which cover
    far less than half of any picture of a digit. For i.i.d. noise of deviation s a difference has
    deviation s * sqrt(2), and the median of |d| is 0.6745 of that.
    """
    n, h, w = gray.shape
    if w < 2:
        return np.zeros(n, dtype=np.float32)
    step = max(1, h * w // 16_384)  # whole rows, subsampled: neighbours stay neighbours
    d = np.abs(np.diff(gray[:, ::step], axis=2)).reshape(n, -1)
    return np.median(d, axis=1) / np.float32(0.6745 * 2**0.5)


def _find_ink(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gray [0,1] pictures (N, H, W) -> (ink, sign, peak, blank), ink = max(sign * (gray - paper), 0).

    The one blank rule (`is_blank`, `find_blanks` and `prepare_image` all come here): a picture is
    blank when fewer than MIN_INK_PIXELS pixels stand out from its paper by MIN_CONTRAST and by
    NOISE_SIGMAS times the paper's own noise. So a uniform picture, one of uniform or Gaussian noise,
    or a lone speck is blank, while a thin or a tiny stroke is not.
    """
    n = gray.shape[0]
    lo, hi = gray.min(axis=(1, 2)), gray.max(axis=(1, 2))
    mid = 0.5 * (lo.astype(np.float64) + hi)
    planes = np.moveaxis(gray, 0, -1)  # (N, H, W) -> (H, W, N): the helpers take the picture's axes first
    # (M, N) -> (N, M), contiguous: medians along the last axis are several times faster.
    border_bg = np.median(np.ascontiguousarray(_border(planes).T), axis=1).astype(np.float64)
    global_bg = np.median(np.ascontiguousarray(_sample(planes).reshape(-1, n).T), axis=1).astype(np.float64)
    # The frame decides the paper level, unless the interior disagrees about which side of the
    # range is paper: a digit cropped so tight that its strokes fill the frame, say.
    paper = np.where((border_bg > mid) == (global_bg > mid), border_bg, global_bg)
    sign = np.where(paper > mid, -1.0, 1.0).astype(np.float32)  # light paper: dark pixels are ink (MNIST is white on black)
    ink = np.maximum(sign[:, None, None] * (gray - paper.astype(np.float32)[:, None, None]), 0)
    peak = ink.max(axis=(1, 2))
    level = np.maximum(np.float32(MIN_CONTRAST), np.float32(NOISE_SIGMAS) * _noise(gray))
    standing_out = np.count_nonzero(ink >= level[:, None, None], axis=(1, 2))
    blank = (peak < MIN_CONTRAST) | (peak < level) | (standing_out < MIN_INK_PIXELS)
    return ink, sign, peak, blank


def _ink(gray: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """One gray [0,1] picture (H, W) -> (ink, sign, peak) as `_find_ink` finds them; None when blank."""
    ink, sign, peak, blank = _find_ink(gray[None])
    return None if blank[0] else (ink[0], float(sign[0]), float(peak[0]))


def _normalise(x: np.ndarray, peak: float) -> np.ndarray:
    """Ink in [0, peak] -> [0, 1], with the faint noise floor cut to exact zero."""
    floor = NOISE_FLOOR * peak
    return np.clip((x - np.float32(floor)) * np.float32(1 / (peak - floor)), 0, 1)


def _bbox(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the ink, ignoring a sliver of mass on each side (specks)."""
    total = float(ink.sum(dtype=np.float64))
    if total <= 0:
        return None
    out = []
    for axis in (1, 0):
        cum = np.cumsum(ink.sum(axis=axis, dtype=np.float64)) / total
        first = int(np.searchsorted(cum, TRIM_MASS, side="right"))
        last = int(np.searchsorted(cum, 1 - TRIM_MASS, side="left"))
        last = min(max(last, first), cum.size - 1)
        out += [first, last + 1]
    return out[0], out[1], out[2], out[3]


def _resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    # Lanczos with a box pre-reduction (reducing_gap): anti-aliased like MNIST's, and fast.
    out = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS, reducing_gap=2.0
    )
    return np.clip(np.asarray(out), 0, 1)  # Lanczos rings slightly past 0 and 1


def _place(planes: np.ndarray, weight: np.ndarray, size: int) -> np.ndarray:
    """Paste (h, w, P) planes into a (size, size, P) canvas with the weight's centre of mass at the centre."""
    h, w = weight.shape
    total = float(weight.sum(dtype=np.float64))
    if total > 0:
        cy = float(weight.sum(axis=1) @ np.arange(h)) / total
        cx = float(weight.sum(axis=0) @ np.arange(w)) / total
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    # Round half up (Python's round() goes to even, which would bias the shift by the parity).
    top = min(max(int(np.floor(size / 2 - cy + 0.5)), 0), size - h)
    left = min(max(int(np.floor(size / 2 - cx + 0.5)), 0), size - w)
    canvas = np.zeros((size, size, planes.shape[2]), dtype=np.float32)
    canvas[top : top + h, left : left + w] = planes
    return canvas


def _source_array(source: ImageSource, channels: int) -> tuple[np.ndarray, str]:
    """Any accepted source -> (array (H, W) or (H, W, C), name for messages); big pictures already reduced."""
    if isinstance(source, np.ndarray):
        arr, name = source, "<array>"
        if arr.dtype == np.uint8 and arr.ndim in (2, 3) and arr.size and (arr.ndim == 2 or 2 <= arr.shape[2] <= 4):
            # Through PIL: its C conversions and box reduce make big photos cheap.
            arr = _pil_to_array(Image.fromarray(np.ascontiguousarray(arr)), name, channels)
        return arr, name
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        return _pil_to_array(source, name, channels), name
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"<{len(source)} bytes>"
    return _pil_to_array(load_image(source, draft_side=WORK_SIDE // 2), name, channels, upright=True), name


def oracle_is_blank(source: ImageSource) -> bool:
    """True when a picture holds no digit: no ink stands out from the paper (the rule `prepare_image` uses).

    It takes what `prepare_image` takes, and its output too: `is_blank(prepare_image(x))` is True
    exactly when preparing `x` found no ink (and gave zeros). A prediction for a blank picture is a
    guess, so callers report "no digit found" instead (`mnistlab predict`, a server).
    Uniform pictures, pure noise, fully transparent ones and lone specks are blank.
    """
    split = _split_colour(*_source_array(source, 1))
    return split is None or _ink(split[0]) is None


def oracle_find_blanks(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, 3), prepared ones or pixel-CSV rows -> bool (N,): which are blank.

    The same rule as `is_blank`, for many images at once (28,000 CSV rows take about a second).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise ValueError(f"find_blanks expects uint8 images (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    out = np.zeros(len(images), dtype=bool)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].astype(np.float32) * np.float32(1 / 255)
        gray = x @ _LUMA if x.ndim == 4 else x  # (n, H, W, 3) -> (n, H, W), as _split_colour does
        out[i : i + chunk] = _find_ink(gray)[3]
    return out


def oracle_prepare_image(source: ImageSource, size: int = 28, channels: int = 1) -> np.ndarray:
    """Any picture of one digit -> uint8 (size, size) (or (size, size, 3)) prepared like MNIST.

    Grayscale for the geometry, inverted when the paper is light, cropped to the ink, fitted into a
    20/28 * size box keeping the aspect ratio, and centred by centre of mass. A blank image (see
    `is_blank`) gives zeros. Undecodable or unusable input raises `ImageError`.

    Args:
        source: a path, encoded bytes, a PIL image, or an (H, W) / (H, W, C) array of any dtype
            (C in 1..4: gray, gray+alpha, RGB, RGBA; ints and floats are scaled from their range).
        channels: 1 for gray, 3 to keep colour (same geometry; inverted with the gray when the
            paper is light, so the background is always black).
    """
    if not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    size = int(size)
    shape = (size, size) if channels == 1 else (size, size, 3)

    split = _split_colour(*_source_array(source, channels))
    if split is None:
        return np.zeros(shape, dtype=np.uint8)
    gray, colour = split
    found = _ink(gray)
    if found is None:
        return np.zeros(shape, dtype=np.uint8)
    ink, sign, peak = found
    if channels == 3:
        # The paper's colour: the median colour of pixels that the gray calls background.
        is_paper = _sample(ink) < NOISE_FLOOR * peak
        samples = _sample(colour)[is_paper] if is_paper.any() else _border(colour)
        paper = np.median(samples, axis=0).astype(np.float32)
    ink = _normalise(ink, peak)
    box = _bbox(ink)
    if box is None:
        return np.zeros(shape, dtype=np.uint8)
    top, bottom, left, right = box
    ink = ink[top:bottom, left:right]

    planes = [ink]
    if channels == 3:
        # Same transform per channel: each channel's distance from the paper's colour, with the
        # gray's polarity and scale, so the colour output's luminance matches the gray output.
        crop = colour[top:bottom, left:right]
        diff = np.maximum(np.float32(sign) * (crop - paper), 0)  # (h, w, 3)
        planes += [_normalise(diff[:, :, c], peak) for c in range(3)]

    h, w = ink.shape
    target = max(1, round(size * BOX_FRACTION))
    scale = target / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.stack([_resize(p, new_w, new_h) for p in planes], axis=2)  # (new_h, new_w, P)
    canvas = _place(resized, resized[:, :, 0], size)
    out = canvas[:, :, 0] if channels == 1 else canvas[:, :, 1:]
    return np.rint(out * 255).astype(np.uint8)
