"""prepare_image turns any picture of a digit into an MNIST-style 28x28; load_image refuses bad files."""

from __future__ import annotations

import gzip
import io
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from mnistlab.data import images
from mnistlab.data.images import load_image, prepare_batch, prepare_image
from mnistlab.errors import ImageError


def draw_seven(canvas=(400, 300), box=(120, 40, 300, 260), ink=0, paper=255, mode="L") -> Image.Image:
    """A thick '7' drawn inside box = (left, top, right, bottom) on a canvas of (width, height)."""
    im = Image.new(mode, canvas, paper)
    left, top, right, bottom = box
    width = max(2, (bottom - top) // 9)
    ImageDraw.Draw(im).line(
        [(left, top + width // 2), (right, top + width // 2), (left + (right - left) * 0.35, bottom)],
        fill=ink, width=width, joint="curve",
    )
    return im


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    x = x.astype(np.float64)
    return (x.sum(1) @ np.arange(x.shape[0])) / x.sum(), (x.sum(0) @ np.arange(x.shape[1])) / x.sum()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return prepare_image(draw_seven())


# ----------------------------------------------------------------------------- geometry


def draw_one(canvas=(400, 300)) -> Image.Image:
    """A thick '1' with a flag and a foot, black on white: its mass sits near its box's centre."""
    im = Image.new("L", canvas, 255)
    draw = ImageDraw.Draw(im)
    draw.line([(200, 30), (200, 270)], fill=0, width=26)
    draw.line([(200, 40), (165, 75)], fill=0, width=22)
    draw.line([(160, 262), (240, 262)], fill=0, width=18)
    return im


@pytest.mark.parametrize("shape", ["one", "zero"])
def test_black_on_white_digit_becomes_centred_white_on_black(shape):
    if shape == "one":
        im = draw_one()
    else:
        im = Image.new("L", (400, 300), 255)
        ImageDraw.Draw(im).ellipse((130, 40, 270, 260), outline=0, width=30)
    x = prepare_image(im)
    assert x.shape == (28, 28) and x.dtype == np.uint8
    assert x.max() == 255 and x[0, 0] == 0
    rows, cols = np.nonzero(x)
    # Inside the central 20x20 box, give or take the whole-pixel rounding of the centring shift.
    slack = 0 if shape == "one" else 1
    assert rows.min() >= 4 - slack and rows.max() <= 23 + slack
    assert cols.min() >= 4 - slack and cols.max() <= 23 + slack
    assert max(np.ptp(rows), np.ptp(cols)) + 1 == 20  # the longest side fills the 20 px box
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_top_heavy_digit_is_centred_by_mass_not_by_box(reference):
    # MNIST centres the mass: a '7' sits low in the field, its bar above the middle.
    rows, cols = np.nonzero(reference)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 == 20 and rows.max() <= 27
    assert rows.min() + rows.max() > 2 * 14 - 1
    cy, cx = centre_of_mass(reference)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


@pytest.mark.parametrize("canvas, box", [
    ((400, 300), (20, 10, 200, 230)),  # top-left
    ((1200, 900), (760, 400, 1120, 840)),  # big, bottom-right
    ((90, 70), (30, 8, 75, 63)),  # small
    ((180, 220), (0, 0, 180, 220)),  # strokes touch the frame
])
def test_same_digit_at_other_sizes_and_positions_matches(reference, canvas, box):
    assert corr(prepare_image(draw_seven(canvas, box)), reference) > 0.9


def test_light_ink_on_dark_paper_is_not_inverted(reference):
    assert corr(prepare_image(draw_seven(ink=255, paper=0)), reference) > 0.95
    assert corr(prepare_image(draw_seven(ink=80, paper=170)), reference) > 0.95  # low contrast, gray


def test_specks_and_faint_noise_are_ignored(reference):
    rng = np.random.default_rng(0)
    x = np.asarray(draw_seven(), dtype=np.float32)
    x += rng.normal(0, 6, x.shape)  # paper grain
    x[5:8, 390:393] = 0  # a dark speck far from the digit
    x[290:292, 3:5] = 0
    out = prepare_image(np.clip(x, 0, 255).astype(np.uint8))
    assert corr(out, reference) > 0.95


def test_blank_images_give_zeros_without_warnings():
    rgba_clear = np.zeros((50, 40, 4), np.uint8)
    blanks = [Image.new("L", (60, 40), 255), Image.new("RGB", (60, 40)), np.full((30, 30), 0.5, np.float32),
              np.full((9, 9), np.nan, np.float32), rgba_clear, np.zeros((1, 1), np.uint16),
              np.full((64, 64), 250, np.uint8) - np.eye(64, dtype=np.uint8)]  # contrast of 1/255
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for blank in blanks:
            out = prepare_image(blank)
            assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() == 0
        assert prepare_image(blanks[0], channels=3).shape == (28, 28, 3)


def test_other_sizes_scale_the_box():
    x = prepare_image(draw_seven(), size=56)
    rows, cols = np.nonzero(x)
    assert x.shape == (56, 56) and max(np.ptp(rows), np.ptp(cols)) + 1 == 40
    assert np.allclose(centre_of_mass(x), (28, 28), atol=1)


def test_colour_output_keeps_colour_and_matches_gray(reference):
    # Blue ink on black: the digit stays blue; its luminance follows the gray pipeline's geometry.
    blue = np.zeros((300, 400, 3), np.uint8)
    blue[..., 2] = np.asarray(draw_seven(ink=255, paper=0))
    out = prepare_image(blue, channels=3)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert out[..., 2].max() == 255 and out[..., :2].max() == 0
    assert corr(out[..., 2], reference) > 0.95
    # Black ink on white paper in RGB: inverted like the gray, so all three channels equal it.
    out = prepare_image(draw_seven().convert("RGB"), channels=3)
    assert np.abs(out.astype(int) - reference[..., None]).max() <= 1


# ----------------------------------------------------------------------------- modes and formats


def _as_mode(mode: str) -> Image.Image:
    gray = draw_seven()
    a = np.asarray(gray)
    if mode == "P+transparency":  # palette image whose transparent background hides a black colour
        im = Image.fromarray(np.where(a < 128, 1, 0).astype(np.uint8), mode="P")
        im.putpalette([0, 0, 0, 10, 10, 10])
        im.info["transparency"] = 0
        return im
    if mode == "RGBA":  # black strokes on a fully transparent background
        rgba = np.zeros(a.shape + (4,), np.uint8)
        rgba[..., 3] = 255 - a
        return Image.fromarray(rgba)
    if mode == "RGBA-white-ink":  # white strokes on transparent: must not vanish onto white
        rgba = np.full(a.shape + (4,), 255, np.uint8)
        rgba[..., 3] = 255 - a
        return Image.fromarray(rgba)
    if mode == "LA":
        return Image.merge("LA", [gray, Image.new("L", gray.size, 255)])
    if mode == "I;16":  # 12-bit data in 16 bits, a typical scientific camera
        return Image.fromarray((a.astype(np.uint16) * 16))
    if mode == "I":
        return Image.fromarray(a.astype(np.int32) * 1000 - 70_000)
    if mode == "F":
        return Image.fromarray(a.astype(np.float32) / 255)
    if mode == "1":
        return gray.convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return gray.convert("RGB").convert("P")
    return gray.convert(mode)  # RGB, CMYK


MODES = ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "RGBA-white-ink", "CMYK", "I;16", "I", "F"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_prepares_alike(reference, mode):
    im = _as_mode(mode)
    assert corr(prepare_image(im), reference) > 0.95
    assert prepare_image(im, channels=3).shape == (28, 28, 3)
    # The same through an encoder and load_image (TIFF keeps CMYK, F and I; PNG the others).
    fmt = "TIFF" if im.mode in ("CMYK", "F", "I") else "PNG"
    decoded = load_image(encode(im, fmt))
    assert corr(prepare_image(decoded), reference) > 0.95


def test_high_bit_depth_alpha_drawing_and_big_16_bit(reference):
    # Constant colour, the digit drawn only by a float alpha channel (a canvas export).
    a = 1 - np.asarray(draw_seven(), dtype=np.float32) / 255
    la = np.stack([np.zeros_like(a), a], axis=2)  # (H, W, 2): gray + alpha
    assert corr(prepare_image(la), reference) > 0.95
    big16 = draw_seven((1600, 1200), (480, 160, 1200, 1040))
    big16 = Image.fromarray(np.asarray(big16).astype(np.uint16) * 257)
    assert big16.mode.startswith("I;16")
    assert corr(prepare_image(big16), reference) > 0.95


def test_exif_orientation_is_applied(reference):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    stored = draw_seven().transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "PNG", exif=exif.tobytes())
    assert load_image(data).size == (400, 300)
    assert corr(prepare_image(data), reference) > 0.95


def test_animated_gif_uses_the_first_frame(reference):
    one = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(one).line([(200, 40), (200, 260)], fill=0, width=24)
    data = encode(draw_seven(), "GIF", save_all=True, append_images=[one], duration=100, loop=0)
    assert corr(prepare_image(data), reference) > 0.95


def test_big_jpeg_is_fast_and_right(reference):
    photo = draw_seven((2000, 1500), (600, 200, 1500, 1300)).convert("RGB")
    data = encode(photo, "JPEG", quality=90)
    prepare_image(data)  # warm up
    start = time.process_time()  # CPU seconds: the other test worker may hold the cores meanwhile
    out = prepare_image(data)
    elapsed = time.process_time() - start
    assert corr(out, reference) > 0.95
    assert elapsed < 0.25  # ~5 ms here; generous for a busy 2-core machine


def test_paths_and_pil_and_arrays_agree(tmp_path, reference):
    path = tmp_path / "seven.png"
    draw_seven().save(path)
    for source in (path, str(path), path.read_bytes(), Image.open(path), np.asarray(draw_seven())):
        assert np.array_equal(prepare_image(source), reference)


def test_prepare_batch(tmp_path, reference):
    batch = prepare_batch([draw_seven(), np.zeros((5, 5))])
    assert batch.shape == (2, 28, 28) and batch.dtype == np.uint8
    assert np.array_equal(batch[0], reference) and batch[1].max() == 0
    assert prepare_batch([draw_seven()], channels=3).shape == (1, 28, 28, 3)
    assert prepare_batch([], size=16).shape == (0, 16, 16)


def test_mnist_digits_survive_a_round_trip(shared_data):
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        digits = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:50]
    scores, shifted = [], []
    for d in digits:
        big = Image.fromarray(255 - d).resize((140, 140), Image.Resampling.BICUBIC)  # black on white, 5x
        page = Image.new("L", (260, 200), 255)
        page.paste(big, (70, 30))
        x = prepare_image(page)
        # Centring shifts by whole pixels, so a centre of mass near a half pixel may land one pixel
        # away from where MNIST put it: the shape must match within a 1 px shift.
        scores.append(corr(x, d))
        shifted.append(max(corr(np.roll(x, (dy, dx), (0, 1)), d) for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
    assert np.mean(scores) > 0.9 and min(shifted) > 0.8


# ----------------------------------------------------------------------------- bad input


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only claims its size (1-bit gray): enough for Image.open, nothing to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_file(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif kind == "text":
        path.write_text("this is not an image\n" * 20)
    elif kind == "truncated":
        data = encode(draw_seven(), "PNG")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        path.mkdir()
    elif kind == "bomb":
        path.write_bytes(_png_header(30_000, 30_000))
    elif kind == "over_our_limit":  # 49 MP: under Pillow's own limit, over ours
        path.write_bytes(_png_header(7_000, 7_000))
    return path  # "missing": never created


@pytest.mark.parametrize("kind", ["empty", "random", "text", "truncated", "directory", "missing",
                                  "bomb", "over_our_limit"])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, kind):
    path = _bad_file(kind, tmp_path)
    start = time.process_time()  # CPU seconds: the other test worker may hold the cores meanwhile
    for call in (load_image, prepare_image):
        with pytest.raises(ImageError) as info:
            call(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
    assert time.process_time() - start < 2  # bombs are refused from the header, not decoded
    if kind in ("bomb", "over_our_limit"):
        assert "pixels" in message


def test_bad_bytes_are_named_too():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="bytes"):
        prepare_image(_png_header(30_000, 30_000))


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(encode(draw_seven(), "PNG"))
    with pytest.raises(ImageError, match="over the limit"):
        prepare_image(np.zeros((200, 200), np.uint8))


def test_truncated_lazy_pil_image_raises_image_error():
    data = encode(draw_seven(), "PNG")
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(ImageError):
        prepare_image(lazy)


def test_bad_arguments():
    with pytest.raises(ValueError):
        prepare_image(np.zeros((5, 5)), size=2)
    with pytest.raises(ValueError):
        prepare_image(np.zeros((5, 5)), channels=2)
    with pytest.raises(ImageError, match="shape"):
        prepare_image(np.zeros((5, 5, 7)))
    with pytest.raises(ImageError, match="shape"):
        prepare_image(np.zeros((2, 5, 5, 1)))
    with pytest.raises(TypeError):
        prepare_image(12345)


# ----------------------------------------------------------------------------- properties

HEADERS = [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"RIFF"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(out: np.ndarray, channels: int) -> bool:
    return out.dtype == np.uint8 and out.shape == ((28, 28) if channels == 1 else (28, 28, 3))


@FUZZ
@given(head=st.sampled_from(HEADERS), body=st.binary(max_size=300))
def test_random_bytes_give_an_image_or_image_error(head, body):
    try:
        out = prepare_image(head + body)
    except ImageError:
        return
    assert _valid(out, 1)


_SEED_PNG = encode(draw_seven((60, 45), (15, 5, 45, 40)), "PNG")


def _edits(seed: bytes):
    """Up to 8 (offset, new byte) changes to `seed`."""
    return st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), min_size=1, max_size=8)


def _damaged(seed: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(seed)
    for at, value in edits:
        data[at] = value
    return bytes(data)


@FUZZ
@given(_edits(_SEED_PNG))
def test_corrupted_png_gives_an_image_or_image_error(edits):
    try:
        out = prepare_image(_damaged(_SEED_PNG, edits))
    except ImageError:
        return
    assert _valid(out, 1)


@st.composite
def any_array(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_]))
    shape = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    if channels:
        shape += (channels,)
    elements = st.floats(allow_nan=True, allow_infinity=True, width=32) if dtype == np.float32 else None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FUZZ
@given(any_array(), st.sampled_from([1, 3]))
def test_random_arrays_give_an_image_or_image_error(arr, channels):
    try:
        out = prepare_image(arr, channels=channels)
    except ImageError:
        return
    assert _valid(out, channels)


# ----------------------------------------------------------------------------- blank pictures


def _blank_pictures() -> dict:
    rng = np.random.default_rng(0)
    speck = np.full((60, 60), 255, np.uint8)
    speck[20, 30] = speck[21, 30] = 0  # two dark pixels: dust, not a digit
    return {
        "white": Image.new("L", (64, 64), 255),
        "black": Image.new("L", (64, 64), 0),
        "1x1 white": Image.new("L", (1, 1), 255),
        "1x1 black": Image.new("RGB", (1, 1)),
        "2x2 one dark pixel": np.array([[255, 255], [0, 255]], np.uint8),
        "uniform gray": np.full((40, 30), 128, np.uint8),
        "two-pixel speck": speck,
        "fully transparent": np.zeros((50, 40, 4), np.uint8),
        "gaussian noise 5 on gray": np.clip(rng.normal(128, 5, (64, 64)), 0, 255).astype(np.uint8),
        "gaussian noise 30 on gray": np.clip(rng.normal(128, 30, (100, 100)), 0, 255).astype(np.uint8),
        "gaussian noise 20 on white": np.clip(rng.normal(235, 20, (300, 200)), 0, 255).astype(np.uint8),
        "gaussian noise float": rng.normal(0, 1, (28, 28)).astype(np.float32),
        "uniform noise, full range": rng.integers(0, 256, (28, 28)).astype(np.uint8),
        "uniform noise, full range, big": rng.integers(0, 256, (600, 500)).astype(np.uint8),
        "uniform noise, 100..156": rng.integers(100, 157, (64, 64)).astype(np.uint8),
        "colour noise": rng.integers(0, 256, (80, 80, 3)).astype(np.uint8),
        "white JPEG": Image.open(io.BytesIO(encode(Image.new("RGB", (640, 480), (250, 250, 245)), "JPEG"))),
    }


BLANKS = _blank_pictures()


@pytest.mark.parametrize("name", list(BLANKS))
def test_pictures_without_a_digit_are_blank(name):
    """On 6a3e47d the noise pictures were "prepared" into a digit-sized blob that the model then classified."""
    picture = BLANKS[name]
    assert images.is_blank(picture)
    out = prepare_image(picture)
    assert out.max() == 0  # and preparing one gives the blank canvas
    assert images.is_blank(out) and images.find_blanks(out[None]).tolist() == [True]


def _real_digits(mnist_raw) -> dict:
    """Real digits in the ways people hand them over; none of them may ever be called blank."""
    d = mnist_raw.test_x[0]  # a 7
    small = np.full((200, 200), 255, np.uint8)
    small[150:160, 5:15] = 255 - np.asarray(Image.fromarray(d).resize((10, 10), Image.Resampling.BILINEAR))
    thin = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(thin).line([(14, 5), (14, 23)], fill=0, width=1)  # a "1" one pixel wide
    thin_big = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(thin_big).line([(200, 40), (200, 260)], fill=0, width=1)  # halved by the reduction to 256 px
    rng = np.random.default_rng(1)
    grainy = np.clip(np.asarray(draw_seven(), np.float32) * 0.5 + 100 + rng.normal(0, 8, (300, 400)), 0, 255)
    shade = np.linspace(250, 170, 400, dtype=np.float32)[None, :]  # light falloff across the page
    shaded = np.minimum(shade, np.asarray(draw_seven(ink=110), np.float32))
    faint = np.asarray(draw_seven(ink=225, paper=255))  # pencil: 30 levels of contrast
    return {
        "MNIST array": d,
        "inverted": 255 - d,
        "small off-centre": small,
        "thin stroke": thin,
        "thin stroke on a big canvas": thin_big,
        "grainy paper": grainy.astype(np.uint8),
        "shaded photo": shaded.astype(np.uint8),
        "faint pencil": faint,
        "low-contrast gray": draw_seven(ink=80, paper=170),
        "RGB JPEG photo": Image.open(io.BytesIO(encode(draw_seven((2000, 1500), (600, 200, 1500, 1300)).convert("RGB"),
                                                       "JPEG", quality=85))),
        "transparent drawing": np.dstack([np.zeros((300, 400, 3), np.uint8), 255 - np.asarray(draw_seven())]),
    }


def test_real_digits_are_never_blank(mnist_raw, tmp_path):
    for name, picture in _real_digits(mnist_raw).items():
        assert not images.is_blank(picture), name
        out = prepare_image(picture)
        assert out.max() > 200 and not images.is_blank(out), name


def test_no_mnist_digit_is_blank_in_any_form(mnist_raw, tmp_path):
    """All 10,000 test digits and every 10th training digit, as arrays and inverted; 200 of each saved as PNG files."""
    for x in (mnist_raw.test_x, mnist_raw.train_x[::10]):
        assert not images.find_blanks(x).any()
        assert not images.find_blanks(255 - x).any()  # black on white
    for i, d in enumerate(mnist_raw.test_x[::50]):
        for name, a in ((f"{i}.png", d), (f"{i}-inverted.png", 255 - d)):
            Image.fromarray(a).save(tmp_path / name)
            assert not images.is_blank(tmp_path / name), name
            assert not images.is_blank(prepare_image(tmp_path / name)), name


def test_find_blanks_agrees_with_is_blank(mnist_raw):
    pictures = [np.asarray(BLANKS[k]) for k in ("uniform gray", "gaussian noise 30 on gray", "two-pixel speck")]
    batch = np.stack([np.asarray(Image.fromarray(p).resize((28, 28))) if p.shape != (28, 28) else p for p in pictures]
                     + list(mnist_raw.test_x[:5]))
    assert images.find_blanks(batch).tolist() == [images.is_blank(x) for x in batch] == [True] * 3 + [False] * 5
    colour = np.repeat(batch[..., None], 3, axis=3)  # (N, 28, 28) -> (N, 28, 28, 3)
    assert images.find_blanks(colour).tolist() == images.find_blanks(batch).tolist()
    with pytest.raises(ValueError, match="uint8 images"):
        images.find_blanks(batch.astype(np.float32))


def test_an_opaque_alpha_channel_changes_nothing():
    """Canvas exports are RGBA with alpha 255 everywhere: prepared exactly like the same picture without alpha."""
    rgb = draw_seven().convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(255)
    as_png = io.BytesIO()
    rgba.save(as_png, "PNG")
    expected = prepare_image(rgb)
    assert expected.max() > 0
    np.testing.assert_array_equal(prepare_image(as_png.getvalue()), expected)
    np.testing.assert_array_equal(prepare_image(rgba), expected)
    la = rgb.convert("L").convert("LA")
    np.testing.assert_array_equal(prepare_image(la), prepare_image(rgb.convert("L")))


def _plain_pngs() -> list[bytes]:
    """8-bit gray+alpha, RGB and RGBA PNGs: libspng's share of the decoding."""
    rng = np.random.default_rng(0)
    out = []
    for mode, channels in (("LA", 2), ("RGB", 3), ("RGBA", 4)):
        for k in range(12):
            h, w = (int(v) for v in rng.integers(1, 50, 2))
            noise = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            strokes = (rng.random((h, w, channels)) > 0.7).astype(np.uint8) * 255
            a = noise if k % 2 else strokes
            im = Image.fromarray(a, mode)
            buf = io.BytesIO()
            im.save(buf, "PNG", optimize=bool(k % 3), compress_level=k % 10)  # varied filters and levels
            out.append(buf.getvalue())
    out.append(encode(draw_seven().convert("RGBA"), "PNG"))  # a canvas export: opaque RGBA
    return out


def test_plain_pngs_decode_by_libspng_to_pillows_pixels(monkeypatch):
    """The fast decoder is used for plain PNGs and gives exactly Pillow's mode and pixels."""
    assert images._spng_load is not None, "pyspng is a dependency: install the project"
    calls = []
    real = images._spng_load
    monkeypatch.setattr(images, "_spng_load", lambda data: calls.append(1) or real(data))
    pngs = _plain_pngs()
    for data in pngs:
        got = load_image(data)
        ref = Image.open(io.BytesIO(data))
        ref.load()
        assert got.mode == ref.mode and got.size == ref.size
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    assert len(calls) == len(pngs)


def test_other_pngs_are_left_to_pillow(monkeypatch, tmp_path):
    """Gray, palettes, transparency keys, 16 bits, 1 bit, EXIF rotation and animation are Pillow's to decode."""
    monkeypatch.setattr(images, "_spng_load", lambda data: pytest.fail("libspng got a PNG that Pillow must decode"))
    gray = draw_seven((60, 45), (15, 5, 45, 40))
    seven = gray.convert("RGB")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    seven.save(rotated, "PNG", exif=exif)
    animated = io.BytesIO()
    seven.save(animated, "PNG", save_all=True, append_images=[seven.rotate(90)])
    cases = [encode(gray, "PNG"), encode(seven.convert("P"), "PNG"), encode(seven.convert("1"), "PNG"),
             rotated.getvalue(), animated.getvalue(), encode(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG")]
    keyed = io.BytesIO()
    seven.save(keyed, "PNG", transparency=(255, 255, 255))
    cases.append(keyed.getvalue())
    from PIL import PngImagePlugin

    raw_profile = PngImagePlugin.PngInfo()  # EXIF as ImageMagick and exiftool write it: a text chunk
    tiff = exif.tobytes()
    raw_profile.add_text("Raw profile type exif", f"\nexif\n{len(tiff) + 6:8d}\n{(b'Exif' + bytes(2) + tiff).hex()}\n")
    profiled = io.BytesIO()
    seven.convert("RGBA").save(profiled, "PNG", pnginfo=raw_profile)
    assert Image.open(io.BytesIO(profiled.getvalue())).getexif().get(0x0112) == 6
    cases.append(profiled.getvalue())
    for data in cases:
        prepare_image(data)
    (tmp_path / "big.png").write_bytes(encode(seven, "PNG") + b"\0" * (images.READ_WHOLE + 1))
    assert prepare_image(tmp_path / "big.png").max() > 0  # a file too big to read at once: streamed to Pillow


_SEED_RGBA_PNG = encode(draw_seven((60, 45), (15, 5, 45, 40)).convert("RGBA"), "PNG")  # libspng's kind


@FUZZ
@given(_edits(_SEED_RGBA_PNG))
def test_corrupted_pngs_get_pillows_verdict(edits):
    """A damaged PNG gives what Pillow alone gives: the same pixels, or an ImageError."""
    data = _damaged(_SEED_RGBA_PNG, edits)

    def verdict() -> Any:
        try:
            return prepare_image(data).tobytes()
        except ImageError:
            return "error"

    fast = verdict()
    real, images._spng_load = images._spng_load, None
    try:
        assert verdict() == fast
    finally:
        images._spng_load = real


def test_prepared_blanks_reads_the_blank_rule_from_the_zeros(mnist_raw):
    """predict and serve read blanks off prepared images: the same verdict as the rule on the pictures themselves."""
    pictures = list(BLANKS.values()) + list(_real_digits(mnist_raw).values())
    prepared = np.stack([prepare_image(p) for p in pictures])
    expected = [images.is_blank(p) for p in pictures]
    assert images.prepared_blanks(prepared).tolist() == expected == [True] * len(BLANKS) + [False] * (len(pictures) - len(BLANKS))
    assert images.find_blanks(prepared).tolist() == expected
