"""User images (PNG, JPEG, arrays) -> MNIST-style uint8 digits: white ink on black, fitted and centred.

MNIST was made by fitting each digit's bounding box into 20x20 with anti-aliasing, then placing it
in a 28x28 field so that its centre of mass sits at the centre (an integer shift: the centres of mass
of the real test set average (14.0, 14.0) with a spread of 0.29 px, which is exactly that rounding).
`prepare_image` repeats those steps for any picture of a digit, whatever its mode, polarity or size.
A picture with no ink (uniform, pure noise, a lone speck) is blank: `is_blank` and `find_blanks`
apply the one rule that `prepare_image` uses, so callers can say "no digit found" instead of guessing.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from typing import Callable, Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.errors import ImageError

try:  # libspng: decodes plain 8-bit colour PNGs (browser canvases) in about half Pillow's time, same pixels
    from pyspng import load as _spng_load
except ImportError:  # pragma: no cover - a platform without its wheel: Pillow decodes everything
    _spng_load = None

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray]

MAX_PIXELS = 40_000_000  # refuse images larger than this (width * height), before decoding them
# Big images are first reduced (JPEG draft, C box reduce) to at most this longest side. The float
# work afterwards costs per pixel: 256 keeps a 280x280 canvas to a quarter of its pixels (about
# half the preparation time, decoding included), while a digit that spans a tenth of a phone
# photo's width still keeps more pixels than the 20 it is resized to.
WORK_SIDE = 256
BOX_FRACTION = 20 / 28  # the digit's longest side fills this fraction of the canvas (20 px of 28)
MIN_CONTRAST = 0.05  # ink less than this far (0..1) from the background means a blank image
MIN_INK_PIXELS = 4  # fewer pixels than this standing out from the paper is a blank (or a speck), not a digit
NOISE_SIGMAS = 5.0  # ...and standing out means this many times the paper's own pixel noise above it
NOISE_FLOOR = 0.1  # ink fainter than this fraction of the darkest ink is background noise
TRIM_MASS = 0.001  # the bounding box ignores this fraction of the ink mass on each side (specks)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's convert("L")
_ORIENTATION = 0x0112  # the EXIF orientation tag
READ_WHOLE = 16 << 20  # image files up to this size are read at once (the PNG fast path needs the bytes)
# PNG colour types libspng decodes here: a 280x280 RGBA canvas in 0.6 of Pillow's time (BENCHMARKS.md).
SPNG_MODES = ("LA", "RGB", "RGBA")


# ----------------------------------------------------------------------------- decoding


def load_image(source: str | os.PathLike[str] | bytes, *, draft_side: int | None = None) -> Image.Image:
    """Decode a file path or encoded bytes into a loaded PIL image (first frame, EXIF-upright).

    Every failure (missing, empty, not an image, truncated, too large) is an `ImageError` with a
    one-line message naming the file. The pixel count is checked from the header, before decoding.

    Args:
        draft_side: for JPEGs, let the decoder shrink by 2, 4 or 8 (`Image.draft`, much faster for
            photos) as long as the longest side stays at least this long.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = f"<{len(source)} bytes>"
        if len(source) == 0:
            raise ImageError(f"{name}: empty image data")
        data = bytes(source)
        return _decode(io.BytesIO(data), name, draft_side, data)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_image expects a path or bytes, not {type(source).__name__}")
    name = os.fspath(source)
    if os.path.isdir(name):
        raise ImageError(f"{name}: is a directory, not an image file")
    try:
        fp = open(name, "rb")
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read the file ({_one_line(exc)})") from None
    with fp:
        size = os.fstat(fp.fileno()).st_size
        if size == 0:
            raise ImageError(f"{name}: empty file")
        if size <= READ_WHOLE:
            try:
                data = fp.read()
            except OSError as exc:
                raise ImageError(f"{name}: cannot read the file ({_one_line(exc)})") from None
            return _decode(io.BytesIO(data), name, draft_side, data)
        return _decode(fp, name, draft_side)


