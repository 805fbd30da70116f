"""`mnistlab serve`: the API in-process (Starlette's TestClient), every bad request, and the command itself."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="httpx (in the dev extra) is needed for Starlette's TestClient")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # newer Starlette warns that it prefers httpx2 for TestClient
    from starlette.testclient import TestClient  # noqa: E402

from mnistlab.data.images import prepare_image  # noqa: E402
from mnistlab.evaluation.predict import Predictor  # noqa: E402
from mnistlab.serve.app import create_app  # noqa: E402
from process_helpers import child_pids  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-6a3e47d" / "fastcnn-tiny"
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def client():
    app = create_app(FIXTURE, max_body=256 * 1024, max_batch=8)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def drawing(kind: str) -> Image.Image:
    """A 280x280 canvas-like drawing: black ink, thick strokes, on white."""
    im = Image.new("L", (280, 280), 255)
    d = ImageDraw.Draw(im)
    if kind == "1":
        d.line([(140, 40), (140, 240)], fill=0, width=22)
    elif kind == "0":
        d.ellipse([(80, 40), (200, 240)], outline=0, width=22)
    elif kind == "7":
        d.line([(70, 50), (210, 50), (120, 240)], fill=0, width=22, joint="curve")
    return im


# ----------------------------------------------------------------------------- the good paths


def test_healthz_and_model_card(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    card = client.get("/api/model").json()
    assert card["model"] == "fastcnn" and card["dataset"] == "mnist"
    assert card["class_names"] == [str(i) for i in range(10)]
    assert card["parameters"] == sum(p.numel() for p in Predictor.from_checkpoint(FIXTURE).model.parameters())
    assert card["test_accuracy"] == pytest.approx(json.loads((FIXTURE / "evaluation.json").read_text())["accuracy"])


def test_the_app_reads_the_checkpoint_once(monkeypatch):
    """The model and its card come from one read of the file (the one checkpoint reader)."""
    from mnistlab.runs import checkpoint

    real, reads = checkpoint.read_checkpoint, []
    monkeypatch.setattr(checkpoint, "read_checkpoint", lambda *a, **k: reads.append(a) or real(*a, **k))
    card = create_app(FIXTURE).state.service.card
    assert len(reads) == 1
    assert card["model"] == "fastcnn" and card["checkpoint"] == "last.safetensors" and card["run"] == FIXTURE.name
    assert card["test_accuracy"] == 0.9457


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'id="canvas"' in html and 'id="prediction"' in html and "touch-action: none" in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_drawn_digits_as_png_bodies(client, digit):
    r = client.post("/api/predict", content=png(drawing(digit)), headers=PNG)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["blank"] is False and body["label"] == digit and body["class"] == int(digit)
    assert set(body["probabilities"]) == {str(i) for i in range(10)}
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    # The preview is exactly the image `mnistlab predict` prepares.
    assert body["prepared"] == prepare_image(png(drawing(digit))).reshape(-1).tolist()


def test_api_agrees_with_predictor_on_mnist_test_digits(client, mnist_raw):
    images, labels = mnist_raw.test_x[:20], mnist_raw.test_y[:20]
    predictor = Predictor.from_checkpoint(FIXTURE)
    expected = predictor.predict_files([png(Image.fromarray(x)) for x in images])
    for x, want in zip(images, expected):
        got = client.post("/api/predict", content=png(Image.fromarray(x)), headers=PNG).json()
        assert got["label"] == want["label"]
        assert got["probabilities"][want["label"]] == pytest.approx(want["prob"], abs=1e-5)
    # Already-prepared pixels (like CSV rows) go to the model as they are.
    got = [client.post("/api/predict", json={"pixels": x.reshape(-1).tolist()}).json()["class"] for x in images]
    assert got == predictor.classify(images).tolist()
    assert np.mean(np.array(got) == labels) >= 0.85


def test_json_base64_data_url_jpeg_and_batches(client):
    one = png(drawing("1"))
    assert client.post("/api/predict", json={"image": base64.b64encode(one).decode()}).json()["label"] == "1"
    data_url = "data:image/png;base64," + base64.b64encode(one).decode()
    assert client.post("/api/predict", json={"image": data_url}).json()["label"] == "1"
    jpeg = png(drawing("0").convert("RGB"), "JPEG")
    assert client.post("/api/predict", content=jpeg, headers={"content-type": "image/jpeg"}).json()["label"] == "0"

    batch = [{"image": base64.b64encode(png(drawing(d))).decode()} for d in "107"] + [{"pixels": [0] * 784}]
    out = client.post("/api/predict", json=batch).json()["predictions"]
    assert [p["label"] for p in out] == ["1", "0", "7", None] and out[3]["blank"] is True

    files = [("images", (f"ignored-{d}.png", png(drawing(d)), "image/png")) for d in "71"]
    out = client.post("/api/predict", files=files).json()["predictions"]
    assert [p["label"] for p in out] == ["7", "1"]


def test_blank_images_get_no_class(client):
    for im in (Image.new("L", (280, 280), 255), Image.new("RGBA", (50, 50), (0, 0, 0, 0))):
        body = client.post("/api/predict", content=png(im), headers=PNG).json()
        assert body["blank"] is True and body["class"] is None and body["label"] is None
        assert body["probabilities"] is None and body["prepared"] == [0] * 784
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (280, 280), dtype=np.uint8))
    assert client.post("/api/predict", content=png(noise), headers=PNG).json()["blank"] is True


# ----------------------------------------------------------------------------- bad requests


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height pixels: a decompression bomb's header (the data never decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def real_bomb() -> bytes:
    """A 5000x5000 all-black PNG: 25 MP (over the server's 16.7 MP) in a few kilobytes."""
    return png(Image.new("1", (5000, 5000), 0))


BAD = [
    # (name, kwargs for client.post, status)
    ("no content type", dict(content=b"abc", headers={"content-type": ""}), 415),
    ("text/plain", dict(content=b"abc", headers={"content-type": "text/plain"}), 415),
    ("svg", dict(content=b"<svg/>", headers={"content-type": "image/svg+xml"}), 415),
    ("form-urlencoded", dict(content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}), 415),
    ("garbage png", dict(content=b"not a png at all", headers=PNG), 422),
    ("empty png", dict(content=b"", headers=PNG), 422),
    ("jpeg sent as png", dict(content=png(drawing("1").convert("RGB"), "JPEG"), headers=PNG), 422),
    ("truncated png", dict(content=png(drawing("1"))[:300], headers=PNG), 422),
    ("eps as png", dict(content=b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", headers=PNG), 422),
    ("bomb header", dict(content=png_header_only(100_000, 100_000), headers=PNG), 413),
    ("bomb header 20k", dict(content=png_header_only(20_000, 20_000), headers=PNG), 413),
    ("real bomb", dict(content=real_bomb(), headers=PNG), 413),
    ("too big body", dict(content=b"\0" * (256 * 1024 + 1), headers=PNG), 413),
    ("bad json", dict(content=b"{\"image\": ", headers={"content-type": "application/json"}), 422),
    ("bad utf8 json", dict(content=b"\xff\xfe{}", headers={"content-type": "application/json"}), 422),
    ("deep json", dict(content=b"[" * 100_000, headers={"content-type": "application/json"}), 422),
    ("json number", dict(json=3), 422),
    ("json string", dict(json="abc"), 422),
    ("empty object", dict(json={}), 422),
    ("both keys", dict(json={"image": "", "pixels": []}), 422),
    ("bad base64", dict(json={"image": "***"}), 422),
    ("base64 not str", dict(json={"image": 12}), 422),
    ("base64 of text", dict(json={"image": base64.b64encode(b"hello").decode()}), 422),
    ("base64 bomb", dict(json={"image": base64.b64encode(png_header_only(50_000, 50_000)).decode()}), 413),
    ("data url not base64", dict(json={"image": "data:image/png,abc"}), 422),
    ("pixels short", dict(json={"pixels": [0] * 783}), 422),
    ("pixels long", dict(json={"pixels": [0] * 785}), 422),
    ("pixels nested", dict(json={"pixels": [[0] * 28] * 28}), 422),
    ("pixels strings", dict(json={"pixels": ["0"] * 784}), 422),
    ("pixels bools", dict(json={"pixels": [True] * 784}), 422),
    ("pixels negative", dict(json={"pixels": [-1] + [0] * 783}), 422),
    ("pixels too big", dict(json={"pixels": [256] + [0] * 783}), 422),
    ("pixels nan", dict(content=b'{"pixels": [NaN' + b", 0" * 783 + b"]}", headers={"content-type": "application/json"}), 422),
    ("pixels huge number", dict(content=b'{"pixels": [1e999' + b", 0" * 783 + b"]}", headers={"content-type": "application/json"}), 422),
    ("pixels not list", dict(json={"pixels": "0" * 784}), 422),
    ("empty batch", dict(json=[]), 422),
    ("batch too long", dict(json=[{"pixels": [0] * 784}] * 9), 413),
    ("batch bad item", dict(json=[{"pixels": [0] * 784}, {"image": "!!"}]), 422),
    ("batch of numbers", dict(json=[1, 2]), 422),
    ("multipart no files", dict(data={"a": "b"}, files=None), 422),
    ("multipart bad file", dict(files=[("f", ("x.png", b"nope", "image/png"))]), 422),
    ("multipart svg", dict(files=[("f", ("x.svg", b"<svg/>", "image/svg+xml"))]), 415),
    ("multipart too many", dict(files=[("f", ("x.png", b"x", "image/png"))] * 9), 422),
    ("multipart broken", dict(content=b"--xyz\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=xyz"}), 422),
    ("multipart no boundary", dict(content=b"abc", headers={"content-type": "multipart/form-data"}), 422),
]


@pytest.mark.parametrize("name,kwargs,status", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_4xx_json_and_the_server_keeps_serving(client, name, kwargs, status):
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name == "multipart no files":  # a form with only text fields
        kwargs = dict(files={"a": (None, "b")})
    r = client.post("/api/predict", **kwargs)
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert isinstance(error, str) and error and "Traceback" not in error and "\n" not in error
    ok = client.post("/api/predict", content=png(drawing("1")), headers=PNG)
    assert ok.status_code == 200 and ok.json()["label"] == "1"


def test_errors_about_uploaded_files_name_them(client):
    """A multipart file's error starts with the name the client sent (its last path part), as
    `mnistlab predict`'s name the file; a name sent twice adds the index; other bodies are "body" or "item N"."""
    good = png(drawing("1"))
    cases = [
        ([("f", ("digit.png", good[:300], "image/png"))], 422, "digit.png: truncated or corrupt image data"),
        ([("f", ("C:\\Users\\me\\seven.png", b"nope", "image/png"))], 422, "seven.png: not a PNG image"),
        ([("f", ("../up/x.svg", b"<svg/>", "image/svg+xml"))], 415, "x.svg: unsupported content type image/svg+xml"),
        ([("f", ("ok.png", good, "image/png")), ("f", ("bad.png", good[:300], "image/png"))], 422,
         "bad.png: truncated or corrupt image data"),  # found when the batch is prepared: the bad one named
        ([("f", ("a.png", good, "image/png")), ("f", ("a.png", b"nope", "image/png"))], 422, "file 1 (a.png): not a"),
    ]
    for files, status, start in cases:
        r = client.post("/api/predict", files=files)
        assert r.status_code == status and list(r.json()) == ["error"], r.text
        assert r.json()["error"].startswith(start), r.json()
    r = client.post("/api/predict", content=good[:300], headers=PNG)
    assert r.json()["error"].startswith("body: truncated or corrupt image data")
    r = client.post("/api/predict", json=[{"pixels": [0] * 784}, {"image": base64.b64encode(good[:300]).decode()}])
    assert r.json()["error"].startswith("item 1: truncated or corrupt image data")
    ok = client.post("/api/predict", files=[("f", ("one.png", good, "image/png"))])
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] == "1"


def test_declared_length_over_the_cap_is_refused_before_reading(client):
    r = client.post("/api/predict", content=b"x", headers={"content-type": "image/png", "content-length": str(10**9)})
    assert r.status_code == 413


def test_methods_paths_and_no_file_names_from_requests(client):
    assert client.get("/api/predict").status_code == 405
    assert client.get("/../../etc/passwd").status_code == 404
    r = client.post("/api/predict", json={"image": "/etc/passwd"})
    assert r.status_code == 422
    r = client.post("/api/predict", json={"image": str(FIXTURE / "last.safetensors")})
    assert r.status_code == 422


def test_cors_only_with_the_flag():
    plain = TestClient(create_app(FIXTURE))
    allowed = TestClient(create_app(FIXTURE, cors_origins=["https://example.org"]))
    origin = {"origin": "https://example.org"}
    assert "access-control-allow-origin" not in plain.get("/api/model", headers=origin).headers
    assert allowed.get("/api/model", headers=origin).headers["access-control-allow-origin"] == "https://example.org"


# ----------------------------------------------------------------------------- the command


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


LINGER_IDLE_HERE = 1.0  # $MNISTLAB_LINGER_IDLE for the servers of the lingering test (2 s by default)

# The `mnistlab serve` processes the command's tests start, by test: (flags, whether in a session of
# its own). Each costs seconds of imports before it answers, so those of the selected tests start side
# by side as the module's first test runs (module fixture `_launches`); a test then takes its own,
# still starting or already serving, and the one it starts after another stops is started there.
LAUNCHES = {
    "ctrl-c": (["--port", "0"], False),
    "other host": (["--host", "0.0.0.0", "--port", "0"], False),
    "two workers": (["--port", "0", "--workers", "2"], False),
    "burst": (["--port", "0", "--workers", "2"], False),
    "sigkilled": (["--port", "0", "--workers", "2"], True),
    "small 1": (["--port", "0", "--max-body", "0.25", "--workers", "1"], False),
    "small 2": (["--port", "0", "--max-body", "0.25", "--workers", "2"], False),
}
LAUNCHED_BY = {  # which test (or fixture parameter) takes which launch
    "test_serve_command_prints_url_answers_and_stops_cleanly_on_ctrl_c": ["ctrl-c"],
    "test_serve_warns_in_one_line_on_other_hosts": ["other host"],
    "test_serve_with_two_worker_processes_shares_the_port_and_stops_them_all": ["two workers"],
    "test_two_workers_share_a_burst_of_connections_and_a_dead_one_is_replaced": ["burst"],
    "test_a_sigkilled_serve_leaves_no_readiness_folder": ["sigkilled"],
    "test_oversized_bodies_get_the_413_json_not_a_reset": ["small 1", "small 2"],
    "test_a_lingering_connection_is_drained_within_bounds": ["small 1", "small 2"],
}


def _launch(key: str, tmp: Path) -> subprocess.Popen:
    """`mnistlab serve FIXTURE` with LAUNCHES[key]'s flags, in tmp (its cwd and $TMPDIR: the workers'
    readiness folder goes there)."""
    flags, own_session = LAUNCHES[key]
    env = {**_env(), "TMPDIR": str(tmp)}
    env.pop("MNISTLAB_LINGER_IDLE", None)  # the servers users run: the default
    if key.startswith("small"):
        env["MNISTLAB_LINGER_IDLE"] = str(LINGER_IDLE_HERE)
    return subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(FIXTURE), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp, start_new_session=own_session)


