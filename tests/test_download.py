"""Downloads against a local HTTP server: mirror fall-through, md5, timeouts, no partial files, search order."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data.download import cache_dir, download_file, find_local, locate, search_dirs
from mnistlab.data.idx import encode_idx, write_idx
from mnistlab.data.sources import SPLIT_KEYS, ArchiveSpec, DatasetSpec, get_dataset_spec
from mnistlab.errors import DownloadError

SLOW_S = 3.0  # how long the slow mirror stalls; the client timeout in tests is far shorter
TIMEOUT = 0.3


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)


def _payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    import gzip

    x = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 10, size=6, dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": encode_idx(x),
        "train-labels-idx1-ubyte.gz": encode_idx(y),
        "t10k-images-idx3-ubyte.gz": encode_idx(x[:3]),
        "t10k-labels-idx1-ubyte.gz": encode_idx(y[:3]),
    }
    return {name: gzip.compress(data, mtime=0) for name, data in files.items()}


PAYLOADS = _payloads()


class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = dict(PAYLOADS)
        self.hits: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.hits.append(self.path)
                _, kind, name = self.path.split("/", 2)
                body = server.files.get(name)
                if kind == "missing" or body is None:
                    self.send_error(404)
                    return
                if kind == "reset":  # close without any response
                    self.close_connection = True
                    return
                if kind == "slow":
                    server.release.wait(SLOW_S)
                if kind == "corrupt":
                    body = bytes(b ^ 0x55 for b in body)
                self.send_response(200)
                extra = 1000 if kind == "trunc" else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if kind == "trunc" else body)
                self.close_connection = True

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # the slow client has gone: fine
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/"


@pytest.fixture(scope="module")
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.release.set()
    s.httpd.shutdown()
    s.httpd.server_close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _spec(name: str = "toyset", **kw) -> DatasetSpec:
    files = dict(get_dataset_spec("mnist").files)
    return DatasetSpec(
        name=name,
        class_names=tuple("0123456789"),
        files=files,
        md5={k: _md5(PAYLOADS[f]) for k, f in files.items()},
        mirrors=("http://127.0.0.1:9/never/",),
        **kw,
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


BAD = ["missing", "corrupt", "trunc", "slow", "reset"]


def test_falls_through_to_good_mirror(server, tmp_path):
    name = "train-labels-idx1-ubyte.gz"
    dest = tmp_path / "dl" / name
    urls = [server.url(k) + name for k in BAD + ["good"]]
    t = time.perf_counter()
    assert download_file(urls, dest, _md5(PAYLOADS[name]), timeout=TIMEOUT) == dest
    assert time.perf_counter() - t < SLOW_S - 0.5  # the slow mirror was abandoned at the timeout
    assert dest.read_bytes() == PAYLOADS[name]
    assert _leftovers(dest.parent) == [name]  # no temporary or partial files
    assert [h.split("/")[1] for h in server.hits[-6:]] == BAD + ["good"]


@pytest.mark.parametrize(
    "kind, phrase",
    [("missing", "HTTP 404"), ("corrupt", "md5 mismatch"), ("trunc", "truncated"), ("slow", "timed out")],
)
def test_each_fault_is_rejected(server, tmp_path, kind, phrase):
    name = "train-images-idx3-ubyte.gz"
    dest = tmp_path / "dl" / name
    with pytest.raises(DownloadError, match=phrase) as info:
        download_file([server.url(kind) + name], dest, _md5(PAYLOADS[name]), timeout=TIMEOUT)
    assert str(info.value).startswith(str(dest)) and "\n" not in str(info.value)
    assert _leftovers(dest.parent) == []


def test_progress_callback(server, tmp_path):
    name = "t10k-images-idx3-ubyte.gz"
    calls = []
    download_file([server.url("good") + name], tmp_path / name, None, TIMEOUT, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (len(PAYLOADS[name]), len(PAYLOADS[name]))
    download_file([server.url("good") + name], tmp_path / "bar" / name, None, TIMEOUT, progress=True)  # tqdm
    assert (tmp_path / "bar" / name).read_bytes() == PAYLOADS[name]


def test_locate_downloads_into_cache_once(server, tmp_path):
    spec = _spec()
    paths = locate(spec, mirrors=[server.url("corrupt"), server.url("good")], timeout=TIMEOUT)
    folder = tmp_path / "cache" / "mnistlab" / "toyset"
    assert folder == cache_dir("toyset")
    assert set(paths) == set(SPLIT_KEYS) and all(p.parent == folder for p in paths.values())
    assert _leftovers(folder) == sorted(PAYLOADS)
    for key, p in paths.items():
        assert p.read_bytes() == PAYLOADS[spec.files[key]]
    n = len(server.hits)
    assert locate(spec, mirrors=[server.url("good")]) == paths
    assert len(server.hits) == n  # second call: found in the cache, no request


def test_locate_downloads_only_missing(server, tmp_path):
    spec = _spec()
    data = tmp_path / "data"
    data.mkdir()
    for f in list(PAYLOADS)[:3]:
        (data / f).write_bytes(PAYLOADS[f])
    n = len(server.hits)
    paths = locate(spec, data_dir=data, mirrors=[server.url("good")])
    assert len(server.hits) == n + 1
    assert paths["test_labels"].parent == cache_dir("toyset") and paths["train_images"].parent == data


def test_offline_message_names_folders_and_files(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "env"))
    spec = _spec()
    with pytest.raises(DownloadError) as info:
        locate(spec, data_dir=tmp_path / "mine", mirrors=[server.url("missing"), server.url("corrupt")])
    msg = str(info.value)
    assert "\n" not in msg
    for d in [tmp_path / "mine", tmp_path / "env" / "toyset", tmp_path / "env", cache_dir("toyset"),
              Path("/usr/share/datasets/toyset")]:  # fmt: skip
        assert str(d) in msg
    for f in PAYLOADS:
        assert f in msg
    assert "HTTP 404" in msg and "md5 mismatch" in msg
    assert _leftovers(cache_dir("toyset")) == []
    with pytest.raises(DownloadError, match="download disabled"):
        locate(spec, download=False)


def test_search_order(tmp_path, monkeypatch):
    env, mine = tmp_path / "env", tmp_path / "mine"
    monkeypatch.setenv("MNISTLAB_DATA", str(env))
    dirs = search_dirs("toyset", mine)
    assert dirs == [mine, mine / "toyset", env / "toyset", env, cache_dir("toyset"), Path("/usr/share/datasets/toyset")]
    assert search_dirs("mnist")[-1].name == "mnist" and search_dirs("mnist")[-1].parent.name == "data"

    spec = _spec()
    where = {"data": mine, "env": env / "toyset", "envroot": env, "cache": cache_dir("toyset")}
    for folder in where.values():
        for f, body in PAYLOADS.items():
            write = folder / f
            write.parent.mkdir(parents=True, exist_ok=True)
            write.write_bytes(body)
    for label in ["data", "env", "envroot", "cache"]:
        found = locate(spec, data_dir=mine, download=False)
        assert {p.parent for p in found.values()} == {where[label]}, label
        for f in PAYLOADS:
            (where[label] / f).unlink()
    with pytest.raises(DownloadError):
        locate(spec, data_dir=mine, download=False)


def test_uncompressed_names_accepted(tmp_path):
    spec = _spec()
    for key, f in spec.files.items():
        write_idx(tmp_path / f.removesuffix(".gz"), np.zeros(2, np.uint8))
    found = find_local(spec, tmp_path)
    assert all(p is not None and p.suffix != ".gz" for p in found.values())


def _emnist_zip(split: str) -> tuple[bytes, dict[str, bytes]]:
    spec = get_dataset_spec(f"emnist-{split}")
    members = {m: PAYLOADS[get_dataset_spec("mnist").files[k]] for k, m in spec.archive.members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for m, body in members.items():
            zf.writestr(m, body)
        zf.writestr("gzip/emnist-other-file.gz", b"unused")
    return buf.getvalue(), members


def test_emnist_archive_download_and_extract(server, tmp_path):
    zip_bytes, members = _emnist_zip("letters")
    server.files["gzip.zip"] = zip_bytes
    base = get_dataset_spec("emnist-letters")
    spec = dataclasses.replace(base, archive=dataclasses.replace(base.archive, md5=_md5(zip_bytes)))
    paths = locate(spec, mirrors=[server.url("trunc"), server.url("good")], timeout=TIMEOUT)
    assert (cache_dir("emnist") / "gzip.zip").read_bytes() == zip_bytes
    for key, p in paths.items():
        assert p.parent == cache_dir("emnist-letters")
        assert p.read_bytes() == members[spec.archive.members[key]]
    assert _leftovers(cache_dir("emnist-letters")) == sorted(spec.files.values())

    # another split extracts from the cached zip without any request
    n = len(server.hits)
    base = get_dataset_spec("emnist-digits")
    other = dataclasses.replace(base, archive=ArchiveSpec("gzip.zip", "0" * 32, base.archive.members))
    with pytest.raises(DownloadError, match="bad archive"):  # our zip has no digits members
        locate(other, mirrors=[server.url("good")])
    assert len(server.hits) == n


def test_emnist_zip_in_data_dir(tmp_path):
    zip_bytes, members = _emnist_zip("balanced")
    (tmp_path / "gzip.zip").write_bytes(zip_bytes)
    paths = locate(get_dataset_spec("emnist-balanced"), data_dir=tmp_path, mirrors=["http://127.0.0.1:9/"])
    assert set(paths) == set(SPLIT_KEYS)
    assert paths["train_labels"].read_bytes() == members["gzip/emnist-balanced-train-labels-idx1-ubyte.gz"]


def test_emnist_bad_zip_md5(server, tmp_path):
    zip_bytes, _ = _emnist_zip("mnist")
    server.files["gzip.zip"] = zip_bytes
    with pytest.raises(DownloadError, match="md5 mismatch") as info:
        locate(get_dataset_spec("emnist-mnist"), mirrors=[server.url("good")], timeout=TIMEOUT)
    assert "gzip.zip" in str(info.value)
    assert _leftovers(cache_dir("emnist")) == [] and _leftovers(cache_dir("emnist-mnist")) == []
