"""Fault battery, hostile data files: memory stays bounded and no MemoryError reaches the user.

The bombs here are genuine: valid .gz files whose IDX header matches what they decompress to
(zeros), built segment by segment without compressing gigabytes. Each run that could blow up
runs in a subprocess whose address space is capped at what the imports took plus a margin, so a
regression ends in a failure, not in a machine out of memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import idx, raw, sources
from mnistlab.data.idx import GZIP_MAX_RATIO, read_idx, read_images, write_idx
from mnistlab.data.raw import load_raw
from mnistlab.errors import DataError

SRC = Path(__file__).resolve().parents[1] / "src"
MNIST_FILES = sources.get_dataset_spec("mnist").files
MB = 2**20


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)


def _crc32_zeros(crc: int, n: int) -> int:
    """zlib.crc32(bytes(n), crc) in O(log n) steps (the GF(2) matrix method of zlib's crc32_combine)."""

    def times(mat: list[int], vec: int) -> int:
        out, i = 0, 0
        while vec:
            if vec & 1:
                out ^= mat[i]
            vec, i = vec >> 1, i + 1
        return out

    op = [0xEDB88320] + [1 << i for i in range(31)]  # the register after one zero bit
    for _ in range(3):
        op = [times(op, m) for m in op]  # squared three times: one zero byte
    reg = crc ^ 0xFFFFFFFF
    while n:
        if n & 1:
            reg = times(op, reg)
        n >>= 1
        if n:
            op = [times(op, m) for m in op]
    return reg ^ 0xFFFFFFFF


def gzip_bomb(header: bytes, num_zeros: int) -> bytes:
    """A valid .gz of `header` followed by `num_zeros` zero bytes (CRC and size included).

    After a full flush deflate starts afresh, so every 1 MiB of zeros compresses to the same bytes:
    one segment, repeated.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(bytes(MB)) + c.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(num_zeros, MB)
    tail = c.compress(bytes(rest)) + c.flush()
    crc = _crc32_zeros(zlib.crc32(header), num_zeros)
    trailer = struct.pack("<II", crc, (len(header) + num_zeros) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head + segment * n + tail + trailer


def _images_header(n: int, h: int = 28, w: int = 28) -> bytes:
    return struct.pack(">BBBBIII", 0, 0, 0x08, 3, n, h, w)


def test_gzip_bomb_helper_is_a_valid_gzip():
    import gzip

    data = gzip.decompress(gzip_bomb(_images_header(3), 3 * 784 + 2 * MB))  # checks CRC and size
    assert data[:16] == _images_header(3) and len(data) == 16 + 3 * 784 + 2 * MB and not any(data[16:])


def _mnist_folder(d: Path, train_images: bytes | None = None, train_labels: bytes | None = None) -> Path:
    """Four small valid MNIST files in `d`, with the train files replaced by the given bytes."""
    d.mkdir(parents=True, exist_ok=True)
    x = np.zeros((20, 28, 28), np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    for key, arr in (("train_images", x), ("train_labels", y), ("test_images", x), ("test_labels", y)):
        write_idx(d / MNIST_FILES[key], arr)
    if train_images is not None:
        (d / MNIST_FILES["train_images"]).write_bytes(train_images)
    if train_labels is not None:
        (d / MNIST_FILES["train_labels"]).write_bytes(train_labels)
    return d


# One child process runs every capped case (importing torch costs seconds): it imports everything
# heavy first, then for each case caps its address space (the soft limit only, so that the next
# case can set its own) at what it uses now plus a margin, resets the peak-RSS counter, runs the
# case and reports the exit code, stderr and the peak resident memory above the start.
_CHILD = textwrap.dedent(
    """
    import contextlib, dataclasses, io, json, re, resource, sys, time
    import numpy, torch
    import mnistlab.cli, mnistlab.runs.session
    from mnistlab.data import sources
    from mnistlab.data.idx import read_images
    from mnistlab.errors import DataError
    def status(key):
        return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    results = {}
    for name, case in json.loads(sys.argv[1]).items():
        saved = dict(sources._DATASETS)
        for ds in case.get("counts_off", []):  # a registered set without known counts
            sources._DATASETS[ds] = dataclasses.replace(sources._DATASETS[ds], counts=None)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        rss = status("VmRSS")
        resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + case["margin"], hard))
        err = io.StringIO()
        start = time.process_time()  # CPU seconds: what reading a bomb would cost, however busy the machine
        with contextlib.redirect_stderr(err):
            if "argv" in case:
                rc = mnistlab.cli.main(case["argv"])
            elif "csv" in case:
                from mnistlab.data.custom import read_pixel_csv
                x, y = read_pixel_csv(case["csv"])
                rc, nbytes = 0, x.nbytes + y.nbytes
                del x, y
            else:
                try:
                    x = read_images(case["read"])
                    rc, nbytes = 0, x.nbytes
                    del x
                except DataError as e:
                    rc, nbytes = 1, 0
                    print(e, file=sys.stderr)
        seconds = time.process_time() - start
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        sources._DATASETS.clear()
        sources._DATASETS.update(saved)
        results[name] = {"rc": rc, "stderr": err.getvalue(), "seconds": seconds, "peak_extra": status("VmHWM") - rss,
                         "nbytes": nbytes if "argv" not in case else None}
    print(json.dumps(results))
    """
)
_CLI_MARGIN = 768 * MB  # what training a small run could need beyond the imports; far below any bomb


@pytest.fixture(scope="module")
def capped(tmp_path_factory) -> dict[str, dict]:
    """Every capped case, run once in one child process: name -> {rc, stderr, seconds, peak_extra, nbytes}."""
    tmp = tmp_path_factory.mktemp("capped")
    five_million = _mnist_folder(tmp / "five-million", train_images=gzip_bomb(_images_header(5_000_000), 5_000_000 * 784))
    labels = gzip_bomb(struct.pack(">BBBBI", 0, 0, 0x08, 1, 60_000), 60_000)
    differ = _mnist_folder(tmp / "differ", train_images=gzip_bomb(_images_header(1_200_000), 1_200_000 * 784),
                           train_labels=labels)
    train = ["train", "--dataset", "mnist", "--no-save-run", "-q", "--data-dir"]
    cases = {
        "five_million": {"argv": [*train, str(five_million)], "margin": _CLI_MARGIN},
        "differ": {"argv": [*train, str(differ)], "margin": _CLI_MARGIN, "counts_off": ["mnist"]},
        "too_large": {"read": str(differ / MNIST_FILES["train_images"]), "margin": 256 * MB},
        "real_mnist": {"read": str(Path(raw.EMBEDDED_DIR) / "mnist" / MNIST_FILES["train_images"]), "margin": 512 * MB},
        "csv": {"csv": str(_pixel_csv(tmp / "rows.csv", 10_000)), "margin": 512 * MB},
    }
    env = {**os.environ, "PYTHONPATH": str(SRC), "XDG_CACHE_HOME": str(tmp / "cache")}
    env.pop("MNISTLAB_DATA", None)
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    results["folders"] = {"five_million": str(five_million), "differ": str(differ)}
    return results


def _pixel_csv(path: Path, n: int) -> Path:
    rows = np.random.default_rng(0).integers(0, 256, (n, 785))
    rows[:, 0] %= 10
    np.savetxt(path, rows, fmt="%d", delimiter=",", header="label," + ",".join(f"pixel{i}" for i in range(784)),
               comments="")
    return path


def test_bomb_declaring_five_million_images_is_one_line_fast_and_small(capped):
    """3.8 MB on disk, 3.9 GB decompressed, header true to its content: refused from its 16 header bytes."""
    assert 3.5e6 < (Path(capped["folders"]["five_million"]) / MNIST_FILES["train_images"]).stat().st_size < 4e6
    result = capped["five_million"]
    lines = result["stderr"].strip().splitlines()
    path = Path(capped["folders"]["five_million"]) / MNIST_FILES["train_images"]
    assert result["rc"] == 1 and len(lines) == 1, result
    assert lines[0] == (f"mnistlab: error: {path}: header declares 5,000,000 images, but the mnist train split holds "
                        "60,000: the file is damaged or belongs to another data set")
    assert result["seconds"] < 5 and result["peak_extra"] < 100 * MB, result


def test_counts_that_differ_fail_from_the_headers(capped):
    """1 MB of .gz declaring 1.2 million images (940 MB) beside 60,000 labels, mnist's known counts
    switched off: only the label file's header can tell, and it does before any data is inflated."""
    d = Path(capped["folders"]["differ"])
    assert (d / MNIST_FILES["train_images"]).stat().st_size < 1.1e6
    result = capped["differ"]
    want = f"{d / MNIST_FILES['train_images']}: holds 1200000 images but {d / MNIST_FILES['train_labels']} holds 60000 labels"
    assert result["rc"] == 1 and result["stderr"].strip() == f"mnistlab: error: {want}", result
    assert result["peak_extra"] < 100 * MB, result