class _Launches:
    def __init__(self, tmp_path_factory) -> None:
        self.factory = tmp_path_factory
        self.started: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, key: str) -> None:
        tmp = self.factory.mktemp("serve")
        self.started[key] = (_launch(key, tmp), tmp)

    def take(self, key: str) -> tuple[subprocess.Popen, Path]:
        """The launch `key` and its folder: the one started beforehand, else one started now."""
        if key not in self.started:
            self.start(key)
        return self.started.pop(key)

    def stop_all(self) -> None:
        for key, (proc, _) in self.started.items():  # started, and not taken (a test failed before its turn)
            if LAUNCHES[key][1]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()


def _launch_keys(item) -> list[str]:
    keys = LAUNCHED_BY.get(getattr(item, "originalname", item.name), [])
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "small_server" in callspec.params:
        keys = [f"small {callspec.params['small_server']}"]
    return keys


@pytest.fixture(scope="module", autouse=True)
def _launches(request, tmp_path_factory):
    """The servers the selected tests of this module start, started side by side now."""
    launches = _Launches(tmp_path_factory)
    keys = {key for item in request.session.items if getattr(item, "module", None) is request.module
            for key in _launch_keys(item)}
    try:
        for key in LAUNCHES:
            if key in keys:
                launches.start(key)
        yield launches
    finally:
        launches.stop_all()


