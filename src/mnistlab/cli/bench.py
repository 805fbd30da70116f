"""`mnistlab bench`: its options and all its printing (the measuring lives in mnistlab.bench)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mnistlab.cli._common import module_doc, out
from mnistlab.cli.train import add_config_options, config_from_args
from mnistlab.config import PRESETS
from mnistlab.errors import ConfigError


def _seed_list(text: str) -> list[int]:
    if text.strip().lower() == "none":
        return []
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"seeds are comma-separated integers, got {text!r}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    """Run both paths, one line per measured run, then the environment, the table and the JSON file."""
    from mnistlab import bench

    cfg = config_from_args(args)
    if not 0 < args.target <= 1:
        raise ConfigError(f"--target is a fraction in (0, 1], got {args.target}")
    if args.against is not None:
        return _against(args)
    seeds, baseline = _seed_list(args.seeds), _seed_list(args.baseline_seeds)
    out(f"bench: preset {args.preset}, model {cfg.model}, {cfg.dataset}, target {args.target:.2%}, "
        f"mnistlab seeds {seeds}, classic seeds {baseline}")

    def show(r: dict) -> None:
        ttt = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.2f} s"
        out(f"  {r['path']:<8} seed {r['seed']}: acc {100 * r['final_acc']:.2f}%, time to target {ttt}, "
            f"train {r['train_seconds']:.2f} s, {r['train_images_per_s']:,.0f} img/s, RSS {r['peak_rss_mb']:.0f} MB")

    report = bench.benchmark(cfg, args.target, seeds, baseline, on_result=show)
    return _finish(report, args.json, bench.format_table)


def _finish(report: dict, json_path: str, format_table: Any) -> int:
    """The command that ran, the JSON file, then the machine's line and the table."""
    from mnistlab.fileio import atomic_write_json

    ran_as_command = bool(sys.argv) and sys.argv[0].endswith(("mnistlab", "__main__.py"))  # not a test's main([...])
    report["command"] = "mnistlab " + " ".join(sys.argv[1:]) if ran_as_command else None
    atomic_write_json(json_path, report)
    env = report["environment"]
    out("", f"{env['date']}, {env['machine']}, {env['cpus']} CPUs, torch {env['torch']} ({env['threads']} threads)",
        format_table(report), f"wrote {json_path}")
    return 0


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value:g}")


def _against(args: argparse.Namespace) -> int:
    """mnistlab's training command and the peers' ports, interleaved: one line per run, the table, the JSON."""
    from mnistlab.bench import peers
    from mnistlab.cli.train import _flags
    from mnistlab.config import read_config_file

    names = peers.parse_names(args.against)
    seeds = _seed_list(args.seeds)
    if not seeds:
        raise ConfigError("--against needs at least one seed in --seeds")
    for name in ("--peer-max-epochs", "--peer-train-size", "--peer-test-size", "--peer-timeout"):
        _positive(name, getattr(args, name[2:].replace("-", "_")))
    # The training flags given here go to mnistlab's command (through a --config file), the seed excepted.
    settings = {**(read_config_file(args.config) if getattr(args, "config", None) else {}), **_flags(args)}
    settings.pop("seed", None)
    pct = f"{100 * args.target:g}%"
    out(f"bench: mnistlab train --preset {args.preset} against {', '.join(names)}, seeds {seeds}, target {pct}"
        + (f", peers on {args.peer_train_size} training images" if args.peer_train_size else ""))

    def show(r: dict) -> None:
        head = f"  {r['who']:<16} seed {r['seed']}:"
        if r["error"]:
            out(f"{head} failed ({r['error']}), wall {r['wall_s']:.2f} s")
            return
        ttt = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.2f} s"
        epochs = f" after {r['epochs_run']} epoch(s)" if "epochs_run" in r else ""
        out(f"{head} {100 * r['final_acc']:.2f}%{epochs}, time to {pct} {ttt}, training {r['train_seconds']:.2f} s, "
            f"whole command {r['wall_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB")

    report = peers.compare(names, seeds, args.target, args.preset, settings, args.peer_max_epochs, args.peer_train_size,
                           args.peer_test_size, args.peer_timeout, on_result=show)
    return _finish(report, args.json, peers.format_table)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab bench` to the CLI."""
    p = subparsers.add_parser("bench", help="time the classic loop and mnistlab side by side, or mnistlab against peers (--against); JSON + Markdown table",
                              description=module_doc("mnistlab.bench"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="speedrun", help="training preset for both paths, or for mnistlab's command with --against (default: speedrun)")
    p.add_argument("--target", type=float, default=0.99, help="target test accuracy (default: 0.99)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="seeds for mnistlab's path; with --against, for every run of both sides (default: 0,1,2,3,4)")
    p.add_argument("--baseline-seeds", default="0", help="seeds for the classic loop (without --against); 'none' skips it (default: 0)")
    g = p.add_argument_group("peers (--against)")
    g.add_argument("--against", metavar="NAMES",
                   help="instead of the classic loop: time `mnistlab train --preset PRESET` (run folder and figures "
                        "included, in a temporary --out-dir) against these peers' ported recipes, comma-separated: "
                        "tuomaso, pytorch-examples, lecture; each run a fresh process, interleaved per seed of --seeds; "
                        "training flags given here go to mnistlab's command")
    g.add_argument("--peer-max-epochs", type=int, metavar="N",
                   help="train each peer at most N epochs (default: its published count: tuomaso 1, pytorch-examples "
                        "14, lecture 9; pytorch-examples and lecture stop at the first epoch reaching --target)")
    g.add_argument("--peer-train-size", type=int, metavar="N",
                   help="quick check, not a benchmark: the peers train on the first N training images, and "
                        "mnistlab's command gets --train-size N (default: all 60,000)")
    g.add_argument("--peer-test-size", type=int, metavar="N",
                   help="quick check: the peers test on the first N test images (default: all 10,000)")
    g.add_argument("--peer-timeout", type=float, default=3600, metavar="SECONDS",
                   help="kill a run (peer or mnistlab) after this long; the table says so (default: 3600)")
    p.add_argument("--json", metavar="FILE", default="bench.json", help="where to write the full results (default: bench.json)")
    add_config_options(p)
    p.set_defaults(func=cmd_bench)