def test_a_file_too_large_for_memory_is_a_data_error(capped):
    """Within every bound (940 MB from 1 MB of .gz) yet larger than the memory left: a DataError, never a MemoryError."""
    path = Path(capped["folders"]["differ"]) / MNIST_FILES["train_images"]
    result = capped["too_large"]
    assert result["stderr"].strip() == f"{path}: not enough memory for shape (1200000, 28, 28) (940,800,000 bytes)", result


def test_real_mnist_loads_below_twice_its_arrays(capped):
    """Decoding the 47 MB of training images peaks at their size plus a chunk (it was 2.4 times their size)."""
    result = capped["real_mnist"]
    assert result["rc"] == 0 and result["nbytes"] == 60000 * 784, result
    assert result["peak_extra"] < 1.5 * result["nbytes"], result


def test_header_checks_come_before_any_data_is_read(tmp_path, monkeypatch):
    bomb = gzip_bomb(_images_header(1_200_000), 1_200_000 * 784)
    d = _mnist_folder(tmp_path / "data", train_images=bomb)

    def no_data(*args, **kwargs):
        raise AssertionError("data was decompressed before the headers were compared")

    monkeypatch.setattr(idx._Reader, "readinto", no_data)
    with pytest.raises(DataError, match=r"header declares 1,200,000 images, but the mnist train split holds 60,000"):
        load_raw("mnist", data_dir=d, download=False)
    spec = sources.get_dataset_spec("mnist")
    monkeypatch.setitem(sources._DATASETS, "mnist", dataclasses.replace(spec, counts=None))
    with pytest.raises(DataError, match=r"holds 1200000 images but .* holds 20 labels"):
        load_raw("mnist", data_dir=d, download=False)


