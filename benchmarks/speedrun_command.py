"""The whole `mnistlab train --preset speedrun` command, as a user runs it: wall time, peak RSS,
accuracy and where the time goes, median of N runs (seeds 0..N-1), with a baseline in the same run.

    python benchmarks/speedrun_command.py                      # 5 runs, run folder and figures included
    python benchmarks/speedrun_command.py --baseline-src /tmp/old/src   # and an older checkout's src/, interleaved
    python benchmarks/speedrun_command.py --runs 3 -- --no-save-run      # extra train flags after --

Each run is a fresh process (`python -m mnistlab train ...`) in a temporary folder. Wall time is
measured here around the process; peak RSS is the child's ru_maxrss (its figure processes are
forked from it and share its pages). The phases come from the child (MNISTLAB_PHASES, read by
cli/train.py): Python start-up and the CLI's import, the imports of training (torch), data,
model, training, test evaluation, the run's files and figures, and the exit after the result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = (
    ("start-up: Python and the CLI", "t_main", "t_spawn"),
    ("imports (torch, training)", "t_imports", "t_main"),
    ("data", "data_s", None),
    ("model", "model_s", None),
    ("training", "train_s", None),
    ("test evaluation", "test_s", None),
    ("run files and figures", "artifacts_s", None),
    ("exit after the result", "t_exit", "t_end"),
)


def one_run(seed: int, extra: list[str], src: str | None, folder: str) -> dict:
    env = dict(os.environ)
    phases = os.path.join(folder, f"phases-{seed}-{'base' if src else 'now'}.json")
    env["MNISTLAB_PHASES"] = phases
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "mnistlab", "train", "--preset", "speedrun", "--seed", str(seed),
           "--out-dir", os.path.join(folder, "runs"), "--name", f"s{seed}-{'base' if src else 'now'}", *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    t1 = time.monotonic()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}")
    acc = float(re.search(r"Accuracy: \d+/\d+ \(([\d.]+)%\)", out).group(1))
    row = {"seed": seed, "wall_s": t1 - t0, "peak_rss_mb": usage.ru_maxrss / 1024, "acc": acc}
    if os.path.exists(phases):
        p = json.load(open(phases))
        p.update(t_spawn=t0, t_exit=t1)
        for name, a, b in PHASES:
            row[name] = p[a] - p[b] if b else p[a]
        row["other"] = row["wall_s"] - sum(row[name] for name, _, _ in PHASES)
    return row


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-src", help="an older checkout's src/ folder, run interleaved with this one")
    ap.add_argument("extra", nargs="*", help="train flags (after --)")
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {"now": [], "base": []}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.runs):
            rows["now"].append(one_run(seed, args.extra, None, folder))
            if args.baseline_src:
                rows["base"].append(one_run(seed, args.extra, args.baseline_src, folder))
    for kind, rs in rows.items():
        if not rs:
            continue
        accs = " / ".join(f"{r['acc']:.2f}" for r in rs)
        walls = " / ".join(f"{r['wall_s']:.2f}" for r in rs)
        most = max(r["peak_rss_mb"] for r in rs)
        print(f"\n{kind}: accuracy {accs}% (mean {statistics.mean(r['acc'] for r in rs):.2f}%); wall {walls} s "
              f"(median {median(rs, 'wall_s'):.2f} s); peak RSS median {median(rs, 'peak_rss_mb'):.0f} MB (max {most:.0f} MB)")
        if "training" in rs[0]:
            print("\n| phase | median (s) |\n|---|---|")
            for name, _, _ in PHASES:
                print(f"| {name} | {median(rs, name):.2f} |")
            print(f"| other (the run's first line, loading the checkpoint hooks, ...) | {median(rs, 'other'):.2f} |")
            print(f"| **whole command** | **{median(rs, 'wall_s'):.2f}** |")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}; "
          f"command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
