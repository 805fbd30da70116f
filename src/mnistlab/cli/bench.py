"""`mnistlab bench`: its options and all its printing (the measuring lives in mnistlab.bench)."""

from __future__ import annotations

import argparse
import sys

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
    from mnistlab.fileio import atomic_write_json

    cfg = config_from_args(args)
    if not 0 < args.target <= 1:
        raise ConfigError(f"--target is a fraction in (0, 1], got {args.target}")
    seeds, baseline = _seed_list(args.seeds), _seed_list(args.baseline_seeds)
    out(f"bench: preset {args.preset}, model {cfg.model}, {cfg.dataset}, target {args.target:.2%}, "
        f"mnistlab seeds {seeds}, classic seeds {baseline}")

    def show(r: dict) -> None:
        ttt = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.2f} s"
        out(f"  {r['path']:<8} seed {r['seed']}: acc {100 * r['final_acc']:.2f}%, time to target {ttt}, "
            f"train {r['train_seconds']:.2f} s, {r['train_images_per_s']:,.0f} img/s, RSS {r['peak_rss_mb']:.0f} MB")

    report = bench.benchmark(cfg, args.target, seeds, baseline, on_result=show)
    report["command"] = "mnistlab " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("mnistlab") else None
    atomic_write_json(args.json, report)
    env = report["environment"]
    out("", f"{env['date']}, {env['machine']}, {env['cpus']} CPUs, torch {env['torch']} ({env['threads']} threads)",
        bench.format_table(report), f"wrote {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab bench` to the CLI."""
    p = subparsers.add_parser("bench", help="time the classic loop and mnistlab side by side; JSON + Markdown table",
                              description=module_doc("mnistlab.bench"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="speedrun", help="training preset for both paths (default: speedrun)")
    p.add_argument("--target", type=float, default=0.99, help="target test accuracy (default: 0.99)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="seeds for mnistlab's path (default: 0,1,2,3,4)")
    p.add_argument("--baseline-seeds", default="0", help="seeds for the classic loop; 'none' skips it (default: 0)")
    p.add_argument("--json", metavar="FILE", default="bench.json", help="where to write the full results (default: bench.json)")
    add_config_options(p)
    p.set_defaults(func=cmd_bench)
