"""`mnistlab evaluate RUN`: accuracy, loss, the per-class table and the confusion matrix (or JSON)."""

from __future__ import annotations

import argparse
import json

from mnistlab.cli._common import Formatter, check_positive, out
from mnistlab.errors import ConfigError

# Everything this command writes is complete when it returns: the CLI may end the process at once (cli.entry).
FAST_EXIT = True


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run or checkpoint on a split and print the report (or JSON)."""
    from mnistlab.evaluation.evaluate import evaluate_checkpoint
    from mnistlab.evaluation.metrics import format_report

    # The options first, as `train` does: a bad flag costs no checkpoint or data loading.
    check_positive("--batch-size", args.batch_size)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ConfigError(f"--threshold is a probability in (0, 1), got {args.threshold}")
    report = evaluate_checkpoint(args.run, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
                                 device=args.device, tta=args.tta, batch_size=args.batch_size, threshold=args.threshold)
    if args.json:
        out(json.dumps(report, indent=2))
    else:
        out(f"{report['checkpoint']} on {report['dataset']} ({report['split']}, {report['num_samples']:,} images)",
            format_report(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab evaluate` to the CLI."""
    p = subparsers.add_parser("evaluate", help="accuracy, loss, perplexity, per-class table and confusion matrix", formatter_class=Formatter)
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--dataset", help="evaluate on another data set (default: the one it was trained on)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--batch-size", type=int, default=2000, help="images per forward pass (a positive integer)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation (default: as trained)")
    p.add_argument("--threshold", type=float, default=None,
                   help="multi-label data: predict each label whose probability is >= this (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate)
