"""Oversized uploads against `mnistlab serve`: every client must get the 413 JSON, and the server's memory stay flat.

    python benchmarks/serve_oversized.py [RUN_OR_CHECKPOINT] [--clients 16] [--megabytes 50] [--rounds 2]
                                         [--server-arg=--workers --server-arg=2]

Starts `mnistlab serve RUN --port 0` (default RUN: the committed test fixture), then --clients threads
each post a --megabytes body (image/png) --rounds times with Python's urllib (which sends
`Connection: close` and writes the whole body before it reads), half of them with Content-Length
and half chunked. Prints the answers (status: count; anything but 413 is an error), the wall time,
and the server's resident memory (all its processes summed, sampled every 10 ms from /proc): before
the load, its peak during the load, and the peak's growth over the idle figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "legacy-6a3e47d" / "fastcnn-tiny"


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def post(url: str, body: bytes, chunked: bool) -> str:
    headers = {"Content-Type": "image/png", **({"Transfer-Encoding": "chunked"} if chunked else {})}
    data = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "api/predict", data=data, headers=headers), timeout=60) as r:
            return str(r.status)
    except urllib.error.HTTPError as e:
        try:
            json.loads(e.read())["error"]
        except (ValueError, KeyError, OSError):
            return f"{e.code} (not JSON)"
        return str(e.code)
    except (OSError, urllib.error.URLError) as e:
        return type(getattr(e, "reason", e)).__name__


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default=str(FIXTURE))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--megabytes", type=float, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", args.run, "--port", "0", *args.server_arg],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = next(line.split()[1] for line in proc.stdout if line.startswith("open "))
        time.sleep(1.0)
        idle = tree_rss(proc.pid)
        body = b"\0" * int(args.megabytes * 1024 * 1024)
        answers: collections.Counter = collections.Counter()
        lock = threading.Lock()

        def client(i: int) -> None:
            for _ in range(args.rounds):
                got = post(url, body, chunked=bool(i % 2))
                with lock:
                    answers[got] += 1

        peak, done = idle, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        errors = sum(n for k, n in answers.items() if k != "413")
        print(f"{args.clients} clients x {args.rounds} x {args.megabytes:g} MB ({' '.join(args.server_arg) or 'defaults'}): "
              f"answers {dict(answers)}, errors {errors}, {wall:.1f} s")
        print(f"server RSS: idle {idle / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB (+{(peak - idle) / 2**20:.0f} MB)")
        return 1 if errors else 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
