"""Single-image latency, this tree against another (say the commit before a change), interleaved.

    git archive COMMIT src | tar -x -C /tmp/old
    python benchmarks/latency_ab.py /tmp/old/src RUN [RUN/model.onnx ...] [--rounds 5]

Each round runs one fresh process per tree, alternately, so that load on the machine hits both
alike. A process prints, in ms (median of 200 after 20 burn-in calls): decoding alone and the whole
`prepare_image` of a 280x280 RGBA canvas drawing (as `mnistlab serve`'s page posts them) and of a
280x280 PNG of a test digit, then `mnistlab.bench.png_to_class_ms` (the one definition of "one PNG to
class after load") for each model, on that PNG and on the digit's own 28x28 PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, time, statistics
sys.path.insert(0, sys.argv[1])  # benchmarks/, for the drawings
spec = importlib.util.spec_from_file_location("measure", sys.argv[2])  # this tree's bench.py: one measure
measure = importlib.util.module_from_spec(spec); spec.loader.exec_module(measure)
from serve_load import drawings
from mnistlab.data.images import prepare_image
from mnistlab.data.raw import load_raw
from mnistlab.export.runtime import load_predictor
drawing = drawings(2)[1]
import io
from PIL import Image
first = load_raw("mnist").test_x[0]
digit = measure.digit_png(first)
buf = io.BytesIO(); Image.fromarray(255 - first).save(buf, "PNG"); small = buf.getvalue()  # 28x28, as onnx_infer used to
def ms(fn):
    return 1000 * statistics.median(measure._timed(fn, repeats=200, burn_in=20))
from mnistlab.data.images import WORK_SIDE, load_image
out = {}
for name, png in (("drawing", drawing), ("digit PNG", digit)):
    out["decode " + name] = ms(lambda: load_image(png, draft_side=WORK_SIDE // 2))  # as prepare_image decodes
    out["prepare " + name] = ms(lambda: prepare_image(png))
for model in sys.argv[3:]:
    p = load_predictor(model)
    kind = "onnx" if model.endswith(".onnx") else "torch"
    out["PNG to class, " + kind] = measure.png_to_class_ms(p, digit)
    out["28x28 PNG to class, " + kind] = measure.png_to_class_ms(p, small)
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old_src", help="the other tree's src/ folder")
    ap.add_argument("models", nargs="+", help="run folders, checkpoints or .onnx files")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    trees = {"old": os.path.abspath(args.old_src), "new": str(ROOT / "src")}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="2")
            proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "benchmarks"), str(ROOT / "src/mnistlab/bench/__init__.py"),
                                   *args.models], capture_output=True, text=True, env=env, check=True)
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'median of ' + str(args.rounds) + ' rounds, ms':<28} {'old':>8} {'new':>8} {'new/old':>8}")
    for key in results["new"][0]:
        old = statistics.median(r[key] for r in results["old"])
        new = statistics.median(r[key] for r in results["new"])
        print(f"{key:<28} {old:>8.3f} {new:>8.3f} {new / old:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
