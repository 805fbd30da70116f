"""`mnistlab bench --against NAMES`: mnistlab's whole training command beside the peers' published recipes.

Every run is a fresh process, timed here from its start to its exit (whole-command wall) with its peak
RSS from os.wait4. mnistlab's side is `python -m mnistlab train --preset PRESET --seed S` in a temporary
--out-dir (run folder and figures included, unless the flags say otherwise); each peer is its port in
mnistlab.bench.ports. For each seed and each peer, mnistlab runs first and the peer right after (A B A B),
so that both sides of a ratio see the same machine noise.

Time to target: training seconds until the first end-of-epoch test accuracy at or above the target (the
test evaluations excluded). mnistlab's run tests once, at its end: its time to target is its training
time when its accuracy reaches the target. A peer that never reaches it is "not reached, best X%".
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mnistlab.errors import ConfigError

MNISTLAB = "mnistlab"


@dataclass(frozen=True)
class Peer:
    module: str  # python -m MODULE runs the port
    epochs: int  # the published number of epochs (the most a run trains)
    recipe: str  # one line for the table's notes
    source: str


PEERS = {
    "tuomaso": Peer("mnistlab.bench.ports.tuomaso", 1, "conv 24-32, Adam, one-cycle, batch 256, 1 epoch, data as one tensor",
                    "github.com/tuomaso/train_mnist_fast (8_Final_00s76)"),
    "pytorch-examples": Peer("mnistlab.bench.ports.pytorch_examples", 14,
                             "1.2M-parameter CNN, Adadelta, StepLR, batch 64, per-item ToTensor + Normalize",
                             "github.com/pytorch/examples (mnist/main.py)"),
    "lecture": Peer("mnistlab.bench.ports.lecture", 9, "LeNet, SGD 0.01 momentum 0.5, batch 64, per-item ToTensor + Normalize",
                    "the lectures' loop (mnistlab's `lecture` preset)"),
}


def parse_names(text: str) -> list[str]:
    """'tuomaso,lecture' -> ['tuomaso', 'lecture']; an unknown or repeated name is a ConfigError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        raise ConfigError(f"--against: unknown peer {', '.join(map(repr, unknown)) or repr(text)} "
                          f"(choose from {', '.join(PEERS)})")
    if len(set(names)) < len(names):
        raise ConfigError(f"--against names a peer twice: {text!r}")
    return names


# ----------------------------------------------------------------------------- one process, measured


def _child_env() -> dict[str, str]:
    """The parent's environment, with this mnistlab importable first (however the parent found it)."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_process(cmd: list[str], stdin: str, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd` to its exit: {"rc", "wall_s", "peak_rss_mb", "stdout", "stderr_tail", "timed_out"}.

    Wall is measured here, from just before the process starts to its reaping; peak RSS is the
    child's own ru_maxrss (os.wait4). Past `timeout` seconds the child is killed.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errs:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=errs, text=True, env=env or _child_env())
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.send_signal(signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True  # never keeps the interpreter alive (Ctrl-C during a run)
        timer.start()
        try:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: the child goes too, and is reaped
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
        out.seek(0), errs.seek(0)
        lines = [line for line in errs.read().splitlines() if line.strip()]
        return {"rc": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out.read(),
                "stderr_tail": lines[-1] if lines else "", "timed_out": timed_out.is_set()}


def _failure(proc: dict[str, Any], timeout: float) -> str | None:
    if proc["timed_out"]:
        return f"timed out after {timeout:g} s"
    if proc["rc"] != 0:
        return f"exit {proc['rc']}: {proc['stderr_tail'] or 'no message'}"
    return None


def _reached(curve: list[list[float]], target: float) -> list[float] | None:
    return next((c for c in curve if c[2] >= target), None)


def run_peer(name: str, seed: int, target: float, max_epochs: int | None = None, train_size: int | None = None,
             test_size: int | None = None, timeout: float = 3600) -> dict[str, Any]:
    """One peer's port in a fresh process: its curve, time to target, final accuracy, wall and peak RSS."""
    peer = PEERS[name]
    epochs = min(peer.epochs, max_epochs) if max_epochs else peer.epochs
    with tempfile.TemporaryDirectory(prefix="mnistlab-peer-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        spec = {"seed": seed, "target": target, "max_epochs": epochs, "train_size": train_size, "test_size": test_size,
                "out": result_file}
        proc = run_process([sys.executable, "-m", peer.module], json.dumps(spec), timeout)
        row: dict[str, Any] = {"who": name, "seed": seed, "wall_s": proc["wall_s"], "peak_rss_mb": proc["peak_rss_mb"],
                               "error": _failure(proc, timeout), "max_epochs": epochs}
        if row["error"] is None and not os.path.exists(result_file):
            row["error"] = "the port wrote no result"
        if row["error"]:
            return row
        with open(result_file, encoding="utf-8") as f:
            result = json.load(f)
    curve = result["curve"]
    reached = _reached(curve, target)
    row.update(curve=curve, params=result["params"], train_images=result["train_images"], epochs_run=len(curve),
               train_seconds=curve[-1][1], final_acc=curve[-1][2], best_acc=max(c[2] for c in curve),
               time_to_target_s=reached[1] if reached else None, epochs_to_target=reached[0] if reached else None)
    return row


