"""Fault battery, data files: every broken file through `mnistlab train` is one line naming the file and the fault.

A folder of four small, valid gzipped IDX files stands in for Fashion-MNIST; each case breaks one
of them and runs `mnistlab train --dataset fashion-mnist --data-dir D`. The network is never used:
the mirrors point at a closed port on 127.0.0.1. Parser-level cases (each fault on read_idx) are in
tests/test_idx.py; the downloader against a local HTTP server is tests/test_download.py. Here
hypothesis also feeds the IDX parser random bytes and mutated headers.
"""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlab.cli import main
from mnistlab.data import sources
from mnistlab.data.idx import IDX_DTYPES, encode_idx, read_idx, write_idx
from mnistlab.errors import DataError


DATASET = "fashion-mnist"
FILES = sources.get_dataset_spec(DATASET).files  # split key -> file name (.gz)
CLOSED_PORT = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once
N_TRAIN, N_TEST = 60, 20


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No real mirror, no shared cache, no $MNISTLAB_DATA: only what a test puts in its --data-dir."""
    spec = sources.get_dataset_spec(DATASET)
    monkeypatch.setitem(sources._DATASETS, DATASET, dataclasses.replace(spec, mirrors=(CLOSED_PORT,)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)


def _valid_folder(d: Path) -> Path:
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    y = np.arange(N_TRAIN, dtype=np.uint8) % 10
    ty = np.arange(N_TEST, dtype=np.uint8) % 10
    write_idx(d / FILES["train_images"], rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8))
    write_idx(d / FILES["train_labels"], y)
    write_idx(d / FILES["test_images"], rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8))
    write_idx(d / FILES["test_labels"], ty)
    return d


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _header(code: int, *shape: int) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes()


# name -> (file key broken, how, phrase the message must hold). Each is one injected fault.
def _truncated_gz(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt_crc(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    p.write_bytes(bytes(data))


def _dir(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "inside").write_bytes(b"a folder, not a file")


CASES = {
    "truncated .gz": ("train_images", _truncated_gz, "truncated .gz file"),
    "corrupt .gz (bad CRC)": ("train_labels", _corrupt_crc, "corrupt .gz file"),
    "wrong magic": ("train_images", lambda p: p.write_bytes(_gz(b"\x12\x34\x08\x03" + bytes(100))), "wrong magic 0x12340803"),
    "plain text": ("test_images", lambda p: p.write_bytes(b"<html>404 Not Found</html>"), "wrong magic"),
    "unknown dtype code": ("test_labels", lambda p: p.write_bytes(_gz(_header(0x0A, 3) + bytes(3))), "unknown IDX dtype code 0x0A"),
    "empty file": ("train_labels", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "empty .gz": ("test_labels", lambda p: p.write_bytes(_gz(b"")), "the .gz decompresses to 0 bytes"),
    "truncated header": ("train_images", lambda p: p.write_bytes(_gz(bytes([0, 0, 8, 3, 0, 0]))), "truncated IDX header"),
    "truncated data": ("test_images", lambda p: p.write_bytes(_gz(_header(8, N_TEST, 28, 28) + bytes(100))), "truncated: expected 15680"),
    "trailing bytes": ("test_labels", lambda p: p.write_bytes(_gz(encode_idx(np.zeros(N_TEST, np.uint8)) + b"xx")), "trailing bytes"),
    "image/label count mismatch": ("train_labels", lambda p: write_idx(p, np.zeros(N_TRAIN - 1, np.uint8)),
                                   f"holds {N_TRAIN} images but"),
    "label out of range": ("test_labels", lambda p: write_idx(p, np.r_[np.zeros(5, np.uint8), 10, np.zeros(N_TEST - 6, np.uint8)]),
                           "label 10 at index 5 is out of range for 10 classes"),
    "labels where images belong": ("train_images", lambda p: write_idx(p, np.zeros(N_TRAIN, np.uint8)),
                                   "expected uint8 images of shape (N, H, W)"),
    "float images": ("train_images", lambda p: write_idx(p, np.zeros((N_TRAIN, 28, 28), np.float32)), "expected uint8 images"),
    "2-D labels": ("train_labels", lambda p: write_idx(p, np.zeros((N_TRAIN, 1), np.uint8)), "expected uint8 labels of shape (N,)"),
    "test images of another size": ("test_images", lambda p: write_idx(p, np.zeros((N_TEST, 32, 32), np.uint8)),
                                    "images are (32, 32) but"),
    "a directory where a file should be": ("test_images", _dir, "is a directory, expected an IDX file"),
    "no permission": ("train_labels", None, "permission denied"),  # handled in the test (root reads anything)
}


def _deny_reading(path: Path, monkeypatch) -> None:
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):  # root ignores file modes: make the OS refusal happen
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


def _train(tmp_path: Path, data_dir: Path) -> list[str]:
    return ["train", "--dataset", DATASET, "--data-dir", str(data_dir), "--model", "softmax", "--epochs", "1",
            "--val-size", "10", "--batch-size", "25", "--no-figures", "-q", "--threads", "1",
            "--out-dir", str(tmp_path / "runs"), "--name", "r"]


def test_the_valid_folder_trains(tmp_path, capsys):
    """The control: without a fault, the same command succeeds (so each failure below is the fault's)."""
    d = _valid_folder(tmp_path / "data")
    assert main(_train(tmp_path, d)) == 0
    assert "Accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("case", list(CASES))
def test_broken_data_file_is_one_line_naming_file_and_fault(tmp_path, capsys, monkeypatch, case):
    key, corrupt, phrase = CASES[case]
    d = _valid_folder(tmp_path / "data")
    path = d / FILES[key]
    if corrupt is None:
        _deny_reading(path, monkeypatch)
    else:
        corrupt(path)
    code = main(_train(tmp_path, d))
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"mnistlab: error: {path}: ") or (case == "image/label count mismatch" and str(path) in err), err
    assert phrase in err, err
    assert not (tmp_path / "runs").exists()  # nothing was started
    assert not list((tmp_path / "cache").rglob("*.npy"))  # a bad file is never cached as decoded data


