"""`mnistlab serve` end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A uvicorn server runs in a thread on a free port with the committed fastcnn fixture (94.6% on the
MNIST test set). Digits are drawn stroke by stroke with the mouse, and with touch on a phone-sized
viewport; the page's `#prediction` must name them, and the same canvas posted to the API must agree.
Set MNISTLAB_UPDATE_SCREENSHOT=1 to refresh docs/serve.png from the screenshot this test takes.
"""

from __future__ import annotations

import base64
import io
import math
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from browser_helpers import clear_if_drawn, draw

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("starlette", reason="the serve extra is not installed (pip install -e '.[serve]')")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from mnistlab.serve.app import MAX_BODY, create_app  # noqa: E402
from mnistlab.serve.workers import http_protocol  # noqa: E402

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "legacy-6a3e47d" / "fastcnn-tiny"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SETTLED = """() => {
  const p = document.getElementById('prediction'), c = document.getElementById('canvas');
  return document.body.dataset.ready === '1' && p.dataset.for === c.dataset.version;
}"""

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server():
    app = create_app(FIXTURE)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=http_protocol()))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def loaded_page(browser, server):
    """The page, loaded once for the tests that draw on it (page clears it between them)."""
    context = browser.new_context(viewport={"width": 900, "height": 620})
    pg = context.new_page()
    pg.goto(server)
    pg.wait_for_function(SETTLED)
    yield pg
    context.close()


@pytest.fixture
def page(loaded_page):
    """The loaded page, cleared (as its Clear button does) when an earlier test drew on it."""
    if clear_if_drawn(loaded_page):
        loaded_page.wait_for_function(SETTLED)
    return loaded_page


# ----------------------------------------------------------------------------- strokes (canvas units: 280x280)

STROKES = {
    "1": [[(140, 40), (140, 240)]],
    "0": [[(140 + 60 * math.sin(t / 24 * 2 * math.pi), 140 - 95 * math.cos(t / 24 * 2 * math.pi)) for t in range(25)]],
    "7": [[(70, 50), (210, 50), (120, 240)]],
    "-": [[(60, 140), (220, 140)]],
}


def settled(pg) -> str:
    pg.wait_for_function(SETTLED)
    return pg.locator("#prediction").inner_text()


def canvas_png(pg) -> bytes:
    url = pg.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def preview_pixels(pg) -> list[int]:
    return pg.evaluate("""() => {
      const c = document.getElementById('preview'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      return Array.from({length: c.width * c.height}, (_, i) => d[4 * i]);
    }""")


# ----------------------------------------------------------------------------- tests


def test_empty_canvas_says_draw_a_digit_and_shows_no_class(page):
    assert page.locator("#prediction").inner_text() == ""
    assert page.locator("#message").inner_text() == "draw a digit"
    assert page.locator("#card-model").inner_text() == "fastcnn"
    assert page.locator("#card-accuracy").inner_text() == "94.57%"
    assert page.locator("#card-classes").inner_text().startswith("0, 1, 2")
    assert set(preview_pixels(page)) == {0}


@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_mouse_drawn_digits_are_named_and_agree_with_the_api(page, server, digit):
    draw(page, STROKES[digit])
    assert settled(page) == digit
    assert page.locator("#message").inner_text() == ""
    # The same drawing posted to the API: the same class, and the preview is exactly what it prepared.
    body = httpx.post(server + "api/predict", content=canvas_png(page), headers={"content-type": "image/png"}).json()
    assert body["label"] == digit
    assert preview_pixels(page) == body["prepared"]
    assert sum(body["prepared"]) > 0
    bars = page.locator("#bars .num").all_inner_texts()
    assert len(bars) == 10 and all(t.endswith("%") for t in bars)
    assert bars[int(digit)] == f"{100 * body['probabilities'][digit]:.1f}%"


def test_clear_from_button_and_keyboard_and_undo(page):
    draw(page, STROKES["1"])
    assert settled(page) == "1"
    page.click("#clear")
    assert settled(page) == "" and page.locator("#message").inner_text() == "draw a digit"
    draw(page, STROKES["7"])
    assert settled(page) == "7"
    page.keyboard.press("Escape")
    assert settled(page) == "" and set(preview_pixels(page)) == {0}
    draw(page, STROKES["1"])
    assert settled(page) == "1"
    draw(page, STROKES["-"])  # a cross is no longer a "1"
    settled(page)
    page.click("#undo")
    assert settled(page) == "1"
    page.keyboard.press("c")
    assert settled(page) == ""
    draw(page, STROKES["0"])
    page.keyboard.press("Delete")
    assert settled(page) == ""


def test_upload_an_mnist_test_digit(page, mnist_raw):
    seven = mnist_raw.test_x[0]  # the first MNIST test digit is a 7
    assert int(mnist_raw.test_y[0]) == 7
    buf = io.BytesIO()
    Image.fromarray(seven).save(buf, "PNG")
    before = page.evaluate("document.getElementById('canvas').dataset.version || ''")
    page.set_input_files("#upload", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    # The picture loads asynchronously: until it is on the canvas, the page is settled on what was there.
    page.wait_for_function("(before) => document.getElementById('canvas').dataset.version !== before", arg=before)
    assert settled(page) == "7"
    assert sum(preview_pixels(page)) > 0


def test_an_oversized_upload_gets_the_413_json_in_the_browser(page):
    """The browser's fetch of a body over --max-body reads the 413 JSON, not a network error."""
    got = page.evaluate("""async (size) => {
      const res = await fetch("api/predict", {method: "POST", headers: {"Content-Type": "image/png"},
                                             body: new Uint8Array(size)});
      return [res.status, await res.json()];
    }""", MAX_BODY + 2 * 1024 * 1024)
    assert got == [413, {"error": f"request body is {MAX_BODY + 2 * 1024 * 1024:,} bytes, over the limit of {MAX_BODY:,}"}]
    assert settled(page) == ""  # the page still answers


def test_touch_drawing_on_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    pg = context.new_page()
    try:
        pg.goto(server)
        pg.wait_for_function(SETTLED)
        pg.evaluate("""() => { window.kinds = [];
          document.getElementById('canvas').addEventListener('pointerdown', e => window.kinds.push(e.pointerType)); }""")
        box = pg.locator("#canvas").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390  # fits the phone's width
        k = box["width"] / 280
        cdp = pg.context.new_cdp_session(pg)

        def touch(kind: str, x: float = 0, y: float = 0) -> None:
            points = [] if kind == "touchEnd" else [{"x": box["x"] + x * k, "y": box["y"] + y * k}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 140, 40)
        for i in range(1, 21):  # a vertical swipe: on a page that scrolls this would scroll, not draw
            touch("touchMove", 140, 40 + 10 * i)
        touch("touchEnd")
        assert settled(pg) == "1"
        assert pg.evaluate("window.kinds") == ["touch"]
        assert pg.evaluate("window.scrollY") == 0
    finally:
        context.close()


def test_screenshot_of_the_page(page, tmp_path):
    draw(page, STROKES["7"])
    assert settled(page) == "7"
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot))
    assert Image.open(shot).size == (900, 620)
    if os.environ.get("MNISTLAB_UPDATE_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "serve.png")