def mnistlab_command(preset: str, seed: int, out_dir: str, config_file: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "mnistlab", "train", "--preset", preset, "--seed", str(seed), "--out-dir", out_dir,
           "--name", f"bench-seed{seed}"]
    return cmd + (["--config", config_file] if config_file else [])


ACCURACY = re.compile(r"Accuracy: \d+/\d+ \(([\d.]+)%\)")


def run_mnistlab(preset: str, seed: int, target: float, settings: dict[str, Any] | None = None,
                 timeout: float = 3600) -> dict[str, Any]:
    """`mnistlab train --preset PRESET --seed SEED` in a fresh process and a temporary --out-dir.

    `settings`: Config fields over the preset (the bench command's training flags), passed through
    a --config file. The training and test seconds come from the run's $MNISTLAB_PHASES file.
    """
    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
        config_file = None
        if settings:
            config_file = os.path.join(tmp, "settings.json")
            Path(config_file).write_text(json.dumps(settings), encoding="utf-8")
        env = _child_env()
        env["MNISTLAB_PHASES"] = os.path.join(tmp, "phases.json")
        cmd = mnistlab_command(preset, seed, os.path.join(tmp, "runs"), config_file)
        proc = run_process(cmd, "", timeout, env)
        row: dict[str, Any] = {"who": MNISTLAB, "seed": seed, "wall_s": proc["wall_s"], "peak_rss_mb": proc["peak_rss_mb"],
                               "error": _failure(proc, timeout)}
        match = ACCURACY.search(proc["stdout"])
        if row["error"] is None and (match is None or not os.path.exists(env["MNISTLAB_PHASES"])):
            row["error"] = "no accuracy or phases in its output"
        if row["error"]:
            return row
        with open(env["MNISTLAB_PHASES"], encoding="utf-8") as f:
            phases = json.load(f)
    acc = float(match.group(1)) / 100
    row.update(final_acc=acc, best_acc=acc, train_seconds=phases["train_s"], test_seconds=phases["test_s"],
               time_to_target_s=phases["train_s"] if acc >= target else None)
    return row


