"""`mnistlab report RUN`: a run's figures and numbers in one HTML page."""

from __future__ import annotations

import argparse

from mnistlab.cli._common import Formatter, out


def cmd_report(args: argparse.Namespace) -> int:
    """Write the run's HTML report and print its path."""
    from mnistlab.reporting.html import render_report

    out(f"wrote {render_report(args.run, args.out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab report` to the CLI."""
    p = subparsers.add_parser("report", help="render a run's figures and numbers into one HTML page", formatter_class=Formatter)
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="output file (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)
