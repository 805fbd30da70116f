"""Load benchmark for `mnistlab serve`: N concurrent clients posting 280x280 PNG drawings.

    python benchmarks/serve_load.py RUN_OR_CHECKPOINT [--clients 16] [--requests 10000] [--json out.json]

Starts `mnistlab serve RUN --port 0` in a subprocess (or uses --url of a running server), warms it
up, then sends --requests POST /api/predict requests (image/png bodies of canvas-like drawings, keep-
alive connections from one asyncio client process) and prints requests/s, p50/p99 latency, errors (any
non-200 answer or failed connection) and the server's peak RSS (VmHWM, when it was started here).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def drawings(n: int = 64, seed: int = 0) -> list[bytes]:
    """`n` 280x280 PNGs like the page sends: black strokes 22 px wide on white, random digit-ish shapes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        d = ImageDraw.Draw(im)
        kind = i % 3
        cx, cy = rng.uniform(100, 180), rng.uniform(100, 180)
        if kind == 0:  # a "1"
            d.line([(cx, cy - 90), (cx + rng.uniform(-20, 20), cy + 90)], fill="black", width=22)
        elif kind == 1:  # a "0"
            pts = [(cx + 55 * math.sin(t / 30 * 2 * math.pi), cy - 85 * math.cos(t / 30 * 2 * math.pi)) for t in range(31)]
            d.line(pts, fill="black", width=22, joint="curve")
        else:  # a "7"
            d.line([(cx - 70, cy - 85), (cx + 70, cy - 85), (cx - 20, cy + 95)], fill="black", width=22, joint="curve")
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def start_server(run: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", run, "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True, env=env)
    for _ in range(5):
        line = proc.stdout.readline()
        if line.startswith("open "):
            return proc, line.split()[1]
        if not line:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the worker processes of `mnistlab serve --workers N`)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                pass
    return out


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) summed over the server's processes (shared pages count in each)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024 or None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the server's processes have used (load on the machine does not change it much)."""
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
    return total


def _requests(host: str, port: int, bodies: list[bytes]) -> list[bytes]:
    """Each drawing as one complete keep-alive HTTP/1.1 request, built once (the client's cost is not measured)."""
    return [(f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/png\r\n"
             f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


async def _client(host: str, port: int, requests: list[bytes], next_index, latencies: list[float],
                  errors: list[str]) -> None:
    """One connection, one request at a time: send, read the status line and headers, then the body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (i := next_index()) is not None:
            t0 = time.perf_counter()
            try:
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                if status != 200 or b'"label"' not in body:
                    errors.append(f"HTTP {status}")
            except (OSError, ValueError, StopIteration, asyncio.IncompleteReadError) as e:
                errors.append(type(e).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def load(host: str, port: int, bodies: list[bytes], total: int, clients: int) -> tuple[list[float], list[str]]:
    """`total` requests from `clients` concurrent keep-alive connections; (latencies in s, errors).

    One asyncio process with pre-built requests: a light client, so that most of the 2 cores are
    left to the server (a thread per client with http.client used about one core by itself).
    """
    requests = _requests(host, port, bodies)
    counter = iter(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    await asyncio.gather(*(_client(host, port, requests, lambda: next(counter, None), latencies, errors)
                           for _ in range(clients)))
    return latencies, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", default=str(ROOT / "tests/fixtures/legacy-6a3e47d/fastcnn-tiny"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--url", help="a running server instead of starting one")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `mnistlab serve` flag (repeatable)")
    args = ap.parse_args()

    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.run, args.server_arg)
    parts = urlsplit(url)
    bodies = drawings()
    # Warm up (connections, first-call costs), then measure.
    for _ in range(20):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("POST", "/api/predict", body=bodies[0], headers={"Content-Type": "image/png"})
        conn.getresponse().read()
        conn.close()
    cpu0 = cpu_seconds(proc.pid) if proc else None
    t0 = time.perf_counter()
    latencies, errors = asyncio.run(load(parts.hostname, parts.port, bodies, args.requests, args.clients))
    wall = time.perf_counter() - t0
    rss = peak_rss_mb(proc.pid) if proc else None
    cpu1 = cpu_seconds(proc.pid) if proc else None
    cpu_ms = 1000 * (cpu1 - cpu0) / max(1, len(latencies)) if cpu0 is not None and cpu1 is not None else None
    if proc:
        proc.terminate()
        proc.wait(10)
    lat = np.array(latencies) * 1000
    result = {
        "requests": len(latencies), "clients": args.clients, "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "errors": len(errors), "server_peak_rss_mb": round(rss, 1) if rss else None,
        "server_cpu_ms_per_request": round(cpu_ms, 2) if cpu_ms else None, "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print(f"{result['requests']:,} requests from {args.clients} clients in {wall:.1f} s: "
          f"{result['requests_per_s']:.0f} requests/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"{result['errors']} errors, server peak RSS {result['server_peak_rss_mb']} MB, "
          f"server CPU {result['server_cpu_ms_per_request']} ms/request (load average {result['load_average_1min']})")
    if errors:
        print("errors:", sorted(set(errors)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
