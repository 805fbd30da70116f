"""Your own data: `folder:PATH` (one sub-folder of pictures per class) and `csv:PATH` (pixel tables).

Both become a `RawData` (uint8 images, int64 labels), so the trainer, checks and reports work on
them unchanged.

- folder: `PATH/train/<class>/*` and `PATH/test/<class>/*`, or one tree `PATH/<class>/*` split by
  `test_size` (stratified, seeded): a fraction, a count, or by default 10% of the images, at most
  10,000 (MNIST's test size). PNG, JPEG, BMP and GIF, found recursively; hidden files are
  ignored. Class names are the folder names, sorted. Images are ordered by file name, so numbered
  files (as `datasets export` writes them) keep their original order.
- Preparation: an image that is already MNIST-style, i.e. exactly `image_size` square, grey or RGB,
  with a black background (median of its 2-pixel frame <= 25), is taken as it is; any other image
  is prepared as `predict` prepares it (`prepare_image`: inverted if the paper is light, cropped,
  fitted and centred). Round trips of exported data sets are therefore exact, pixel for pixel.
- Colour: `channels` 1 or 3; None (auto) means 3 if any image is in colour (at least 1 in 1000 of
  its pixels has R, G, B more than 16 levels apart), else 1.
- Unreadable images are skipped, reported (a MnistlabWarning) and listed in `RawData.notes`; a class
  left with no images is an error.
- Decoded arrays are cached in the user cache (`cache_dir()/custom`), keyed by the file list, sizes,
  modification times, `image_size` and `channels`: a second run reads them back in milliseconds.
- csv: a header `label,pixel0,...,pixelN` (N+1 a square number; no header also works), integer
  labels and integer pixels 0..255, one image per row, MNIST-style already (only reshaped, never
  re-centred or resized). PATH is a file (split by `test_size`) or a folder with `train.csv` and
  `test.csv`; a `test.csv` without the label column (the "Digit Recognizer" layout) is for
  `predict --csv`, so then the test set is split from `train.csv`.
- Bad rows (wrong number of values, not an integer, outside 0..255, NaN): `read_pixel_csv` (training,
  evaluation) refuses the file with one line naming the first bad row and counting the others;
  `read_pixel_rows` (`predict --csv`) reads every other row and marks the bad ones. Rows are the data
  rows numbered from 1 after the header, blank lines not counted (a submission's ImageId).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from mnistlab.data.cache import entry_folder, read_arrays, write_arrays
from mnistlab.data.images import WORK_SIDE, load_image, prepare_image
from mnistlab.data.raw import RawData
from mnistlab.data.sources import register_path_kind
from mnistlab.data.splits import MAX_TEST_SIZE, holdout_size, stratified_split
from mnistlab.errors import ConfigError, DataError, ImageError, MnistlabWarning, without_name

log = logging.getLogger("mnistlab")

PREFIXES = ("folder:", "csv:")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DARK_FRAME = 25  # a frame median at or below this (of 255) means a black background
COLOUR_SPREAD = 16  # a pixel is coloured when its channels differ by more than this (of 255)
COLOUR_FRACTION = 0.001  # an image is in colour when at least this fraction of its pixels is
_CACHE_VERSION = 1  # bump when decoding or the cached layout changes
_CSV_CHUNK = 128  # rows parsed per np.loadtxt call: its int64 temporary stays small (C speed all the same)


def is_custom(name: str) -> bool:
    """True for `folder:PATH` and `csv:PATH` data set names."""
    return name.startswith(PREFIXES)


def load_custom(name: str, *, image_size: int = 28, channels: int | None = None, test_size: float | None = None,
                seed: int = 0) -> RawData:
    """Load `folder:PATH` or `csv:PATH` as a RawData (see the module docstring for the layouts)."""
    kind, _, where = name.partition(":")
    if kind + ":" not in PREFIXES:
        raise ConfigError(f"--dataset {name!r}: custom data sets start with folder: or csv:")
    if not where:
        raise ConfigError(f"--dataset {name!r}: give a path, e.g. {kind}:~/my-images")
    path = Path(where).expanduser()
    if kind == "folder":
        raw = load_folder(path, image_size=image_size, channels=channels, test_size=test_size, seed=seed)
    else:
        raw = load_csv(path, channels=channels, test_size=test_size, seed=seed)
    raw.name = name
    return raw


# ----------------------------------------------------------------------------- cache


def _cache_folder(kind: str, key: str) -> Path:
    return entry_folder("custom", f"{kind}-{key[:32]}")


def _load_cache(folder: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict] | None:
    cached = read_arrays(folder, names)
    if cached is None:
        return None  # absent, unreadable or corrupt: decode again
    lengths = {len(a) for a in cached[0].values()}
    return cached if len(lengths) == 1 else None


def _save_cache(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    error = write_arrays(folder, arrays, meta)  # a read-only or full disk must not break loading
    if error is not None:
        log.warning("could not cache decoded images in %s: %s", folder, error.strerror or error)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([_CACHE_VERSION, *parts]).encode()).hexdigest()


# ----------------------------------------------------------------------------- folders


def _image_files(folder: str) -> list[tuple[str, str, int, int]]:
    """(file name, path, size, mtime_ns) of every image below `folder`, hidden files and folders excluded."""
    # os.scandir and plain strings: listing 10,000 files must take milliseconds (pathlib takes ~1 s).
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder: {e.strerror or e}") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir():
            found += _image_files(e.path)
        elif e.name.lower().endswith(IMAGE_SUFFIXES):
            try:
                st = e.stat()
            except OSError as err:
                raise DataError(f"{e.path}: cannot read: {err.strerror or err}") from None
            found.append((e.name, e.path, st.st_size, st.st_mtime_ns))
    return found


def _class_folders(root: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise DataError(f"{root}: cannot list the folder: {e.strerror or e}") from None


Item = tuple[str, int, int, str, int, int]  # (file name, class index, part 0 train / 1 test, path, size, mtime_ns)


def _list_tree(root: Path, classes: list[str], part: int) -> list[Item]:
    """One Item for every image of every class folder under `root`."""
    items: list[Item] = []
    for c, name in enumerate(classes):
        if not (root / name).is_dir():
            continue  # a test tree may lack a class
        files = _image_files(str(root / name))
        if not files:
            raise DataError(f"{root / name}: empty class folder (no PNG, JPEG, BMP or GIF images)")
        items += [(f, c, part, p, size, mtime) for f, p, size, mtime in files]
    return items


def _is_colour(im: Image.Image) -> bool:
    """Some pixels' R, G and B differ by more than COLOUR_SPREAD (at least COLOUR_FRACTION of them)."""
    if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return False
    rgb = np.asarray(im.convert("RGB"))
    step = max(1, int(math.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))  # at most ~64k pixels
    rgb = rgb[::step, ::step].astype(np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool((spread > COLOUR_SPREAD).mean() >= COLOUR_FRACTION)


def _is_prepared(im: Image.Image, size: int) -> bool:
    """Already MNIST-style: `size` square, grey or RGB, on a black background (dark frame)."""
    if im.size != (size, size) or im.mode not in ("L", "RGB", "P") or "transparency" in im.info:
        return False
    g = np.asarray(im.convert("L"))
    frame = np.concatenate([g[:2].ravel(), g[-2:].ravel(), g[2:-2, :2].ravel(), g[2:-2, -2:].ravel()])
    return float(np.median(frame)) <= DARK_FRAME


def _decode_image(path: str, size: int, channels: int, check_colour: bool) -> tuple[np.ndarray, bool]:
    """One image file -> (uint8 (size, size[, 3]), is it in colour?). Raises ImageError."""
    # Decoding once and preparing the PIL image is exactly what prepare_image(path) does.
    im = load_image(path, draft_side=WORK_SIDE // 2)
    colour = check_colour and _is_colour(im)
    if _is_prepared(im, size):
        return np.asarray(im.convert("L" if channels == 1 else "RGB")), colour
    return prepare_image(im, size=size, channels=channels), colour


def _reason(e: Exception, path: str) -> str:
    text = without_name("<PIL image>", without_name(path, str(e)))
    return text or type(e).__name__


def _decode_all(items: list[Item], size: int, channels: int | None
                ) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Decode every item: (images of the kept items, their indices, skipped (index, reason)).

    The images go into one array allocated for all items (no list of arrays to stack: that
    would hold every image twice at the end).
    """
    used = channels or 1
    x = np.empty((len(items), size, size) + (() if used == 1 else (3,)), np.uint8)
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for i, (_, _, _, path, _, _) in enumerate(items):
        try:
            image, colour = _decode_image(path, size, used, channels is None and used == 1)
            if colour:
                # Auto channels: the first colour image switches the whole set to 3 channels, so
                # the images decoded so far are prepared again, in colour.
                used = 3
                x = np.empty((len(items), size, size, 3), np.uint8)
                for j, k in enumerate(kept):
                    x[j] = _decode_image(items[k][3], size, 3, False)[0]
                image, _ = _decode_image(path, size, 3, False)
        except (ImageError, OSError, ValueError) as e:
            skipped.append((i, _reason(e, path)))
            continue
        x[len(kept)] = image
        kept.append(i)
    return (x if len(kept) == len(items) else x[: len(kept)].copy()), kept, skipped


def load_folder(path: str | os.PathLike, *, image_size: int = 28, channels: int | None = None,
                test_size: float | None = None, seed: int = 0) -> RawData:
    """Images in class folders -> RawData, decoded once and cached (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (folder: data sets hold one sub-folder per class)")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split_layout else root
    classes = _class_folders(train_root)
    if not classes:
        raise DataError(f"{train_root}: no class folders (expected {train_root}/<class>/<image files>)")
    if len(classes) < 2:
        raise DataError(f"{train_root}: only one class folder ({classes[0]}): a classifier needs at least two")
    items = _list_tree(train_root, classes, 0)
    if split_layout:
        extra = sorted(set(_class_folders(root / "test")) - set(classes))
        if extra:
            raise DataError(f"{root / 'test' / extra[0]}: class {extra[0]!r} has no folder in {train_root}")
        test_items = _list_tree(root / "test", classes, 1)
        if not test_items:
            raise DataError(f"{root / 'test'}: no test images (expected {root / 'test'}/<class>/<image files>)")
        items += test_items
    # File name first: numbered files (an export) come back in their original order.
    items.sort(key=lambda t: (t[2], t[0], t[1], t[3]))

    skip = len(str(root / "x")) - 1  # the length of "root/" ("" for the current folder)
    listing = [(p[skip:], c, part, size, mtime) for _, c, part, p, size, mtime in items]
    folder = _cache_folder("folder", _key("folder", image_size, channels, listing))
    cached = _load_cache(folder, ("x", "index"))
    if cached is not None:
        arrays, meta = cached
        x, kept = arrays["x"], arrays["index"]
        skipped = [(int(i), r) for i, r in meta["skipped"]]
    else:
        start = time.perf_counter()
        x, kept_list, skipped = _decode_all(items, image_size, channels)
        kept = np.asarray(kept_list, dtype=np.int64)
        log.info("decoded %d images from %s in %.1f s", len(items), root, time.perf_counter() - start)
        _save_cache(folder, {"x": x, "index": kept}, {"skipped": skipped, "root": str(root)})

    notes = [f"{items[i][3]}: {reason}" for i, reason in skipped]
    if notes:
        warnings.warn(f"skipped {len(notes)} unreadable image{'s' if len(notes) > 1 else ''} (first: {notes[0]})",
                      MnistlabWarning, stacklevel=2)
    labels = np.array([t[1] for t in items], dtype=np.int64)[kept]
    parts = np.array([t[2] for t in items], dtype=np.int64)[kept]
    for c, name in enumerate(classes):
        if not (labels[parts == 0] == c).any():
            first = next((n for (i, _), n in zip(skipped, notes) if items[i][1:3] == (c, 0)), "")
            raise DataError(f"{train_root / name}: none of its images could be read (first: {first})")
    if split_layout:
        train, test = np.flatnonzero(parts == 0), np.flatnonzero(parts == 1)
        if len(test) == 0:
            raise DataError(f"{root / 'test'}: none of its images could be read (first: {notes[-1]})")
    else:
        train, test = _split(labels, test_size, seed, root)
    return RawData(x[train], labels[train], x[test], labels[test], tuple(classes), f"folder:{root}", notes=notes)


def _split(labels: np.ndarray, test_size: float | None, seed: int, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (train, test) indices: `test_size` a fraction, a count, or None (10%, at most 10,000)."""
    if len(labels) < 2:
        raise DataError(f"{where}: {len(labels)} image cannot be split into training and test images")
    try:
        num_test = holdout_size(test_size, len(labels), MAX_TEST_SIZE, "--test-size")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if num_test == 0:
        raise ConfigError(f"{where}: --test-size 0 leaves no test images (give a fraction or a count)")
    return stratified_split(labels, num_test, seed)


# ----------------------------------------------------------------------------- CSV


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _square_side(n: int) -> int | None:
    side = math.isqrt(n)
    return side if n > 0 and side * side == n else None


def _csv_layout(path: Path) -> tuple[bool, bool, int]:
    """(has a header?, has a label column?, number of columns), from the first line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = next(csv.reader(f), None)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason} at byte {e.start})") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a CSV file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not first:
        raise DataError(f"{path}: empty file (expected a header label,pixel0,...,pixelN)")
    tokens = [t.strip() for t in first]
    if all(_is_number(t) for t in tokens):  # no header: tell the layouts apart by which count is square
        if _square_side(len(tokens) - 1):
            return False, True, len(tokens)
        if _square_side(len(tokens)):
            return False, False, len(tokens)
        raise DataError(f"{path}: line 1 has {len(tokens)} values: neither they nor all but the first "
                        "make a square image (expected label,pixel0,...,pixelN with N+1 a square number)")
    has_label = tokens[0].lower() == "label"
    for j, t in enumerate(tokens[1:] if has_label else tokens):
        if t.lower() != f"pixel{j}":
            col = j + 1 + has_label
            raise DataError(f"{path}: header column {col} is {t!r}, expected 'pixel{j}' "
                            "(the layout is label,pixel0,...,pixelN)")
    num_pixels = len(tokens) - has_label
    if not _square_side(num_pixels):
        raise DataError(f"{path}: {num_pixels} pixel columns is not a square number "
                        "(28x28 images have 784: pixel0..pixel783)")
    return True, has_label, len(tokens)


def _read_row(line: str, has_label: bool, num_cols: int) -> tuple[list[int] | None, str]:
    """One data line -> (its integers, "") or (None, what is wrong, e.g. " has 4 values, expected 5 (...)")."""
    fields = next(csv.reader([line]), [])
    if len(fields) != num_cols:
        return None, f" has {len(fields)} values, expected {num_cols} ({'label + pixels' if has_label else 'pixels'})"
    values = []
    if has_label:
        try:
            values.append(int(fields[0]))
        except ValueError:
            return None, f": label {fields[0].strip()!r} is not an integer"
    for j, v in enumerate(fields[1:] if has_label else fields):
        try:
            value = int(v)
        except ValueError:
            return None, f": pixel{j} = {v.strip()!r} is not an integer from 0 to 255"
        if not 0 <= value <= 255:
            return None, f": pixel{j} = {value} is outside 0..255"
        values.append(value)
    return values, ""


def _is_blank_line(line: str) -> bool:
    """A line that np.loadtxt skips (whitespace only, or a # comment): not a data row."""
    text = line.strip()
    return not text or text.startswith("#")


def describe_rows(rows: Sequence[int] | np.ndarray, shown: int = 3) -> str:
    """Row numbers, compactly: "row 3", "rows 3 and 7", "rows 3, 7, 12 and 40 more"."""
    n = len(rows)
    head = [f"{int(r):,}" for r in rows[: shown + 1]]
    if n == 1:
        return f"row {head[0]}"
    if n <= shown + 1:
        return f"rows {', '.join(head[:-1])} and {head[-1]}"
    return f"rows {', '.join(head[:shown])} and {n - shown:,} more"


@dataclass
class PixelRows:
    """A pixel CSV as read: one image per data row, the unreadable rows included as zeros (row i is index i - 1).

    Rows are the data rows numbered from 1 after the header, blank lines not counted (so a
    submission's ImageId is the row number); `problem` also gives the first bad row's line in the file.
    """

    x: np.ndarray  # uint8 (N, S, S); zeros for the bad rows
    y: np.ndarray | None  # int64 (N,), 0 for the bad rows; None without a label column
    bad: np.ndarray  # bool (N,): the rows that could not be read
    problem: str = ""  # the first bad row, e.g. "row 3 (line 4) has 783 values, expected 784 (pixels)"

    def bad_rows(self) -> np.ndarray:
        """The bad rows' numbers (from 1), ascending."""
        return np.flatnonzero(self.bad) + 1

    def message(self, path: str | os.PathLike) -> str:
        """One line naming the file: the bad row (and what is wrong), or how many there are and which."""
        rows = self.bad_rows()
        if len(rows) == 1:
            return f"{path}: {self.problem}"
        return (f"{path}: {len(rows):,} of {len(self.bad):,} rows cannot be read: {describe_rows(rows)} "
                f"(first: {self.problem})")


def _count_lines(path: Path) -> int:
    """Lines in the file (an upper bound on its rows), counted in binary blocks: milliseconds per 100 MB."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")  # \n, \r\n or \r endings
            last = block[-1:]
    return count + (last not in (b"\n", b"\r"))


def _parse_chunk(lines: list[str], has_label: bool, num_cols: int) -> np.ndarray | None:
    """Lines -> int64 (n, num_cols) at C speed, blank lines skipped; None when any row is bad (parse it row by row)."""
    try:
        data = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)  # int64: labels of any size parse
    except ValueError:
        return None
    if data.size == 0:
        return data.reshape(0, num_cols)  # only blank lines
    pixels = data[:, 1:] if has_label else data
    if data.shape[1] != num_cols or pixels.min() < 0 or pixels.max() > 255:
        return None
    return data


def _parse_csv(path: Path) -> PixelRows:
    """Parse and check a pixel CSV: every data row, the unreadable ones as zeros and marked bad.

    The rows go straight into arrays preallocated from a line count, a chunk at a time, so that
    parsing peaks near the size of those arrays (int64 chunks of the whole file once took 18 times it).
    A chunk holding a bad row is parsed again row by row (Python speed, only there).
    """
    header, has_label, num_cols = _csv_layout(path)
    side = _square_side(num_cols - has_label)
    assert side is not None
    bad: list[int] = []
    problem = ""
    try:
        most = _count_lines(path) - header  # blank lines make it an overestimate: trimmed below
        x = np.empty((most, side * side), np.uint8)
        y = np.empty(most if has_label else 0, np.int64)
        n = 0
        line_no = int(header)  # lines read so far
        with open(path, encoding="utf-8-sig") as f:  # universal newlines: \r\n files parse too
            if header:
                f.readline()
            while lines := list(itertools.islice(f, _CSV_CHUNK)):
                data = _parse_chunk(lines, has_label, num_cols)
                if data is not None and n + len(data) <= most:
                    x[n : n + len(data)] = data[:, 1:] if has_label else data
                    if has_label:
                        y[n : n + len(data)] = data[:, 0]
                    n += len(data)
                else:
                    for number, line in enumerate(lines, line_no + 1):
                        if _is_blank_line(line):
                            continue
                        if n >= most:
                            raise DataError(f"{path}: cannot parse: more rows than lines (line {number})")
                        values, why = _read_row(line, has_label, num_cols)
                        if values is None:
                            values = [0] * num_cols
                            bad.append(n)
                            problem = problem or f"row {n + 1} (line {number}){why}"
                        x[n] = values[1:] if has_label else values
                        if has_label:
                            y[n] = values[0]
                        n += 1
                line_no += len(lines)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if n == 0:
        raise DataError(f"{path}: no data rows")
    # (N, S*S) -> (N, S, S); a copy only when blank lines left rows unused
    x = (x if n == most else x[:n].copy()).reshape(n, side, side)
    mask = np.zeros(n, dtype=bool)
    mask[bad] = True
    return PixelRows(x, ((y if n == most else y[:n].copy()) if has_label else None), mask, problem)


def read_pixel_rows(path: str | os.PathLike) -> PixelRows:
    """A pixel CSV -> every data row, the unreadable ones marked (`PixelRows`); cached like `read_pixel_csv`."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: {e.strerror or e}") from None
    folder = _cache_folder("csv", _key("csv", str(path.resolve()), st.st_size, st.st_mtime_ns))
    cached = _load_cache(folder, ("x", "y", "bad"))
    if cached is not None:
        arrays, meta = cached
        return PixelRows(arrays["x"], arrays["y"] if meta.get("labelled") else None, arrays["bad"],
                         str(meta.get("problem", "")))
    start = time.perf_counter()
    rows = _parse_csv(path)
    log.info("parsed %d rows of %s in %.1f s", len(rows.x), path, time.perf_counter() - start)
    y = rows.y if rows.y is not None else np.zeros(len(rows.x), np.int64)
    _save_cache(folder, {"x": rows.x, "y": y, "bad": rows.bad}, {"labelled": rows.y is not None, "problem": rows.problem})
    return rows


def read_pixel_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """A pixel CSV -> uint8 images (N, S, S) and int64 labels (None when it has no label column); cached.

    Every row must be readable: a DataError names the bad row (or counts the bad rows and lists some).
    """
    rows = read_pixel_rows(path)
    if rows.bad.any():
        raise DataError(rows.message(Path(path).expanduser()))
    return rows.x, rows.y


def load_csv(path: str | os.PathLike, *, channels: int | None = None, test_size: float | None = None,
             seed: int = 0) -> RawData:
    """A pixel CSV file, or a folder with train.csv (and test.csv) -> RawData (see the module docstring)."""
    path = Path(path)
    notes: list[str] = []
    if path.is_dir():
        train_file, test_file = path / "train.csv", path / "test.csv"
        if not train_file.is_file():
            raise DataError(f"{path}: no train.csv (a csv: folder holds train.csv and, optionally, test.csv)")
    else:
        train_file, test_file = path, None
    train_x, train_y = read_pixel_csv(train_file)
    if train_y is None:
        raise DataError(f"{train_file}: no label column: a file without labels serves `predict --csv`, not training")
    test_x = test_y = None
    if test_file is not None and test_file.is_file():
        test_x, test_y = read_pixel_csv(test_file)
        if test_y is None:
            notes.append(f"{test_file}: no label column (use it with `predict --csv`); "
                         f"the test set is split from {train_file}")
            log.info(notes[-1])
        elif test_x.shape[1:] != train_x.shape[1:]:
            raise DataError(f"{test_file}: images are {test_x.shape[1]}x{test_x.shape[2]} "
                            f"but {train_file} has {train_x.shape[1]}x{train_x.shape[2]}")
    values = np.unique(train_y if test_y is None else np.concatenate([train_y, test_y]))
    if len(values) < 2:
        raise DataError(f"{train_file}: only one class (label {values[0]}): a classifier needs at least two")
    if test_y is None:
        train, test = _split(train_y, test_size, seed, train_file)
        train_x, train_y, test_x, test_y = train_x[train], train_y[train], train_x[test], train_y[test]
    if channels == 3:
        train_x, test_x = (np.repeat(a[..., None], 3, axis=3) for a in (train_x, test_x))  # (N,S,S) -> (N,S,S,3)
    # Label values -> class indices 0..K-1; the values themselves become the class names.
    train_y, test_y = np.searchsorted(values, train_y), np.searchsorted(values, test_y)
    class_names = tuple(str(v) for v in values)
    return RawData(train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64), class_names, f"csv:{path}",
                   notes=notes)


def fit_to_model(images: np.ndarray, in_shape: tuple[int, int, int], source: str | os.PathLike,
                 model: str | os.PathLike = "the model") -> np.ndarray:
    """Grey pixel rows (N, S, S) -> the model's input layout (N, H, W[, 3]); DataError if the size differs.

    `model`: what to call the model in that error (its run folder or file).
    """
    c, h, w = in_shape
    if images.shape[1:3] != (h, w):
        raise DataError(f"{source}: rows are {images.shape[1]}x{images.shape[2]} images "
                        f"but {model} takes {h}x{w}")
    return np.repeat(images[..., None], 3, axis=3) if c == 3 else images  # (N,H,W) -> (N,H,W,3)


for _kind in PREFIXES:
    register_path_kind(_kind.rstrip(":"), load_custom)
