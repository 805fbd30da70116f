"""`mnistlab export RUN --format web`: the static folder, its failures, and the page in a real Chromium.

The committed fastcnn fixture (94.6% on MNIST) is exported once per module. The browser tests serve
the folder with Python's plain http.server in a thread (no mnistlab code behind it), draw digits
with the mouse and compare what the page shows with onnxruntime in Python on the very 28x28 input the
page prepared, and that input with `prepare_image` on the same canvas.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import clear_if_drawn, draw

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install -e '.[onnx]')")

from mnistlab.data.images import prepare_image  # noqa: E402
from mnistlab.export.runtime import OnnxPredictor  # noqa: E402
from mnistlab.serve.web import MANIFEST, RUNTIME  # noqa: E402

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "legacy-6a3e47d" / "fastcnn-tiny"
CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.timeout(300)


def mnistlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True, env=env, cwd=cwd)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("web") / "run"
    shutil.copytree(FIXTURE, run)
    r = mnistlab("export", str(run), "--format", "web")
    assert r.returncode == 0, r.stderr
    assert "same class 100.00%" in r.stdout and f"wrote {run / 'web'}/" in r.stdout
    assert "python -m http.server -d" in r.stdout
    return run / "web"


# ----------------------------------------------------------------------------- the folder


def test_the_folder_holds_the_page_model_runtime_and_licence(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == sorted(["index.html", "model.onnx", "LICENSE-onnxruntime-web.txt", "README.txt", MANIFEST, *RUNTIME])
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["onnxruntime_web"] == "1.31.1"
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == digest, name
    for name, digest in RUNTIME.items():  # the vendored runtime, decompressed, is the pinned npm file
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (exported / "LICENSE-onnxruntime-web.txt").read_text()
    assert manifest["model"]["model"] == "fastcnn" and manifest["model"]["test_accuracy"] == pytest.approx(0.9457, abs=1e-4)
    # The one template, in web mode: serve's page with its options replaced and the runtime loaded.
    page = (exported / "index.html").read_text()
    served = (ROOT / "src" / "mnistlab" / "serve" / "page.html").read_text()
    assert '{"mode": "web"' in page and '{"mode": "server"}' not in page
    assert '<script src="ort.wasm.min.js"></script>' in page and "Content-Security-Policy" in page
    assert page.split("<script>", 1)[1] == served.split("<script>", 1)[1]  # the same script, not a copy
    # The model is the run's, and it answers as the checkpoint's export does.
    assert OnnxPredictor.from_file(exported / "model.onnx").class_names == tuple("0123456789")


def test_exporting_again_replaces_the_earlier_export_whole(exported, tmp_path):
    out = tmp_path / "site"
    assert mnistlab("export", str(exported / "model.onnx"), "--format", "web", "--out", str(out)).returncode == 0
    (out / "stale.txt").write_text("from before")
    r = mnistlab("export", str(exported / "model.onnx"), "--format", "web", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    assert leftovers(tmp_path) == []


def test_an_onnx_file_exports_beside_itself_without_a_check(exported, tmp_path):
    model = tmp_path / "digits.onnx"
    shutil.copyfile(exported / "model.onnx", model)
    r = mnistlab("export", str(model), "--format", "web")
    assert r.returncode == 0, r.stderr
    assert "checking" not in r.stdout
    assert (tmp_path / "digits-web" / "model.onnx").read_bytes() == model.read_bytes()
    card = json.loads((tmp_path / "digits-web" / MANIFEST).read_text())["model"]
    assert card["checkpoint"] == "digits.onnx"


def test_an_onnx_file_without_mnistlab_metadata_exports_with_one_warning(exported, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(exported / "model.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "foreign.onnx")
    r = mnistlab("export", str(tmp_path / "foreign.onnx"), "--format", "web")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"mnistlab: warning: {OnnxPredictor.from_file(tmp_path / 'foreign.onnx').assumptions()}"
    card = json.loads((tmp_path / "foreign-web" / MANIFEST).read_text())["model"]
    assert card["class_names"] == [str(i) for i in range(10)] and card["test_accuracy"] is None


@pytest.mark.parametrize("case", ["missing run", "corrupt onnx", "out is a file", "out is someone's folder",
                                  "quantize", "opset on an onnx file", "out's parent missing"])
def test_bad_input_is_one_line_exit_1_and_leaves_nothing(case, exported, tmp_path):
    model = exported / "model.onnx"
    out = tmp_path / "site"
    if case == "missing run":
        args = [str(tmp_path / "nope"), "--out", str(out)]
    elif case == "corrupt onnx":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(model.read_bytes()[:5000])
        args = [str(bad), "--out", str(out)]
    elif case == "out is a file":
        out.write_text("mine")
        args = [str(model), "--out", str(out)]
    elif case == "out is someone's folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        args = [str(model), "--out", str(out)]
    elif case == "quantize":
        args = [str(FIXTURE), "--out", str(out), "--quantize", "int8"]
    elif case == "opset on an onnx file":
        args = [str(model), "--out", str(out), "--opset", "13"]
    else:
        args = [str(model), "--out", str(tmp_path / "no" / "site")]
    before = sorted(p.name for p in tmp_path.iterdir())
    r = mnistlab("export", *args, "--format", "web")
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnistlab: error: "), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no web folder, no temporary sibling
    if case == "out is a file":
        assert out.read_text() == "mine"
    if case == "out is someone's folder":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- the page in Chromium

browser_only = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM}")

STROKES = {
    "1": [[(140, 40), (140, 240)]],
    "0": [[(140 + 60 * math.sin(t / 24 * 2 * math.pi), 140 - 95 * math.cos(t / 24 * 2 * math.pi)) for t in range(25)]],
    "7": [[(70, 50), (210, 50), (120, 240)]],
}
SETTLED = ("document.body.dataset.ready === '1' && "
           "document.getElementById('prediction').dataset.for === document.getElementById('canvas').dataset.version")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(exported):
    """The folder behind a plain static file server: (url, the paths it was asked for)."""
    asked: list[str] = []

    class Handler(Quiet):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def do_POST(self):
            asked.append("POST " + self.path)
            self.send_error(405)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(exported)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", asked
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def until(pg, expr: str, timeout: float = 30.0) -> None:
    # The page's CSP (no 'unsafe-eval') refuses Playwright's wait_for_function; evaluate is not subject to it.
    end = time.monotonic() + timeout
    while not pg.evaluate(expr):
        assert time.monotonic() < end, f"timed out waiting for {expr}: {pg.locator('#message').inner_text()!r}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def loaded_page(browser, site):
    """The page, loaded once (each load compiles onnxruntime-web's wasm): (it, the errors it threw)."""
    context = browser.new_context(viewport={"width": 900, "height": 620})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(site[0])
    until(pg, SETTLED)
    yield pg, errors
    context.close()


@pytest.fixture
def page(loaded_page):
    """The loaded page, cleared (as its Clear button does) for a test that draws on it: no errors after."""
    pg, errors = loaded_page
    if clear_if_drawn(pg):
        until(pg, SETTLED)
    yield pg
    assert errors == []


def settled(pg) -> str:
    until(pg, SETTLED)
    return pg.locator("#prediction").inner_text()


def preview_pixels(pg) -> np.ndarray:
    return np.array(pg.evaluate("""() => {
      const c = document.getElementById('preview'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      return Array.from({length: c.width * c.height}, (_, i) => d[4 * i]);
    }"""), dtype=np.uint8).reshape(28, 28)


@browser_only
def test_an_empty_canvas_shows_no_class_and_the_card(page):
    assert page.locator("#prediction").inner_text() == ""
    assert page.locator("#message").inner_text() == "draw a digit"
    assert page.locator("#card-model").inner_text() == "fastcnn"
    assert page.locator("#card-accuracy").inner_text() == "94.57%"
    assert not preview_pixels(page).any()


@browser_only
@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_drawn_digits_are_named_as_onnxruntime_names_the_same_input(page, site, exported, digit):
    draw(page, STROKES[digit])
    assert settled(page) == digit
    shown = page.evaluate("window.mnistlabLast")
    pixels = preview_pixels(page)
    assert shown["prepared"] == pixels.reshape(-1).tolist() and pixels.any()
    # onnxruntime in Python (mnistlab predict's backend) on the 28x28 the page fed onnxruntime-web:
    predictor = OnnxPredictor.from_file(exported / "model.onnx")
    probs = predictor.probabilities(pixels[None])[0]
    assert shown["label"] == predictor.class_names[int(np.argmax(probs))] == digit
    np.testing.assert_allclose([shown["probabilities"][c] for c in predictor.class_names], probs, atol=1e-4)
    # ... and that 28x28 is what Python's prepare_image makes of the same canvas.
    png = base64.b64decode(page.evaluate("document.getElementById('canvas').toDataURL('image/png')").split(",", 1)[1])
    np.testing.assert_array_equal(prepare_image(png), pixels)
    assert page.locator("#bars .num").all_inner_texts()[int(digit)] == f"{100 * probs[int(digit)]:.1f}%"
    assert not [p for p in site[1] if "api" in p or p.startswith("POST")]  # nothing asked of a server


def _scribbles() -> dict[str, list]:
    import random

    rng = random.Random(0)
    out = {"tiny": [[(130, 130), (150, 130), (140, 160)]], "wide": [[(20, 140), (260, 150)]],
           "corner": [[(10, 10), (60, 40), (20, 80)]], "dot": [[(140, 140)]]}
    for i in range(4):
        out[f"random{i}"] = [[(rng.uniform(20, 260), rng.uniform(20, 260)) for _ in range(rng.randint(2, 6))]
                             for _ in range(rng.randint(1, 3))]
    return out


@browser_only
def test_every_drawing_is_prepared_exactly_as_prepare_image_and_classified_as_onnxruntime(page, exported, tmp_path):
    """Small, wide, off-centre, a dot, random scribbles, and an uploaded picture (dark ink on light paper)."""
    from PIL import Image, ImageDraw

    predictor = OnnxPredictor.from_file(exported / "model.onnx")

    def check(name: str) -> None:
        until(page, SETTLED)
        png = base64.b64decode(page.evaluate("document.getElementById('canvas').toDataURL('image/png')").split(",", 1)[1])
        shown = page.evaluate("window.mnistlabLast")
        expected = prepare_image(png)
        assert shown["prepared"] == expected.reshape(-1).tolist(), name
        probs = predictor.probabilities(expected[None])[0]
        assert shown["label"] == predictor.class_names[int(np.argmax(probs))], name
        np.testing.assert_allclose([shown["probabilities"][c] for c in predictor.class_names], probs, atol=1e-4)

    for name, strokes in _scribbles().items():
        page.click("#clear")
        until(page, SETTLED)
        draw(page, strokes)
        check(name)
    picture = Image.new("RGB", (400, 300), (235, 230, 220))
    ImageDraw.Draw(picture).line([(150, 40), (250, 40), (190, 260)], fill=(40, 40, 60), width=18)
    picture.save(tmp_path / "seven.jpg", quality=90)
    page.click("#clear")
    until(page, SETTLED)
    assert page.locator("#prediction").inner_text() == ""
    page.set_input_files("#upload", str(tmp_path / "seven.jpg"))
    until(page, "document.getElementById('prediction').textContent !== ''")  # the picture loads asynchronously
    check("upload")
    assert page.locator("#prediction").inner_text() == "7"


@browser_only
def test_clear_and_undo_empty_the_prediction(page):
    draw(page, STROKES["1"])
    assert settled(page) == "1"
    page.click("#clear")
    assert settled(page) == "" and page.locator("#message").inner_text() == "draw a digit"
    assert not preview_pixels(page).any()
    draw(page, STROKES["7"])
    assert settled(page) == "7"
    page.click("#undo")
    assert settled(page) == ""


@browser_only
def test_a_file_url_says_how_to_serve_the_folder(browser, exported):
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(exported.joinpath("index.html").as_uri())
    until(pg, "document.getElementById('message').textContent.includes('http.server')", timeout=10)
    assert pg.locator("#prediction").inner_text() == ""
    context.close()
