"""`mnistlab sweep`: an Optuna search over `mnistlab train` settings, scored on validation accuracy.

Every `mnistlab train` option is accepted and fixed for all trials; `--space FILE.json` (or the
model's default space) says what varies. `--trials N` runs N more trials into the study (Optuna's
n_trials), taken one at a time by `--workers K` processes that share `--storage` until this command's
run holds N (a trial whose worker died is re-run once, with its parameters, and still counts once).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mnistlab.cli._common import EXIT_INTERRUPTED, PROG, check_positive, err, out, warn
from mnistlab.cli.train import _flags, add_config_options, config_from_args
from mnistlab.config import PRESETS, Config, read_config_file
from mnistlab.cpus import usable_cpus
from mnistlab.errors import ConfigError, MnistlabError

# sweep/study.py's heartbeat defaults, repeated for --help (this module loads without torch; a test holds them equal).
HEARTBEAT, GRACE = 10, 30


def _value(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _acc(v: float | None) -> str:
    return "   -   " if v is None else f"{100 * v:6.2f}%"


def trial_line(row: dict[str, Any]) -> str:
    """One line per finished trial, as the workers report them."""
    params = " ".join(f"{k} {_value(v)}" for k, v in row["params"].items())
    tail = f"  ({row['error']})" if row.get("error") else ""
    secs = f", {row['train_seconds']:.1f} s" if row.get("train_seconds") is not None else ""
    return f"trial {row['number']:>3}  {row['state'].lower():<8} val {_acc(row['val_acc'])}  {params}  [worker {row['worker']}{secs}]{tail}"


def trial_table(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """The study's trials as a fixed-width table: number, state, val acc, each parameter, and a note if any has one."""
    notes = any(r.get("error") for r in rows)  # a last column says why a trial failed, or what it re-ran
    cells = [["trial", "state", "val acc", *names, *(["note"] if notes else [])]]
    for r in rows:
        cells.append([str(r["number"]), r["state"].lower(), _acc(r["val_acc"]).strip(),
                      *(_value(r["params"][n]) if n in r["params"] else "-" for n in names),
                      *([r.get("error") or ""] if notes else [])])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.rjust(w) if i in (0, 2) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def _worker_main(spec: Any, worker: int, threads: int | None, quiet: bool) -> None:
    """A worker process: its share of the trials, one line each; errors as one line and an exit code."""
    import torch

    from mnistlab.sweep.study import run_worker

    if threads:
        torch.set_num_threads(threads)
    try:
        run_worker(spec, worker, on_trial=None if quiet else (lambda row: out(trial_line(row))))
    except MnistlabError as e:
        err(f"worker {worker}: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _given(args: argparse.Namespace) -> set[str]:
    """The Config fields set by --preset, --config or flags: the fixed part, kept out of the default space."""
    keys = set(_flags(args))
    if args.preset:
        keys |= set(PRESETS[args.preset])
    if args.config:
        keys |= set(read_config_file(args.config))
    return keys


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _run_workers(spec: Any, workers: int, threads: int | None, quiet: bool) -> list[str]:
    """Run the workers to the end; the ones that failed or died, as 'worker i (how)'."""
    if workers == 1:  # in this process: errors and Ctrl-C reach cmd_sweep and main as usual
        from mnistlab.sweep.study import run_worker

        run_worker(spec, 0, on_trial=None if quiet else (lambda row: out(trial_line(row))))
        return []
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold torch's thread pools
    procs = [ctx.Process(target=_worker_main, args=(spec, i, threads, quiet), name=f"sweep-worker-{i}")
             for i in range(workers)]
    for p in procs:
        p.start()
    failed = []
    try:
        left = {p.sentinel: i for i, p in enumerate(procs)}
        while left:
            for sentinel in wait(list(left)):
                i = left.pop(sentinel)
                procs[i].join()
                if procs[i].exitcode != 0:
                    failed.append(f"worker {i} ({_ended(procs[i].exitcode)})")
                    if left and procs[i].exitcode < 0:
                        how = (f"once its heartbeat is {spec.grace} s old" if "://" in spec.storage else "at once")
                        warn(f"worker {i} was {_ended(procs[i].exitcode)}: the other workers fail its trial and "
                             f"run it again {how}")
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too (one process group): each records its trial and exits.
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
        raise
    return failed


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the trials, then the table, figure, best.json and the best config retrained and tested once."""
    from mnistlab.runs.session import check_names
    from mnistlab.sweep import space as spaces
    from mnistlab.sweep import study as studies

    studies.require_optuna()
    check_positive("--trials", args.trials)
    check_positive("--workers", args.workers)
    check_positive("--heartbeat", args.heartbeat)
    check_positive("--grace", args.grace)
    given = _given(args)
    if "name" in given:
        raise ConfigError("--name: sweep trials save no run folder; the best trial's retrain is saved as "
                          "<out-dir>/sweeps/<study>/best-trial-N")
    base = config_from_args(args)
    if base.engine != "torch":
        raise ConfigError("--engine: a sweep trains with torch (the numpy engine has no hooks to prune with)")
    if base.val_size == 0:
        raise ConfigError("--val-size 0: a sweep scores trials on validation data, never on the test set: give --val-size above 0")
    study = args.study or studies.default_study_name(base)
    storage = args.storage or studies.default_storage(base, study)
    if studies.is_database(storage) and storage.startswith("sqlite") and args.workers > 1:
        raise ConfigError("--storage sqlite: SQLite locks under several writers; with --workers above 1 use the default "
                          "journal file (one machine) or a postgresql:// or mysql:// URL (several machines)")
    heartbeat = studies.HEARTBEAT if args.heartbeat is None else args.heartbeat
    grace = max(studies.GRACE, 2 * heartbeat) if args.grace is None else args.grace
    if not studies.is_database(storage) and (args.heartbeat or args.grace):
        flag = "--heartbeat" if args.heartbeat else "--grace"
        raise ConfigError(f"{flag}: a journal file has no heartbeat (Optuna beats only in a database); a worker on this "
                          "machine fails the trial of a dead one at once, by its process id: drop the option, or give "
                          "--storage postgresql://...")
    if grace < 2 * heartbeat:
        raise ConfigError(f"--grace {grace}: give at least twice --heartbeat ({2 * heartbeat} s), or a trial that "
                          "still runs may be failed between two of its heartbeats")
    stored = None if (given - {"out_dir"} or args.space) else studies.stored_settings(study, storage)
    if stored:  # a bare `mnistlab sweep --study S --storage URL`: continue with the study's own settings
        base = Config.from_dict({**stored[0], "out_dir": base.out_dir})
        space_json, where, given = stored[1], f"study {study}", set()
    elif args.space:
        space_json, where = spaces.read_space(args.space), f"--space {args.space}"
    else:
        space_json, where = spaces.default_space(base, given), f"the default space for {base.model}"
    check_names(base)
    if args.show_space:
        out(json.dumps(space_json, indent=2))
        return 0
    params = spaces.parse_space(space_json, base, given, where=where)
    if not params:
        raise ConfigError(f"{where}: nothing to search (every parameter of the default space is fixed): give --space FILE.json")
    folder = Path(base.out_dir) / "sweeps" / study
    spec = studies.SweepSpec(base=base, space=params, study=study, storage=storage, folder=folder, trials=args.trials,
                             run_id=uuid.uuid4().hex[:12], heartbeat=heartbeat, grace=grace)
    _, before = studies.create_or_load(spec, space_json)
    workers = min(args.workers, args.trials)
    threads = base.threads or (max(1, usable_cpus() // workers) if workers > 1 else None)
    shown = studies.shown(storage)
    resume = f"{PROG} sweep --study {shlex.quote(study)} --storage {shlex.quote(shown)}"
    if not args.quiet:
        out(f"sweep {study}: {args.trials} trial{'s' * (args.trials != 1)} of {base.model} on {base.dataset} with "
            f"{workers} worker{'s' * (workers != 1)}, searching {', '.join(p.name for p in params)}; scored on validation "
            f"accuracy; storage {shown}" + (f" (holds {before} trials already)" if before else ""))
    start = time.perf_counter()
    try:
        failed = _run_workers(spec, workers, threads, args.quiet)
    except KeyboardInterrupt:
        _, rows = studies.load_trials(spec)
        done = [r for r in rows if r["run"] == spec.run_id and r["state"] in ("COMPLETE", "PRUNED", "FAIL")
                and r["error"] != studies.INTERRUPTED and not r["retried"]]
        left = max(1, args.trials - len(done))
        err(f"interrupted: {len(done)} trial(s) of this sweep finished and are kept in {shown}; "
            f"resume with: {resume} --trials {left}")
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start
    study_obj, rows = studies.load_trials(spec)
    count = studies.run_count(study_obj.trials, spec.run_id)
    if failed and (count.slots < args.trials or count.running or count.waiting):
        raise MnistlabError(f"the sweep stopped: {', '.join(failed)} failed; the finished trials are kept in {shown}; "
                            f"continue with: {resume} --trials {max(1, args.trials - count.slots + count.running + count.waiting)}")
    names = [p.name for p in params]
    best = None
    try:
        best = studies.best_config(study_obj, base)
    finally:
        paths = studies.write_results(spec, rows, best)
        counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
        out(*trial_table(rows, names),
            f"{count.slots} trials in {seconds:.1f} s"
            + (f" ({count.retried} run again: {'their workers' if count.retried > 1 else 'its worker'} died or stalled)"
               if count.retried else "") + f"; study {study} holds {len(rows)}: {counts['COMPLETE']} complete, "
            f"{counts['PRUNED']} pruned, {counts['FAIL']} failed (table {paths['trials']}, figure {paths['figure']})")
    number, val_acc, cfg = best
    out(f"best: trial {number}, val acc {100 * val_acc:.2f}%: " + ", ".join(f"{n} {_value(getattr(cfg, n))}" for n in names),
        f"best config {paths['best']}  (reproduce: {PROG} train --config {paths['best']})",
        f"continue this study: {resume} --trials N  (N more trials)")
    if not args.retrain:
        return 0
    session, history = studies.retrain(spec, number, cfg)
    if session is None:  # retrained (and tested) by an earlier sweep: the test set is not touched again
        test = next(r for r in history if r.get("kind") == "test")
        val = [r for r in history if r.get("kind") == "epoch"][-1]["val_acc"]
        out(f"best trial {number} was retrained earlier in {folder / f'best-trial-{number}'}: val acc {100 * val:.2f}%, "
            f"test acc {100 * test['test_acc']:.2f}% (not tested again)")
        return 0
    val = history.epochs[-1]["val_acc"]
    test = history.test
    n = len(session.data.test)
    out(f"retrained trial {number}: val acc {100 * val:.2f}% (the trial: {100 * val_acc:.2f}%)"
        + (f" in {session.run.path}" if session.run else ""),
        f"Test set (once, the best config only): Average loss: {test.loss:.4f}, Accuracy: {round(test.acc * n)}/{n} "
        f"({100 * test.acc:.2f}%)")
    if abs(val - val_acc) > 1e-9:
        err(f"the retrain's val acc differs from the trial's: trial ran with other CPU threads or on a non-deterministic device")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab sweep` to the CLI."""
    p = subparsers.add_parser(
        "sweep", help="search training settings with Optuna (validation accuracy); needs the sweep extra",
        formatter_class=argparse.HelpFormatter,
        usage=f"{PROG} sweep [--trials N] [--workers K] [--study NAME] [--storage URL] [--space FILE.json] [TRAIN OPTIONS]",
        description="Search training settings with Optuna: each trial trains with the fixed options plus its picks from "
                    "--space and is scored on VALIDATION accuracy (pruned per epoch by the median rule); the test set is used "
                    "once, by the best config retrained at the end. --trials N runs N more trials into the study. "
                    "Several machines: start `mnistlab sweep --study S --storage postgresql://USER:PASS@HOST/DB ...` with the "
                    "same options on each (each adds its own --trials). A worker that dies leaves no trial running: its trial "
                    "is failed (by heartbeat on a database, by process id on a journal file) and run again once, with the "
                    "same parameters, by another worker.")
    p.add_argument("--trials", type=int, default=20, help="trials this command adds to the study, taken one at a time by its workers; a trial "
                                                      "re-run after its worker died counts once (default 20)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--study", metavar="NAME", help="study name (default: <model>-<dataset>)")
    p.add_argument("--storage", metavar="URL", help="a journal file (default <out-dir>/sweeps/<study>/journal.log) or a "
                                                    "SQLAlchemy URL such as postgresql://user:pass@host[:port]/db "
                                                    "(postgresql:// means the psycopg driver; without :pass, libpq reads "
                                                    "PGPASSWORD or ~/.pgpass); the password is printed as ***")
    p.add_argument("--heartbeat", type=int, metavar="S", help=f"database storages: a running trial records a heartbeat "
                                                              f"every S seconds (default {HEARTBEAT})")
    p.add_argument("--grace", type=int, metavar="S", help="database storages: a trial with no heartbeat for S seconds "
                                                          "(its worker died) is failed by another worker and run again "
                                                          "once with the same parameters, still counting once "
                                                          f"(default {GRACE} or 2 x --heartbeat if more; at least 2 x --heartbeat)")
    p.add_argument("--space", metavar="FILE.json", help='search space, e.g. {"lr": {"low": 0.01, "high": 0.5, "log": true}, '
                                                        '"batch_size": {"choices": [64, 128]}} (default: per model)')
    p.add_argument("--show-space", action="store_true", help="print the search space as JSON and exit")
    p.add_argument("--retrain", action=argparse.BooleanOptionalAction, default=True,
                   help="retrain the best config and test it once (default: yes)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="fixed options from a preset")
    p.add_argument("--config", metavar="FILE", help="fixed options from a JSON file")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines")
    add_config_options(p)
    p.set_defaults(func=cmd_sweep)