# ----------------------------------------------------------------------------- the comparison


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Medians over the runs that finished (time to target: over those that reached it)."""
    done = [r for r in rows if not r.get("error")]
    accs = [r["final_acc"] for r in done]
    return {"runs": len(rows), "finished": len(done), "reached": sum(r.get("time_to_target_s") is not None for r in done),
            "time_to_target_s": _median(done, "time_to_target_s"), "wall_s": _median(done, "wall_s"),
            "peak_rss_mb": _median(done, "peak_rss_mb"), "train_seconds": _median(done, "train_seconds"),
            "final_acc_mean": statistics.fmean(accs) if accs else None, "final_acc_min": min(accs) if accs else None,
            "best_acc": max((r["best_acc"] for r in done), default=None),
            "errors": [f"seed {r['seed']}: {r['error']}" for r in rows if r.get("error")]}


RATIO_KEYS = ("time_to_target_s", "wall_s", "peak_rss_mb")


def _as_flags(settings: dict[str, Any] | None) -> str:
    """{'train_size': 512, 'figures': False} -> ' --train-size 512 --no-figures' (how the command line reads)."""
    flags = []
    for key, value in (settings or {}).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {','.join(map(str, value)) if isinstance(value, list) else value}")
    return "".join(" " + f for f in flags)


def compare(names: list[str], seeds: list[int], target: float, preset: str = "speedrun",
            settings: dict[str, Any] | None = None, max_epochs: int | None = None, train_size: int | None = None,
            test_size: int | None = None, timeout: float = 3600,
            on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """For each seed and peer: mnistlab's command, then the peer's port. The runs, summaries and ratios.

    Ratios are mnistlab / peer, each from the mnistlab runs paired with that peer's runs (same seeds,
    run just before), so a ratio under 1 means mnistlab took less.
    """
    from mnistlab.bench import environment

    names = list(names)
    if train_size:
        settings = {**(settings or {}), "train_size": train_size}
    runs: list[dict] = []
    for seed in seeds:
        for name in names:
            for run in (lambda: {**run_mnistlab(preset, seed, target, settings, timeout), "paired_with": name},
                        lambda: run_peer(name, seed, target, max_epochs, train_size, test_size, timeout)):
                runs.append(run())
                if on_result:
                    on_result(runs[-1])
    summary = {MNISTLAB: summarize([r for r in runs if r["who"] == MNISTLAB])}
    ratios: dict[str, dict[str, float | None]] = {}
    for name in names:
        summary[name] = summarize([r for r in runs if r["who"] == name])
        ours = summarize([r for r in runs if r["who"] == MNISTLAB and r["paired_with"] == name])
        ratios[name] = {k: ours[k] / summary[name][k] if ours[k] and summary[name][k] else None for k in RATIO_KEYS}
    return {"environment": environment(), "target": target, "seeds": seeds, "against": names,
            "mnistlab_command": f"mnistlab train --preset {preset} --seed SEED --out-dir TMP{_as_flags(settings)}",
            "settings": settings or {}, "peer_max_epochs": max_epochs, "peer_train_size": train_size,
            "peer_test_size": test_size, "peers": {n: {"epochs": PEERS[n].epochs, "recipe": PEERS[n].recipe,
                                                       "source": PEERS[n].source} for n in names},
            "runs": runs, "summary": summary, "ratios_mnistlab_over_peer": ratios}


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table: one line per contender, mnistlab first, with the ratios mnistlab / peer."""
    target = report["target"]

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else f"{value:{spec}}"

    def ttt(s: dict) -> str:
        if not s["finished"]:
            return "failed"
        if s["time_to_target_s"] is None:
            return f"not reached, best {100 * s['best_acc']:.2f}%"
        partial = f" ({s['reached']}/{s['finished']} reached)" if s["reached"] < s["finished"] else ""
        return f"{s['time_to_target_s']:.2f}{partial}"

    lines = [f"| run | runs done | time to {100 * target:g}% (s) | final accuracy, mean (min) | whole command (s) | "
             f"peak RSS (MB) | mnistlab / peer: time to {100 * target:g}% | wall | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for who in [MNISTLAB, *report["against"]]:
        s = report["summary"][who]
        label = report["mnistlab_command"].replace(" --seed SEED --out-dir TMP", "") if who == MNISTLAB else who
        acc = "-" if s["final_acc_mean"] is None else f"{100 * s['final_acc_mean']:.2f}% ({100 * s['final_acc_min']:.2f}%)"
        r = report["ratios_mnistlab_over_peer"].get(who, {})
        ratio = " | ".join(num(r.get(k), ".2f") for k in RATIO_KEYS) if who != MNISTLAB else " |  | "
        lines.append(f"| {label} | {s['finished']}/{s['runs']} | {ttt(s)} | {acc} | {num(s['wall_s'], '.2f')} | "
                     f"{num(s['peak_rss_mb'], ',.0f')} | {ratio} |")
        lines += [f"| {who} failed | {e} |  |  |  |  |  |  |  |" for e in s["errors"]]
    return "\n".join(lines)
