"""Two .onnx files of one model (say the exports of two trees), interleaved: batched images/s and one image's latency.

    PYTHONPATH=/tmp/old/src python -m mnistlab export RUN --out old.onnx
    python -m mnistlab export RUN --out new.onnx
    python benchmarks/onnx_ab.py old.onnx new.onnx [--rounds 10]

Each round runs one batch of 1,000 random [0, 1] images and then 50 single images through each file
in turn, on onnxruntime with 2 threads, so that load on the machine hits both alike; it prints the
medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help=".onnx files with one image input (N, C, H, W)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    sessions = {f: ort.InferenceSession(f, opts, providers=["CPUExecutionProvider"]) for f in args.files}
    batched: dict[str, list[float]] = {f: [] for f in sessions}
    single: dict[str, list[float]] = {f: [] for f in sessions}
    rng = np.random.default_rng(0)
    for f, s in sessions.items():
        inp = s.get_inputs()[0]
        x = rng.random((args.batch, *inp.shape[1:]), dtype=np.float32)
        s.run(None, {inp.name: x})  # warm-up
    for _ in range(args.rounds):
        for f, s in sessions.items():
            inp = s.get_inputs()[0]
            x = rng.random((args.batch, *inp.shape[1:]), dtype=np.float32)
            start = time.perf_counter()
            s.run(None, {inp.name: x})
            batched[f].append(time.perf_counter() - start)
            times = []
            for _ in range(50):
                start = time.perf_counter()
                s.run(None, {inp.name: x[:1]})
                times.append(time.perf_counter() - start)
            single[f].append(statistics.median(times))
    for f in sessions:
        print(f"{f}: {args.batch / statistics.median(batched[f]):,.0f} images/s batched, "
              f"one image {1000 * statistics.median(single[f]):.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
