"""Inference of one run through torch, onnxruntime fp32 and int8: batched images/s, one PNG to class
after load (ms; a 280x280 PNG of a test digit, `mnistlab.bench.png_to_class_ms`), and the whole `mnistlab predict MODEL one.png` command (seconds, peak RSS).

    python benchmarks/onnx_infer.py runs/NAME     # after `mnistlab export runs/NAME [--quantize int8]`
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def main(run: str) -> None:
    import torch

    from mnistlab.bench import digit_png, png_to_class_ms
    from mnistlab.data.raw import load_raw
    from mnistlab.evaluation.predict import Predictor
    from mnistlab.export.runtime import OnnxPredictor

    torch.set_num_threads(2)
    raw = load_raw("mnist")
    images = raw.test_x  # (10000, 28, 28) uint8
    png = digit_png(images[0])  # 280x280, black on white
    backends = {"torch": Predictor.from_checkpoint(run)}
    for name, file in (("onnx fp32", "model.onnx"), ("onnx int8", "model.int8.onnx")):
        if os.path.exists(os.path.join(run, file)):
            backends[name] = OnnxPredictor.from_file(os.path.join(run, file), threads=2)
    print(f"{'backend':<10} {'batched img/s':>14} {'PNG->class ms':>14} {'accuracy':>9}")
    for name, p in backends.items():
        p.probabilities(images[:1000])
        t = time.perf_counter()
        probs = np.concatenate([p.probabilities(images[i : i + 1000]) for i in range(0, len(images), 1000)])
        rate = len(images) / (time.perf_counter() - t)
        acc = float((probs.argmax(1) == raw.test_y).mean())
        ms = png_to_class_ms(p, png)
        print(f"{name:<10} {rate:>14,.0f} {ms:>14.2f} {100 * acc:>8.2f}%")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "one.png")
        Image.open(io.BytesIO(png)).save(path)
        for name, model in (("torch", run), ("onnx fp32", os.path.join(run, "model.onnx"))):
            walls, rss = [], []
            for _ in range(3):
                proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "mnistlab", "predict", model, path],
                                      capture_output=True, text=True, check=True)
                wall, kb = proc.stderr.strip().splitlines()[-1].split()
                walls.append(float(wall))
                rss.append(int(kb) / 1024)
            print(f"predict one PNG, {name}: {statistics.median(walls):.2f} s (median of 3), peak RSS {max(rss):.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