def test_serve_command_prints_url_answers_and_stops_cleanly_on_ctrl_c(_launches):
    import httpx

    proc, _ = _launches.take("ctrl-c")  # `mnistlab serve FIXTURE --port 0`
    try:
        first = proc.stdout.readline()
        url_line = proc.stdout.readline()
        assert "fastcnn on mnist" in first and "test accuracy 94.57%" in first, first
        assert url_line.startswith("open http://127.0.0.1:"), url_line
        url = url_line.split()[1]
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.post(url + "api/predict", content=png(drawing("7")), headers=PNG, timeout=10)
                break
            except httpx.TransportError:
                assert time.time() < deadline
                time.sleep(0.05)
        assert r.json()["label"] == "7"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err and "warning" not in err


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_serve_with_two_worker_processes_shares_the_port_and_stops_them_all(_launches):
    import httpx

    proc, tmp_path = _launches.take("two workers")  # --workers 2, $TMPDIR (the readiness folder's) tmp_path
    try:
        proc.stdout.readline()
        url = proc.stdout.readline().split()[1]  # printed once both processes have built their app
        workers = [w for w in child_pids(proc.pid) if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
        assert len(workers) == 2  # uvicorn's spawned server processes (not multiprocessing's resource tracker)
        ready = [p for p in tmp_path.glob("mnistlab-serve-*/*")]
        assert sorted(int(p.name) for p in ready) == sorted(workers)
        answers = []
        for _ in range(4):  # no waiting or retrying: both already answer
            with httpx.Client(timeout=10) as client:  # a new connection each time: the kernel spreads them
                answers.append(client.post(url + "api/predict", content=png(drawing("7")), headers=PNG).json())
        assert all(a["label"] == "7" for a in answers)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]  # both stopped (and reaped) with the parent
    assert not list(tmp_path.glob("mnistlab-serve-*"))  # the readiness folder is removed


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _established_inodes(port: int) -> set[int]:
    """Inodes of the established TCP connections whose local port is `port` (the server's side)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                out.add(int(fields[9]))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux")
def test_two_workers_share_a_burst_of_connections_and_a_dead_one_is_replaced(_launches):
    """16 keep-alive clients connecting at once land on both processes (each listens on its own socket:
    with one shared socket the first process awake took them all in one run of four), and a process
    killed while serving is replaced while the other keeps answering."""
    import socket as socketlib
    from urllib.parse import urlsplit

    proc, tmp_path = _launches.take("burst")  # --workers 2, $TMPDIR (the readiness folder's) tmp_path
    conns = []
    try:
        proc.stdout.readline()
        url = urlsplit(proc.stdout.readline().split()[1])
        workers = [w for w in child_pids(proc.pid) if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
        assert len(workers) == 2
        body = png(drawing("7"))
        request = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        conns = [socketlib.create_connection((url.hostname, url.port), timeout=30) for _ in range(16)]
        for c in conns:
            c.sendall(request)
        for c in conns:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        served = _established_inodes(url.port)
        held = {w: len(_socket_inodes(w) & served) for w in workers}
        assert sum(held.values()) == 16 and min(held.values()) >= 1, held
        for c in conns:
            c.close()

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = [w for w in child_pids(proc.pid) if Path(f"/proc/{w}/cmdline").exists()
                   and b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
            marked = {int(p.name) for p in tmp_path.glob("mnistlab-serve-*/*") if p.name.isdigit()}
            if len(now) == 2 and workers[0] not in now and marked == set(now):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the killed process was not replaced")
        import httpx

        with httpx.Client(timeout=30) as client:
            assert client.post(url.geturl() + "api/predict", content=body, headers=PNG).json()["label"] == "7"
        from mnistlab.cli import main

        # The port is busy for another server, even one whose processes share ports among themselves.
        assert main(["serve", str(FIXTURE), "--port", str(url.port), "--workers", "2"]) == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        for c in conns:
            c.close()
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert not [w for w in now if Path(f"/proc/{w}").exists()]


def test_serve_warns_in_one_line_on_other_hosts(_launches):
    proc, _ = _launches.take("other host")  # --host 0.0.0.0 --port 0
    try:
        warning = proc.stderr.readline()
        proc.stdout.readline()
        url_line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=90)
    assert warning.startswith("mnistlab: warning: listening on 0.0.0.0: anyone who can reach this machine")
    assert url_line.startswith("open http://0.0.0.0:")


def test_default_workers_are_one_per_core_up_to_two_on_the_cpu(monkeypatch):
    from mnistlab.cli import serve

    for cpus, expected in ((1, 1), (2, 2), (16, serve.AUTO_WORKERS)):
        monkeypatch.setattr(serve, "usable_cpus", lambda: cpus)
        assert serve.default_workers("cpu") == expected
    assert serve.default_workers("cuda") == serve.default_workers("auto") == 1  # one accelerator, one process


def test_serve_refuses_bad_flags_missing_runs_and_busy_ports(tmp_path):
    from mnistlab.cli import main

    assert main(["serve", str(FIXTURE), "--port", "70000"]) == 2
    assert main(["serve", str(FIXTURE), "--workers", "0"]) == 2
    assert main(["serve", str(FIXTURE), "--concurrency", "0"]) == 2
    assert main(["serve", str(tmp_path), "--port", "0"]) == 1  # no checkpoint there
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["serve", str(FIXTURE), "--port", str(busy.getsockname()[1])]) == 1
    finally:
        busy.close()


def test_serve_without_the_extra_says_what_to_install(tmp_path):
    # Hide starlette and uvicorn from a fresh interpreter: the command says in one line what to install.
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from mnistlab.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "serve", str(FIXTURE)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "pip install" in r.stderr and "[serve]" in r.stderr


def test_concurrent_requests_share_one_model_call_and_each_gets_its_own_answer():
    """Requests waiting together go out as one batch (micro-batching); a bad image fails only its own request."""
    import asyncio

    from mnistlab.errors import ImageError
    from mnistlab.serve.app import Batcher

    service = create_app(FIXTURE).state.service
    real, calls = service.answer_many, []
    service.answer_many = lambda requests, names=None: calls.append(len(requests)) or real(requests, names)
    requests = [[png(drawing(k))] for k in "1077"] + [[b"\x89PNG\r\n\x1a\nbroken"], [np.zeros((28, 28), np.uint8)],
                                                       [png(drawing("0")), png(drawing("1"))]]

    async def send_all():
        batcher = Batcher(service, concurrency=1, max_items=256)
        return await asyncio.gather(*(batcher.answer(r) for r in requests), return_exceptions=True)

    results = asyncio.run(send_all())
    assert sum(calls) == len(requests) and max(calls) > 1  # batched, and every request answered once
    assert isinstance(results[4], ImageError)
    for request, got in zip(requests, results):
        if request is requests[4]:
            continue
        alone = service.answer(request)
        assert [a["class"] for a in got] == [a["class"] for a in alone] and len(got) == len(request)
        assert [a["blank"] for a in got] == [a["blank"] for a in alone] and [a["prepared"] for a in got] == [a["prepared"] for a in alone]
        for a, b in zip(got, alone):
            if not a["blank"]:
                assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4
    assert results[5][0]["blank"] and not results[0][0]["blank"]


def test_a_killed_servers_readiness_folder_is_swept_by_the_next_one(tmp_path, monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    from mnistlab.cli.serve import _ready_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = time.time() - 60

    def folder(name: str, age: float = old) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "123").touch()
        os.utime(path, (age, age))
        return path

    dead = folder("mnistlab-serve-dead")  # a server killed with SIGKILL: nobody holds its lock
    just_dead = folder("mnistlab-serve-just-dead", age=time.time())  # killed a moment ago: removed all the same
    alive = folder("mnistlab-serve-alive")  # a running server (here: this test) holds its lock
    held = os.open(alive, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)
    making = folder(".mnistlab-serve-making", age=time.time())  # perhaps a server about to take its lock
    stale = folder(".mnistlab-serve-stale")  # one killed between making its folder and locking it
    (tmp_path / "mnistlab-serve-link").symlink_to(alive)  # not a folder of ours: never followed
    try:
        new, lock = _ready_folder()
        assert Path(new).parent == tmp_path and Path(new).name.startswith("mnistlab-serve-")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(new).name, alive.name, making.name,
                                                                     "mnistlab-serve-link"])
        assert (alive / "123").exists() and not dead.exists() and not just_dead.exists() and not stale.exists()
        # The new folder's lock is held while the server runs: the next server leaves it alone.
        other = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(other)
        os.close(_ready_folder()[1])
        assert Path(new).is_dir()
        os.close(lock)  # the server stops (or dies): its folder is now fair game, at once
        os.close(_ready_folder()[1])
        assert not Path(new).exists()
    finally:
        os.close(held)


def _serve_two(proc: subprocess.Popen) -> tuple[subprocess.Popen, list[int]]:
    """`mnistlab serve --workers 2` in a session of its own (the "sigkilled" launch), once it answers:
    (it, its workers)."""
    proc.stdout.readline()
    assert proc.stdout.readline().startswith("open http"), proc.stderr.read()  # both workers have built their app
    return proc, [w for w in child_pids(proc.pid) if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]


def _gone(pids: list[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]
                   for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_a_sigkilled_serve_leaves_no_readiness_folder(_launches):
    """SIGKILL on the parent alone: its workers stop and remove its folder (nothing is left at all).
    SIGKILL on the parent and its workers at once: the next start removes the folder at once."""
    first, tmp_path = _launches.take("sigkilled")  # its readiness folder in tmp_path ($TMPDIR)
    first, workers = _serve_two(first)
    try:
        assert len(list(tmp_path.glob("mnistlab-serve-*/*"))) == 2
        os.killpg(first.pid, signal.SIGKILL)  # the whole group: nobody cleans up
        first.wait(30)
        assert _gone(workers)
        (left,) = tmp_path.glob("mnistlab-serve-*")
    finally:
        first.kill()
    second, workers = _serve_two(_launch("sigkilled", tmp_path))  # the next start, with the same $TMPDIR
    try:
        assert not left.exists()  # removed by the next start, young as it is
        assert len(list(tmp_path.glob("mnistlab-serve-*"))) == 1
        second.kill()  # SIGKILL on the parent alone
        second.wait(30)
        assert _gone(workers)
        assert list(tmp_path.iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(second.pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- oversized bodies, real connections


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def small_server(request, _launches):
    """`mnistlab serve --max-body 0.25` (256 KiB) with 1 or 2 worker processes, lingering LINGER_IDLE_HERE
    seconds without data ($MNISTLAB_LINGER_IDLE): (url, the process)."""
    proc, _ = _launches.take(f"small {request.param}")
    try:
        proc.stdout.readline()
        yield proc.stdout.readline().split()[1], proc  # printed once every process answers
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and "Exception" not in err, err


def _chunks(body: bytes, size: int = 65536):
    return (body[i : i + size] for i in range(0, len(body), size))


def _urllib_post(url: str, body: bytes, chunked: bool) -> tuple[int, dict]:
    """urllib as people use it: it sends `Connection: close` and writes the whole body before reading."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "image/png", **({"Transfer-Encoding": "chunked"} if chunked else {})}
    req = urllib.request.Request(url + "api/predict", data=_chunks(body) if chunked else body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _httpx_post(url: str, body: bytes, chunked: bool, close: bool = False) -> tuple[int, dict]:
    import httpx

    headers = {"content-type": "image/png", **({"connection": "close"} if close else {})}
    with httpx.Client(timeout=30) as client:  # h11: also writes the whole body, then reads
        r = client.post(url + "api/predict", content=_chunks(body) if chunked else body, headers=headers)
        return r.status_code, r.json()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_bodies_get_the_413_json_not_a_reset(small_server, chunked):
    """A client that writes a 5 MB body before it reads gets the 413 JSON (before the lingering close,
    urllib saw "Connection reset by peer" or "Broken pipe": the server answered and closed while it
    was still sending); keep-alive clients too, and the server goes on serving."""
    url, _ = small_server
    body = b"\0" * (5 * 1024 * 1024)
    expected = "request body is over the limit of 262,144 bytes" if chunked else \
        "request body is 5,242,880 bytes, over the limit of 262,144"
    for post in (_urllib_post, _httpx_post, lambda u, b, c: _httpx_post(u, b, c, close=True)):
        for _ in range(2):
            assert post(url, body, chunked) == (413, {"error": expected})
    status, answer = _urllib_post(url, png(drawing("7")), chunked)
    assert status == 200 and answer["label"] == "7"


def _raw_request(url: str, length: int) -> socket.socket:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = socket.create_connection((parts.hostname, parts.port), timeout=10)
    conn.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
                 .encode())
    return conn