def test_offline_with_no_files_anywhere_says_where_to_put_them(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(_train(tmp_path, empty)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("mnistlab: error: data set 'fashion-mnist' not found: put ")
    for name in FILES.values():
        assert name in err
    assert str(empty) in err and "$MNISTLAB_DATA" in err
    assert "download failed" in err and "127.0.0.1:9" in err
    cache = tmp_path / "cache" / "mnistlab" / DATASET
    assert not cache.exists() or list(cache.iterdir()) == []  # no partial download left behind


def test_offline_with_one_file_missing_names_only_that_one(tmp_path, capsys):
    d = _valid_folder(tmp_path / "data")
    (d / FILES["test_labels"]).unlink()
    assert main(_train(tmp_path, d)) == 1
    err = capsys.readouterr().err.strip()
    assert f"put {FILES['test_labels']} (gzipped or not) into one of" in err
    assert FILES["train_images"] not in err.split("into one of")[0]


# ----------------------------------------------------------------------------- property tests

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="mnistlab-idx-fuzz-"))
_VALID = encode_idx(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


def _parse_bytes(data: bytes, gz: bool = False) -> None:
    """read_idx on `data` must return a well-formed array or raise DataError: nothing else."""
    path = _FUZZ_DIR / ("f.gz" if gz else "f")
    path.write_bytes(data)
    try:
        x = read_idx(path)
    except DataError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    # Accepted: the header must describe exactly what came back.
    assert x.dtype in [dt.newbyteorder("=") for dt in IDX_DTYPES.values()]
    assert x.ndim == data[3] if not gz else x.ndim >= 1
    assert x.flags.writeable and x.flags.c_contiguous


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_give_an_array_or_data_error(data):
    _parse_bytes(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_gzipped_give_an_array_or_data_error(data):
    _parse_bytes(_gz(data), gz=True)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, len(_VALID) + 8),
    tail=st.binary(max_size=8),
)
def test_mutated_header_gives_an_array_or_data_error(edits, cut, tail):
    """Random edits of the 16 header bytes (magic, dtype, rank, dimensions), then a cut or an extension."""
    data = bytearray(_VALID)
    for i, b in edits:
        data[i] = b
    _parse_bytes(bytes(data[:cut]) + tail)


@FUZZ
@given(st.lists(st.one_of(st.sampled_from([0, 1, 2, 3, 256, 65535, 65536, 2**24, 2**31, 2**32 - 1]),
                          st.integers(0, 2**32 - 1)), min_size=1, max_size=8),
       st.sampled_from(sorted(IDX_DTYPES)), st.binary(max_size=64))
def test_any_declared_shape_gives_an_array_or_data_error(shape, code, body):
    """Huge dimensions (up to 2**32 - 1 each) must not overflow the size check (65536**4 wrapped to 0)."""
    _parse_bytes(_header(code, *shape) + body)


def test_dimensions_whose_product_overflows_64_bits(tmp_path):
    path = tmp_path / "wrap"
    path.write_bytes(_header(8, 65536, 65536, 65536, 65536))
    with pytest.raises(DataError, match="truncated: expected 18446744073709551616 data bytes"):
        read_idx(path)


NUM_FILE_FAULTS = len(CASES) + 2  # + nothing anywhere, one file missing (both offline)
NUM_PROPERTY_TESTS = 4  # x FUZZ.max_examples generated inputs each