def _decode(fp: io.IOBase, name: str, draft_side: int | None, data: bytes | None = None) -> Image.Image:
    try:
        # Image.open only reads the header; turn Pillow's own bomb warning into an error so that
        # nothing between Pillow's limit and twice it is decoded either.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # "Corrupt EXIF data"
            im = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large to decode safely (limit {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except Exception as exc:  # Pillow's plugins raise many types (struct.error, ...) on bad headers
        raise ImageError(f"{name}: unreadable image header ({_one_line(exc)})") from None
    # Not `with im`: closing would free the pixels, and copying them out costs as much as a small
    # PNG's decoding. The caller closes `fp`; a loaded frame no longer needs it.
    try:
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"{name}: image is {width}x{height} = {width * height:,} pixels, "
                f"over the limit of {MAX_PIXELS:,} (decompression bomb?)"
            )
        if width == 0 or height == 0:
            raise ImageError(f"{name}: image has no pixels ({width}x{height})")
        if data is not None:
            fast = _decode_plain_png(im, data)
            if fast is not None:
                return fast
        try:
            if draft_side and im.format == "JPEG" and max(width, height) > draft_side:
                scale = draft_side / max(width, height)
                im.draft(im.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
            im.seek(0)  # animated GIF/PNG, multi-page TIFF: the first frame
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # broken EXIF
                im.load()
                if im.getexif().get(_ORIENTATION, 1) != 1:
                    im = ImageOps.exif_transpose(im)
                elif getattr(im, "is_animated", False):
                    im = im.copy()  # one frame, free of the file the others live in
                return im
        except Exception as exc:  # truncated data, broken streams, bad EXIF: all mean a corrupt file
            raise ImageError(f"{name}: truncated or corrupt image data ({_one_line(exc)})") from None
    except ImageError:
        im.close()
        raise


def _decode_plain_png(im: Image.Image, data: bytes) -> Image.Image | None:
    """`im`'s pixels decoded by libspng when it is a plain PNG, else None (Pillow decodes it).

    Plain: 8 bits per sample, gray+alpha, RGB or RGBA stored as such (no palette, no transparency
    key), not interlaced, not animated, no EXIF (whose orientation Pillow applies). For those the
    PNG format defines the samples exactly, so both decoders give the same bytes (tests/test_images.py
    compares them). Anything libspng refuses goes to Pillow, whose verdict (pixels or a clear error)
    stands. Gray PNGs stay with Pillow, which decodes them as fast (a 280x280 digit: 0.44 ms either way).
    Not covered: a stream crafted with valid CRCs but a wrong zlib checksum gives libspng's pixels
    where Pillow reports "broken data stream" (checking it would cost a second inflate).
    """
    if _spng_load is None or im.format != "PNG" or im.mode not in SPNG_MODES:
        return None
    if len(im.tile) != 1 or im.tile[0][3] != im.mode or "transparency" in im.info or im.info.get("interlace"):
        return None
    if getattr(im, "is_animated", False) or not _chunks_intact(data):
        return None
    if b"eXIf" in data or b"Raw profile type exif" in data or b"acTL" in data:  # EXIF (Pillow reads both forms), APNG
        return None
    try:
        pixels = _spng_load(data)
    except Exception:  # whatever libspng dislikes, Pillow judges
        return None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[:2] != (im.height, im.width):
        return None
    out = Image.frombuffer(im.mode, im.size, pixels, "raw", im.mode, 0, 1)  # RGBA shares the array; RGB, LA copy it
    out.info = dict(im.info)
    im.close()
    return out


def _chunks_intact(data: bytes) -> bool:
    """Every chunk up to IEND is whole and matches its CRC.

    libspng stops reading once it has every row, so a damaged stream that still fills the rows
    would give garbage where Pillow's zlib reports the damage; the CRCs catch such damage first.
    """
    pos, end, view = 8, len(data), memoryview(data)
    crc32, unpack_from = zlib.crc32, struct.unpack_from
    while pos + 12 <= end:
        (length,) = unpack_from(">I", data, pos)
        stop = pos + 8 + length
        if stop + 4 > end or crc32(view[pos + 4 : stop]) != unpack_from(">I", data, stop)[0]:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = stop + 4
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------------- to arrays

def _pil_to_array(im: Image.Image, name: str, channels: int, upright: bool = False) -> np.ndarray:
    """A PIL image -> an array of shape (H, W) or (H, W, C) with C in 2..4 (gray+alpha, RGB, RGBA).

    `upright`: the image is known to need no EXIF rotation (`load_image` has applied it).
    """
    try:
        if not upright and im.getexif().get(_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("RGBA", "LA") and int(np.asarray(im.getchannel("A")).min()) == 255:
            # Fully opaque (a canvas export, most PNGs): compositing would give the colours back
            # unchanged, so drop the alpha here, in C, and skip the float compositing. (RGBA -> L is
            # RGB -> L on the same bytes, in one pass.)
            im = im.convert("L" if mode == "LA" or channels == 1 else "RGB")
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


_UNIT_U8 = np.arange(256, dtype=np.float32) * np.float32(1 / 255)  # uint8 k -> k / 255 exactly as _unit_range gives it


def _median_u8(values: np.ndarray) -> np.float32:
    """np.median of `_UNIT_U8[values]` for a flat uint8 array, found on the bytes (a partition, no floats)."""
    n = values.size
    k = n // 2
    if n % 2:
        return _UNIT_U8[np.partition(values, k)[k]]
    part = np.partition(values, (k - 1, k))
    # As np.median: the float32 mean of the two middle values.
    return (_UNIT_U8[part[k - 1]] + _UNIT_U8[part[k]]) / np.float32(2)


def _median_counts(counts: np.ndarray) -> np.float32:
    """`_median_u8` of the bytes whose cumulative histogram (256,) this is."""
    n = int(counts[-1])
    k = n // 2
    if n % 2:
        return _UNIT_U8[np.searchsorted(counts, k, side="right")]
    a, b = np.searchsorted(counts, (k - 1, k), side="right")
    return (_UNIT_U8[a] + _UNIT_U8[b]) / np.float32(2)


def _ink_u8(g: np.ndarray) -> np.ndarray | None:
    """`_normalise(*_ink(gray))` for one uint8 picture (H, W), cropped to its nonzero ink; None when blank.

    Every per-pixel step of `_find_ink` and `_normalise` is a function of the pixel's byte alone, so
    it is computed once per byte value (a 256-entry table) and looked up; the medians are partitions
    of the bytes, and since the tables rise monotonically away from the paper, "at least this much
    ink" is one byte comparison. The floats are identical to the float path's (tests/test_images_fast.py
    compares them); the crop drops only exact zeros, which changes neither `_bbox` nor what is resized.
    """
    f = _UNIT_U8
    h, w = g.shape
    small = h * w <= 16_384  # `_sample` is then the whole picture
    counts = np.cumsum(np.bincount(g.reshape(-1), minlength=256))  # one histogram serves several steps
    lo_b, hi_b = int(np.searchsorted(counts, 0, side="right")), int(np.searchsorted(counts, counts[-1] - 1, side="right"))
    if lo_b == hi_b:
        return None  # uniform: no pixel stands out from the paper
    mid = 0.5 * (float(f[lo_b]) + float(f[hi_b]))
    border_bg = float(_median_u8(_border(g)))
    global_bg = float(_median_counts(counts) if small else _median_u8(np.ascontiguousarray(_sample(g)).reshape(-1)))
    paper = border_bg if (border_bg > mid) == (global_bg > mid) else global_bg
    light_paper = paper > mid
    sign = np.float32(-1.0 if light_paper else 1.0)
    lut = np.maximum(sign * (f - np.float32(paper)), 0)  # byte -> ink, as _find_ink computes per pixel
    peak = lut[lo_b] if light_paper else lut[hi_b]  # the table rises away from the paper: the extreme byte
    noise = np.float32(0)  # `_noise`: when over half the neighbour differences are zero, so is their median
    if w >= 2:
        rows = g[:: max(1, h * w // 16_384)]
        same = np.count_nonzero(rows[:, 1:] == rows[:, :-1])
        if same < rows.shape[0] * (w - 1) // 2 + 1:
            noise = _noise(f[g][None])[0]
    level = np.maximum(np.float32(MIN_CONTRAST), np.float32(NOISE_SIGMAS) * noise)
    if peak < MIN_CONTRAST or peak < level:
        return None
    hits = np.flatnonzero(lut >= level)  # pixels standing out: a run of bytes at one end of the histogram
    standing_out = int(counts[hits[-1]]) if light_paper else int(counts[-1] - (counts[hits[0] - 1] if hits[0] else 0))
    if standing_out < MIN_INK_PIXELS:
        return None
    peak = float(peak)
    floor = NOISE_FLOOR * peak
    table = np.clip((lut - np.float32(floor)) * np.float32(1 / (peak - floor)), 0, 1)  # as _normalise
    if small:
        return table[g]
    positive = table > 0
    # _bbox sums the ink in float64. Those sums are exact, whatever their order, when every value is a
    # multiple of the smallest one's last bit (below min / 2**24) and the total (at most h * w) stays
    # under 2**53 of those: then summing the crop alone gives the very same numbers.
    if h * w <= 2.0**29 * float(table[positive].min()):
        mask = _beyond(g, positive, light_paper)
        r = np.flatnonzero(mask.any(axis=1))
        c = np.flatnonzero(mask.any(axis=0))
        g = g[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
    return table[g]


def _beyond(g: np.ndarray, table: np.ndarray, light_paper: bool) -> np.ndarray:
    """Pixels whose byte is True in a monotonic table (a run ending at 0 for light paper, at 255 for dark)."""
    hits = np.flatnonzero(table)
    return g <= hits[-1] if light_paper else g >= hits[0]


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
        cum = np.cumsum(ink.sum(axis=axis, dtype=np.float64)) / total  # non-decreasing: counts are searches
        first = int(np.count_nonzero(cum <= TRIM_MASS))
        last = int(np.count_nonzero(cum < 1 - TRIM_MASS))
        last = min(max(last, first), cum.size - 1)
        out += [first, last + 1]
    return out[0], out[1], out[2], out[3]


def _resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    # Lanczos with a box pre-reduction (reducing_gap): anti-aliased like MNIST's, and fast.
    h, w = plane.shape
    out = Image.frombuffer("F", (w, h), np.ascontiguousarray(plane, dtype=np.float32), "raw", "F", 0, 1).resize(
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


# ----------------------------------------------------------------------------- public


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


def is_blank(source: ImageSource) -> bool:
    """True when a picture holds no digit: no ink stands out from the paper (the rule `prepare_image` uses).

    It takes what `prepare_image` takes, and its output too: `is_blank(prepare_image(x))` is True
    exactly when preparing `x` found no ink (and gave zeros). A prediction for a blank picture is a
    guess, so callers report "no digit found" instead (`mnistlab predict`, a server).
    Uniform pictures, pure noise, fully transparent ones and lone specks are blank.
    """
    arr, name = _source_array(source, 1)
    if arr.dtype == np.uint8 and arr.ndim == 2 and arr.size and arr.size <= MAX_PIXELS:
        return _ink_u8(arr) is None
    split = _split_colour(arr, name)
    return split is None or _ink(split[0]) is None


def find_blanks(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, 3), prepared ones or pixel-CSV rows -> bool (N,): which are blank.

    The same rule as `is_blank`, for many images at once (28,000 CSV rows take about a second).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise ValueError(f"find_blanks expects uint8 images (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    if images.ndim == 3 and len(images) <= 64:
        # A few images (a request, a command line): the byte-table rule, the same answers, far cheaper.
        return np.array([_ink_u8(x) is None for x in images], dtype=bool)
    out = np.zeros(len(images), dtype=bool)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].astype(np.float32) * np.float32(1 / 255)
        gray = x @ _LUMA if x.ndim == 4 else x  # (n, H, W, 3) -> (n, H, W), as _split_colour does
        out[i : i + chunk] = _find_ink(gray)[3]
    return out


def prepared_blanks(images: np.ndarray) -> np.ndarray:
    """Which images that `prepare_image` gave (N, H, W[, C]) are blank: (N,) bool.

    Preparation applies the blank rule to the picture itself and gives zeros exactly for the blank
    ones, so this reads the zeros instead of running the rule again (`find_blanks` is for images
    prepared elsewhere, such as CSV rows). `mnistlab predict` and `mnistlab serve` both read it.
    """
    return ~np.asarray(images).reshape(len(images), -1).any(axis=1)


def prepare_image(source: ImageSource, size: int = 28, channels: int = 1) -> np.ndarray:
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

    arr, name = _source_array(source, channels)
    if channels == 1 and arr.dtype == np.uint8 and arr.ndim == 2 and arr.size and arr.size <= MAX_PIXELS:
        # The common case (any 8-bit picture that PIL gave as gray): byte tables instead of float passes.
        ink = _ink_u8(arr)
        return np.zeros(shape, dtype=np.uint8) if ink is None else _fit(ink, size)[:, :, 0]
    split = _split_colour(arr, name)
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
    if channels == 1:
        return _fit(ink, size)[:, :, 0]

    def colour_planes(top: int, bottom: int, left: int, right: int) -> list[np.ndarray]:
        # Same transform per channel: each channel's distance from the paper's colour, with the
        # gray's polarity and scale, so the colour output's luminance matches the gray output.
        crop = colour[top:bottom, left:right]
        diff = np.maximum(np.float32(sign) * (crop - paper), 0)  # (h, w, 3)
        return [_normalise(diff[:, :, c], peak) for c in range(3)]

    return _fit(ink, size, colour_planes)[:, :, 1:]


def _fit(ink: np.ndarray, size: int, extra: Callable[[int, int, int, int], list[np.ndarray]] | None = None) -> np.ndarray:
    """Normalised ink (H, W) -> uint8 (size, size, P): cropped to the ink, fitted in the box, centred by mass.

    `extra(top, bottom, left, right)` gives more planes (the colour channels) to crop, resize and
    place with the same geometry; P is 1 plus their number. No ink at all gives zeros.
    """
    box = _bbox(ink)
    if box is None:
        return np.zeros((size, size, 1 + (3 if extra else 0)), dtype=np.uint8)
    top, bottom, left, right = box
    planes = [ink[top:bottom, left:right]]
    if extra is not None:
        planes += extra(top, bottom, left, right)
    h, w = planes[0].shape
    target = max(1, round(size * BOX_FRACTION))
    scale = target / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if len(planes) == 1:
        resized = _resize(planes[0], new_w, new_h)[:, :, None]  # (new_h, new_w) -> (new_h, new_w, 1)
    else:
        resized = np.stack([_resize(p, new_w, new_h) for p in planes], axis=2)  # (new_h, new_w, P)
    canvas = _place(resized, resized[:, :, 0], size)
    return np.rint(canvas * 255).astype(np.uint8)


def prepare_batch(sources: Iterable[ImageSource], size: int = 28, channels: int = 1) -> np.ndarray:
    """Prepare many images: uint8 (N, size, size) or (N, size, size, 3)."""
    prepared = [prepare_image(s, size=size, channels=channels) for s in sources]
    if not prepared:
        return np.zeros((0, size, size) if channels == 1 else (0, size, size, 3), dtype=np.uint8)
    return np.stack(prepared)
