"""`datasets export`: write a data set's train and test splits as IDX files, CSV tables or image folders.

- idx: the standard MNIST file names, gzipped (train-images-idx3-ubyte.gz, ...): `--data-dir` reads them.
- csv: train.csv and test.csv with the header label,pixel0,...,pixelN: `--dataset csv:DIR` reads them.
- folder: train/<class>/<index>.png and test/<class>/<index>.png: `--dataset folder:DIR` reads them
  back pixel for pixel and, since files are numbered, in the original order.

Class folders are the class names when these are safe file names that keep their registry order
when sorted (and stay distinct ignoring case); otherwise they are `<index>-<name>` (e.g.
fashion-mnist's "0-T-shirt_top"), which sorts like the labels. The export is written into a
temporary sibling folder and renamed into place at the end, so DIR is either complete or absent;
DIR must not exist or be empty.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.data.raw import RawData
from mnistlab.errors import ConfigError, DataError

FORMATS = ("folder", "csv", "idx")
IDX_NAMES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
_PIXEL_TEXT = np.array([str(v) for v in range(256)])  # uint8 -> its decimal text, by indexing


def load_any(name: str, data_dir: str | os.PathLike | None = None) -> RawData:
    """A registered data set, or a folder:/csv: one, as RawData."""
    from mnistlab.data.custom import is_custom, load_custom
    from mnistlab.data.raw import load_raw

    return load_custom(name) if is_custom(name) else load_raw(name, data_dir=data_dir)


def export_dataset(name: str, fmt: str, out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Write data set `name` (train and test) into the new folder `out_dir` in layout `fmt`; return it."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: invalid choice {fmt!r} (choose from {', '.join(FORMATS)})")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; export into a new or empty folder")
    raw = load_any(name, data_dir)
    if raw.train_y.ndim != 1:
        raise DataError(f"{name}: multi-label data sets cannot be exported (labels have shape {raw.train_y.shape})")
    write = {"folder": write_folder, "csv": write_csv, "idx": write_idx_files}[fmt]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        write(raw, tmp)
        os.replace(tmp, out)  # an empty folder may be replaced by a rename (POSIX)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _splits(raw: RawData) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)]


def class_folder_names(class_names: tuple[str, ...]) -> list[str]:
    """Folder names for the classes that sort in label order (see the module docstring)."""
    names = list(class_names)
    safe = all(n and n not in (".", "..") and all(c.isalnum() or c in "-_." for c in n) for n in names)
    distinct = len({n.casefold() for n in names}) == len(names)
    if safe and distinct and sorted(names) == names:
        return names
    width = len(str(len(names) - 1))
    clean = ["".join(c if c.isalnum() or c in "-_." else "_" for c in n) for n in names]
    return [f"{i:0{width}d}-{c}" for i, c in enumerate(clean)]


def write_folder(raw: RawData, out: Path) -> None:
    """train/<class>/<index>.png and test/<class>/<index>.png (grey or RGB PNG, lossless)."""
    folders = class_folder_names(raw.class_names)
    for split, x, y in _splits(raw):
        width = max(5, len(str(len(x) - 1)))
        for name in folders:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image).save(out / split / folders[int(label)] / f"{i:0{width}d}.png", compress_level=1)


def write_csv(raw: RawData, out: Path) -> None:
    """train.csv and test.csv: a header label,pixel0,...,pixelN, then one image per row."""
    if raw.train_x.ndim != 3:
        raise DataError(f"{raw.name}: CSV export holds grey images (N, H, W); these are {raw.train_x.shape[1:]}")
    if any(n != str(i) for i, n in enumerate(raw.class_names)):
        # CSV labels are numbers: say which number is which class.
        (out / "classes.txt").write_text("".join(f"{i},{n}\n" for i, n in enumerate(raw.class_names)), encoding="utf-8")
    for split, x, y in _splits(raw):
        flat = x.reshape(len(x), -1)  # (N, H, W) -> (N, H*W)
        header = "label," + ",".join(f"pixel{j}" for j in range(flat.shape[1]))
        with open(out / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            f.write(header + "\n")
            for start in range(0, len(flat), 2048):
                text = _PIXEL_TEXT[flat[start : start + 2048]]
                labels = y[start : start + 2048]
                rows = zip(labels.tolist(), text.tolist())
                f.write("".join(f"{label}," + ",".join(row) + "\n" for label, row in rows))


def write_idx_files(raw: RawData, out: Path) -> None:
    """The four IDX files under their standard (MNIST) names, gzipped."""
    from mnistlab.data.idx import write_idx

    if raw.train_x.ndim != 3:
        raise DataError(f"{raw.name}: IDX export holds grey images (N, H, W); these are {raw.train_x.shape[1:]}")
    if raw.num_classes > 256:
        raise DataError(f"{raw.name}: IDX labels are bytes; {raw.num_classes} classes do not fit")
    arrays = {"train_x": raw.train_x, "train_y": raw.train_y, "test_x": raw.test_x, "test_y": raw.test_y}
    for key, arr in arrays.items():
        write_idx(out / IDX_NAMES[key], arr.astype(np.uint8) if key.endswith("_y") else arr)


def export_summary(out: Path) -> str:
    """'N files, X MB' for the CLI."""
    files = [p for p in out.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files):,} files, {size / 1e6:.1f} MB"

