"""The test evaluation of one run, this tree against another (say the commit before a change), interleaved.

    git archive COMMIT src | tar -x -C /tmp/old
    python benchmarks/eval_ab.py /tmp/old/src RUN [--rounds 6] [--views 3]

As benchmarks/latency_ab.py: each tree's src/ is put on PYTHONPATH, and each round runs one fresh
process per tree, alternately, so that load on the machine hits both alike.
A process loads RUN's checkpoint and the test set as `mnistlab evaluate` does (channels_last, the
run's normalisation), evaluates once to warm up, then times 5 test evaluations with `--views`
test-time augmentation views (`training.trainer.evaluate`) and prints their median and the accuracy.
The two trees must give the same accuracy; the medians over the rounds are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import statistics, sys, torch
from mnistlab.data.loader import Split, build_bundle
from mnistlab.data.raw import load_raw
from mnistlab.runs.checkpoint import load_checkpoint
from mnistlab.training.trainer import evaluate
torch.set_num_threads(2)
ckpt, views = load_checkpoint(sys.argv[1]), int(sys.argv[2])
raw = load_raw(ckpt.cfg.dataset)
mean, std = ckpt.norm
bundle = build_bundle(raw.train_x[:1], raw.train_y[:1], raw.test_x, raw.test_y, raw.class_names, name=ckpt.cfg.dataset,
                      val_size=0, normalize="unit", device=torch.device("cpu"), seed=0, warn=False)
test = Split.from_pixels(bundle.test.pixels, bundle.test.y, tuple(mean), tuple(std))
model = ckpt.build_model().to(memory_format=torch.channels_last)
with torch.no_grad():
    evaluate(model, test, tta=True, channels_last=True, tta_views_count=views)
    times = [evaluate(model, test, tta=True, channels_last=True, tta_views_count=views) for _ in range(5)]
print(statistics.median(r.seconds for r in times), times[-1].acc)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old_src", help="the other tree's src/ folder")
    ap.add_argument("run", help="a run folder or checkpoint of an image model")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--views", type=int, default=3, choices=(3, 5))
    args = ap.parse_args()
    trees = {"old": os.path.abspath(args.old_src), "new": str(ROOT / "src")}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for tree, src in trees.items():
            proc = subprocess.run([sys.executable, "-c", CHILD, args.run, str(args.views)], capture_output=True,
                                  text=True, env=dict(os.environ, PYTHONPATH=src))
            if proc.returncode != 0:
                print(f"{tree}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
                return 1
            seconds, acc = proc.stdout.split()
            results[tree].append((float(seconds), float(acc)))
    for tree, rows in results.items():
        print(f"{tree}: median {statistics.median(s for s, _ in rows):.3f} s "
              f"({', '.join(f'{s:.3f}' for s, _ in rows)}), accuracy {sorted({a for _, a in rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