def _answer_then_end(conn) -> bytes:
    data = b""
    while chunk := conn.recv(65536):  # the answer, then the end of the stream (the server shut its side)
        data += chunk
    return data


def test_linger_idle_is_two_seconds_unless_the_environment_says_otherwise(monkeypatch):
    from mnistlab.serve.protocol import LINGER_IDLE_DEFAULT, LINGER_SECONDS, _linger_idle

    assert LINGER_IDLE_DEFAULT == 2.0
    monkeypatch.delenv("MNISTLAB_LINGER_IDLE", raising=False)
    assert _linger_idle() == 2.0
    for text, expected in (("0.5", 0.5), (str(LINGER_SECONDS), LINGER_SECONDS), ("0", 2.0), ("-1", 2.0), ("nan", 2.0),
                           ("inf", 2.0), ("11", 2.0), ("soon", 2.0), ("", 2.0)):
        monkeypatch.setenv("MNISTLAB_LINGER_IDLE", text)
        assert _linger_idle() == expected, text


def test_a_lingering_connection_is_drained_within_bounds(small_server):
    """After the early 413 the server reads and drops what the client still sends, until the client
    closes (a clean end, no reset), for at most LINGER_BYTES bytes or LINGER_IDLE seconds of silence."""
    from mnistlab.serve.protocol import LINGER_BYTES

    url, _ = small_server  # lingering LINGER_IDLE_HERE seconds without data (2 s by default)
    # A client that reads the answer while sending, sends the rest, then closes its side: no reset.
    conn = _raw_request(url, 8 * 1024 * 1024)
    with conn:
        conn.sendall(b"\0" * 65536)
        answer = _answer_then_end(conn)
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        conn.sendall(b"\0" * (8 * 1024 * 1024 - 65536))
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1) == b""  # not ConnectionResetError
    # One that sends on past the bound is cut off (here a reset is fine: it was told to stop).
    conn = _raw_request(url, 2 * LINGER_BYTES)
    with conn:
        assert _answer_then_end(conn).startswith(b"HTTP/1.1 413")
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(2 * LINGER_BYTES // 65536):
                conn.sendall(b"\0" * 65536)
    # One that goes silent without closing is closed after LINGER_IDLE (here LINGER_IDLE_HERE) seconds.
    conn = _raw_request(url, 8 * 1024 * 1024)
    with conn:
        assert _answer_then_end(conn).startswith(b"HTTP/1.1 413")
        time.sleep(LINGER_IDLE_HERE + 0.5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(20):  # the first send may still be accepted; the reset answers it
                conn.sendall(b"\0" * 65536)
                time.sleep(0.05)
    status, answer = _httpx_post(url, png(drawing("1")), chunked=False)
    assert status == 200 and answer["label"] == "1"
