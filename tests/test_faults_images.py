"""Fault battery, images for `mnistlab predict RUN FILE`: a clean one-line error or correct handling.

Library-level tests hold the details (tests/test_images.py: every mode prepared alike, bad files
raise ImageError naming the file, hypothesis on random bytes, corrupted PNGs and random arrays).
Here each input goes through the command a user types, and a real 30000x30000 PNG bomb is fed to a
separate process whose peak memory is measured.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.cli import main


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    """The shared tiny run (tests/conftest.py)."""
    return tiny_run


def _seven() -> Image.Image:
    im = Image.new("L", (120, 160), 255)
    d = ImageDraw.Draw(im)
    d.line([(25, 30), (95, 30), (55, 135)], fill=0, width=12)
    return im


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _real_bomb(side: int = 30_000) -> bytes:
    """A complete, valid 1-bit PNG of side x side white pixels: ~100 kB on disk, 900 MP decoded."""
    row = b"\0" + b"\xff" * ((side + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _mode(mode: str) -> bytes:
    gray = _seven()
    a = np.asarray(gray)
    if mode == "16-bit":
        return _encode(Image.fromarray(a.astype(np.uint16) * 257), "PNG")
    if mode == "RGBA":  # black strokes drawn on a transparent background
        rgba = np.zeros(a.shape + (4,), np.uint8)
        rgba[..., 3] = 255 - a
        return _encode(Image.fromarray(rgba), "PNG")
    if mode == "palette":
        return _encode(gray.convert("RGB").convert("P"), "PNG")
    if mode == "CMYK JPEG":
        return _encode(gray.convert("CMYK"), "JPEG")
    if mode == "CMYK TIFF":
        return _encode(gray.convert("CMYK"), "TIFF")
    if mode == "gray+alpha":
        return _encode(Image.merge("LA", [gray, Image.new("L", gray.size, 255)]), "PNG")
    if mode == "1-bit":
        return _encode(gray.convert("1", dither=Image.Dither.NONE), "PNG")
    if mode == "RGB JPEG":
        return _encode(gray.convert("RGB"), "JPEG")
    if mode == "float TIFF":
        return _encode(Image.fromarray(a.astype(np.float32) / 255), "TIFF")
    raise ValueError(mode)


HANDLED = ["16-bit", "RGBA", "palette", "CMYK JPEG", "CMYK TIFF", "gray+alpha", "1-bit", "RGB JPEG", "float TIFF"]

BAD = {  # name -> (file bytes, or None for a folder/missing path; phrase)
    "empty file": (b"", "empty file"),
    "text, not an image": (b"this is not an image\n" * 20, "not a recognised image format"),
    "random bytes": (np.random.default_rng(0).bytes(4000), "not a recognised image format"),
    "truncated PNG": (_encode(_seven(), "PNG")[:300], "truncated or corrupt image data"),
    "PNG header claiming 30000x30000": (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 1, 0, 0, 0, 0))
                                        + _png_chunk(b"IEND", b""), "pixels"),
    "7000x7000 (over our limit)": (None, "over the limit"),
    "a folder": (None, "is a directory"),
    "missing": (None, "no such file"),
}


def _write_bad(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "input.png"
    data, _ = BAD[name]
    if name == "a folder":
        path.mkdir()
    elif name == "7000x7000 (over our limit)":
        path.write_bytes(_encode(Image.new("1", (7000, 7000)), "PNG"))
    elif data is not None:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_is_one_line_naming_the_file(run, tmp_path, capsys, name):
    path = _write_bad(tmp_path, name)
    assert main(["predict", str(run), str(path)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"mnistlab: error: {path}: ") and BAD[name][1] in err, err
    assert captured.out == ""


def test_one_bad_image_among_good_ones_is_named(run, tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(_seven(), "PNG"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert main(["predict", str(run), str(good), str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"mnistlab: error: {bad}: empty file"
    first, second = captured.out.splitlines()  # the good ones are still classified (issue 27)
    assert first == second and first.startswith(f"{good}: ") and "%" in first


@pytest.mark.parametrize("mode", HANDLED)
def test_unusual_modes_are_classified_like_the_plain_gray_image(run, tmp_path, capsys, mode):
    plain = tmp_path / "plain.png"
    plain.write_bytes(_encode(_seven(), "PNG"))
    other = tmp_path / f"other.{'jpg' if 'JPEG' in mode else 'tif' if 'TIFF' in mode else 'png'}"
    other.write_bytes(_mode(mode))
    assert main(["predict", str(run), str(plain), str(other), "--json"]) == 0
    a, b = json.loads(capsys.readouterr().out)
    assert b["file"] == str(other) and b["label"] == a["label"]
    assert b["prob"] == pytest.approx(a["prob"], abs=0.1)


@pytest.mark.timeout(300)
def test_real_decompression_bomb_is_refused_in_bounded_memory(run, tmp_path):
    """A complete 30000x30000 PNG (900 MP, ~100 kB): refused from its header in a fresh process."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_real_bomb())
    assert bomb.stat().st_size < 2_000_000
    code = (
        "import resource, sys\n"
        "from mnistlab.cli import main\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "rc = main(['predict', sys.argv[1], sys.argv[2]])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(rc, after - before)\n"  # ru_maxrss is in KiB on Linux
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(bomb)], capture_output=True, text=True,
                          timeout=240, env=env)
    rc, growth_kib = proc.stdout.split()
    assert rc == "1", proc.stderr
    assert "pixels" in proc.stderr and "Traceback" not in proc.stderr
    # Loading the checkpoint and model costs some; decoding the bomb would cost 900 MB.
    assert int(growth_kib) < 100 * 1024, f"peak memory grew by {int(growth_kib) / 1024:.0f} MiB"


NUM_IMAGE_INPUTS = len(BAD) + 1 + len(HANDLED) + 1  # + bad among good, + the real bomb
_ = resource  # used in the subprocess code above