def test_declared_size_beyond_what_the_gz_can_hold(tmp_path):
    """A 100-byte .gz cannot expand to 78 MB (deflate's limit is about 1032:1): refused unread."""
    p = tmp_path / "liar-images-idx3-ubyte.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    p.write_bytes(c.compress(_images_header(100_000) + bytes(1000)) + c.flush())
    size = p.stat().st_size
    assert size * GZIP_MAX_RATIO < 100_000 * 784
    with pytest.raises(DataError, match=rf"^{p}: header declares shape \(100000, 28, 28\) .*more than a {size}-byte "
                                        r"\.gz can hold \(gzip expands at most 1032:1\)"):
        read_images(p)


def test_a_pixel_csv_parses_below_twice_its_arrays(capped):
    """10,000 rows of label,pixel0..pixel783 (7.9 MB kept): int64 chunks of the whole file once took 18 times that."""
    result = capped["csv"]
    assert result["rc"] == 0 and result["nbytes"] == 10_000 * (784 + 8), result
    assert result["peak_extra"] < 2 * result["nbytes"], result


def test_a_planted_cache_file_with_a_huge_header_is_rebuilt(tmp_path):
    """A decoded-cache .npy whose header declares 784 GB is ignored (and decoded again), not allocated."""
    spec = sources.get_dataset_spec("mnist")
    paths = raw._embedded_paths(spec)
    folder = raw._cache_folder(spec, raw._files_key(spec, paths))
    load_raw("mnist")  # writes the cache
    target = folder / "train_x.npy"
    header = {"descr": "|u1", "fortran_order": False, "shape": (1_000_000_000, 28, 28)}
    with open(target, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(1000))
    with pytest.raises(ValueError, match="does not match the file's size"):
        raw.load_npy(target)
    start = time.process_time()  # CPU seconds: the other test worker may hold the cores meanwhile
    data = load_raw("mnist")
    assert data.train_x.shape == (60000, 28, 28) and time.process_time() - start < 10
    assert raw.load_npy(target).shape == (60000, 28, 28)  # decoded again and cached afresh


def test_plain_file_size_is_checked_before_reading(tmp_path, monkeypatch):
    """An uncompressed IDX file's size must match its header exactly: known from the file system alone."""
    p = tmp_path / "short-images-idx3-ubyte"
    p.write_bytes(_images_header(5_000_000) + bytes(784))
    monkeypatch.setattr(idx._Reader, "readinto", lambda *a: pytest.fail("read the data of a file that cannot match"))
    with pytest.raises(DataError, match=r"truncated: expected 3920000000 data bytes for shape \(5000000, 28, 28\), got 784"):
        read_idx(p)
