"""The static page (`mnistlab export RUN --format web`) against `mnistlab serve`'s page, in headless Chromium.

    PYTHONPATH=src python benchmarks/web_page.py [RUN] [--rounds 5]

RUN defaults to the committed fastcnn fixture. The run is exported to a temporary web folder, served
by Python's http.server; the baseline is the same page from `mnistlab serve` (uvicorn in a thread,
on the same model.onnx). Rounds alternate between the two, each in a fresh browser context (a cold
load; the browser's HTTP cache is per context). Per round: the time from navigation start to the
page being ready (onnxruntime-web's session created / the model card fetched), then three digits
drawn with the mouse, each waited for; the page's own performance.now() marks give each
prediction's time (the static page: preparation and onnxruntime-web; serve: PNG encoding, the POST,
the server's preparation and onnxruntime). Prints JSON: medians per page and their ratios.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STROKES = [
    [[(140, 40), (140, 240)]],
    [[(140 + 60 * math.sin(t / 24 * 2 * math.pi), 140 - 95 * math.cos(t / 24 * 2 * math.pi)) for t in range(25)]],
    [[(70, 50), (210, 50), (120, 240)]],
]
SETTLED = ("document.body.dataset.ready === '1' && "
           "document.getElementById('prediction').dataset.for === document.getElementById('canvas').dataset.version")


def until(pg, expr: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not pg.evaluate(expr):
        if time.monotonic() > end:
            raise TimeoutError(expr)
        time.sleep(0.005)


def one_round(browser, url: str) -> dict:
    context = browser.new_context(viewport={"width": 900, "height": 620})
    pg = context.new_page()
    pg.goto(url)
    until(pg, SETTLED)
    ready = pg.evaluate("window.mnistlabTimings.ready")
    box = pg.locator("#canvas").bounding_box()
    k = box["width"] / 280
    for strokes in STROKES:
        pg.click("#clear")
        until(pg, SETTLED)
        for stroke in strokes:
            pg.mouse.move(box["x"] + stroke[0][0] * k, box["y"] + stroke[0][1] * k)
            pg.mouse.down()
            for x, y in stroke[1:]:
                pg.mouse.move(box["x"] + x * k, box["y"] + y * k, steps=4)
            pg.mouse.up()
        until(pg, SETTLED)
    t = pg.evaluate("window.mnistlabTimings")
    context.close()
    return {"ready_ms": ready, "first_prediction_ms": t["predictions"][0], "later_prediction_ms": t["predictions"][1:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", default=str(ROOT / "tests" / "fixtures" / "legacy-6a3e47d" / "fastcnn-tiny"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from mnistlab.serve.app import create_app
    from mnistlab.serve.web import export_web

    tmp = Path(tempfile.mkdtemp())
    try:
        run = tmp / "run"
        shutil.copytree(args.run, run)
        folder = Path(export_web(run)["out"])

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

        static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=static.serve_forever, daemon=True).start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        srv = uvicorn.Server(uvicorn.Config(create_app(folder / "model.onnx"), log_level="warning", access_log=False,
                                            lifespan="off"))
        threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)
        urls = {"web": f"http://127.0.0.1:{static.server_address[1]}/", "serve": f"http://127.0.0.1:{sock.getsockname()[1]}/"}
        results: dict[str, list[dict]] = {"web": [], "serve": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            one_round(browser, urls["web"]), one_round(browser, urls["serve"])  # warm the processes, not measured
            for _ in range(args.rounds):
                for name in ("web", "serve"):  # interleaved
                    results[name].append(one_round(browser, urls[name]))
            browser.close()
        srv.should_exit = True
        static.shutdown()
        summary = {}
        for name, rounds in results.items():
            summary[name] = {
                "ready_ms": statistics.median(r["ready_ms"] for r in rounds),
                "first_prediction_ms": statistics.median(r["first_prediction_ms"] for r in rounds),
                "later_prediction_ms": statistics.median(x for r in rounds for x in r["later_prediction_ms"]),
            }
        ratios = {k: summary["web"][k] / summary["serve"][k] for k in summary["web"]}
        print(json.dumps({"machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                          "rounds": args.rounds, "bytes": sum(f.stat().st_size for f in folder.iterdir()),
                          "median": summary, "web_over_serve": ratios, "raw": results}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
