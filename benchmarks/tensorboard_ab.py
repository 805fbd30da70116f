"""The cost of `--tensorboard`: default `mnistlab train` with and without it, interleaved.

    python benchmarks/tensorboard_ab.py [--rounds 5] [-- EXTRA TRAIN FLAGS]

Each round runs one fresh `python -m mnistlab train` process per arm, the order alternating from
round to round, so that load on the machine hits both alike. The training time is the trainer's
own (History.train_seconds, read from $MNISTLAB_PHASES: evaluation, data loading and the run's
files are not in it); the wall time is the whole process, interpreter start to exit; the CPU time
(user + sys of the process and its figure drawers) is the least hurt by other load on the machine. Prints each
round, then the medians and the median of the per-round ratios, and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(arm: str, folder: Path, name: str, extra: list[str]) -> dict:
    phases = folder / f"{name}.json"
    argv = [sys.executable, "-m", "mnistlab", "train", "--out-dir", str(folder / "runs"), "--name", name, *extra]
    if arm == "tensorboard":
        argv.append("--tensorboard")
    env = dict(os.environ, MNISTLAB_PHASES=str(phases), PYTHONPATH=str(ROOT / "src"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the process and its children
    if proc.returncode != 0:
        raise SystemExit(f"{arm}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    p = json.loads(phases.read_text())
    acc = next(line for line in proc.stdout.splitlines() if line.startswith("Test set:"))
    return {"train_s": p["train_s"], "wall_s": wall, "cpu_s": cpu, "test": acc.split("Accuracy: ")[1]}


def write_cost(records: int = 2000) -> float:
    """Seconds that one TensorBoardLog.log_step call takes in this process (the writer's thread included
    when it competes for the CPU: measured to the closed, flushed file)."""
    sys.path.insert(0, str(ROOT / "src"))
    from mnistlab.reporting.tensorboard import TensorBoardLog

    with tempfile.TemporaryDirectory() as tmp:
        log = TensorBoardLog(Path(tmp) / "tb")
        log.log_step({"step": 0, "loss": 1.0, "acc": 0.5, "lr": 0.1})  # opens the file
        start = time.perf_counter()
        for i in range(1, records + 1):
            log.log_step({"step": 20 * i, "loss": 1.0 / i, "acc": 1 - 1.0 / i, "lr": 0.1})
        log.close()
        return (time.perf_counter() - start) / records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default="tensorboard_ab.json", help="where to write the numbers")
    ap.add_argument("extra", nargs="*", help="flags for both arms' `mnistlab train` (after --)")
    args = ap.parse_args()
    arms = ("plain", "tensorboard")
    results: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = arms if i % 2 == 0 else arms[::-1]
            for arm in order:
                r = run_once(arm, Path(tmp), f"r{i}-{arm}", args.extra)
                results[arm].append(r)
            p, t = results["plain"][-1], results["tensorboard"][-1]
            print(f"round {i + 1}: train {p['train_s']:.2f} s vs {t['train_s']:.2f} s with --tensorboard "
                  f"({t['train_s'] / p['train_s']:.3f}x); wall {p['wall_s']:.2f} s vs {t['wall_s']:.2f} s; "
                  f"CPU {p['cpu_s']:.2f} s vs {t['cpu_s']:.2f} s ({t['cpu_s'] / p['cpu_s']:.3f}x); "
                  f"test {p['test']} / {t['test']}", flush=True)
    ratios = [t["train_s"] / p["train_s"] for p, t in zip(results["plain"], results["tensorboard"])]
    walls = [t["wall_s"] / p["wall_s"] for p, t in zip(results["plain"], results["tensorboard"])]
    cpus = [t["cpu_s"] / p["cpu_s"] for p, t in zip(results["plain"], results["tensorboard"])]
    med = {a: statistics.median(r["train_s"] for r in results[a]) for a in arms}
    wall = {a: statistics.median(r["wall_s"] for r in results[a]) for a in arms}
    print(f"median training time: {med['plain']:.2f} s plain, {med['tensorboard']:.2f} s with --tensorboard; "
          f"median per-round ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    print(f"median wall time: {wall['plain']:.2f} s plain, {wall['tensorboard']:.2f} s with --tensorboard; "
          f"median per-round ratio {statistics.median(walls):.3f}")
    print(f"CPU time of the whole process (user + sys, all threads): median per-round ratio {statistics.median(cpus):.3f} "
          f"(min {min(cpus):.3f}, max {max(cpus):.3f})")
    per_record = write_cost()
    print(f"one logged step's TensorBoard write: {1e6 * per_record:.0f} us in-process (2,000 records, to the "
          "closed file); the default run logs 21 steps and 2 epochs")
    Path(args.json).write_text(json.dumps({"rounds": results, "train_ratio": ratios, "wall_ratio": walls, "cpu_ratio": cpus,
                                           "write_s_per_step_record": per_record}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
