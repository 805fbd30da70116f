"""The `mnistlab` command: the only package that reads argv or prints to the terminal.

One module per command, each with `register(subparsers)` and its `cmd_*` function; COMMANDS lists
them in `--help` order. They are imported explicitly, so a command whose module fails to import
makes `mnistlab` fail loudly instead of vanishing from `--help`. Every user-facing failure is a
MnistlabError (or an argparse error): one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Sequence

from mnistlab.cli import (bench, datasets, evaluate, experiment, export, lm, models, predict, report, serve, sweep,
                          tabular, train)
from mnistlab.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, PROG, Formatter, err, warn
from mnistlab.errors import MnistlabError, MnistlabWarning

# The command modules, in the order `mnistlab --help` lists them.
COMMANDS = (train, evaluate, predict, serve, export, sweep, models, datasets, report, experiment, bench, lm, tabular)


class CommandLineParser(argparse.ArgumentParser):
    """The top-level parser; `commands` maps each command's name to its own parser."""

    commands: dict[str, argparse.ArgumentParser]


def build_parser() -> CommandLineParser:
    """The full argument parser (all subcommands)."""
    from mnistlab import __version__

    parser = CommandLineParser(
        prog=PROG, formatter_class=Formatter,
        description="Train, evaluate, explain and serve classifiers on MNIST-family images.",
        epilog=f"Start with: {PROG} train   (the default CNN on the embedded MNIST: 99.2% in about 10 s on 2 CPU cores)",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    parser.commands = sub.choices
    return parser


def parse_command_line(parser: CommandLineParser, argv: Sequence[str]) -> argparse.Namespace:
    """parser.parse_args(argv), except that a command's list of positionals may be split by its options.

    Plain argparse takes `predict RUN --skip-bad a.png b.png`'s images as unrecognized arguments (its
    list of images ends where the first option starts); the command's own parser reads them intermixed
    instead. Only command lines argparse refused change: if anything is still left over (an unknown
    option, a word no command takes), argparse's usual one-line error names what it could not place.
    """
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    # The command is the first word that names one: the top-level parser has no option taking a value.
    words = list(argv)
    try:
        intermixed, left = parser.commands[args.command].parse_known_intermixed_args(
            words[words.index(args.command) + 1:], namespace=argparse.Namespace(command=args.command))
    except TypeError:  # argparse cannot intermix a parser with subcommands (`lm`): the usual error below
        left = extras
    if left:
        return parser.parse_args(argv)  # exits with the usual error line
    return intermixed


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn our errors into one line and an exit code."""
    return _dispatch(argv)[0]


def entry() -> None:
    """The `mnistlab` console script and `python -m mnistlab`: `main`, then leave.

    After a command whose module sets FAST_EXIT (train, evaluate, predict: every file they write
    is complete and closed when they return, and they leave no child process behind), the process
    ends at once with os._exit instead of tearing the interpreter down: about 0.4 s of freeing
    torch's modules on the 2-core machines here, and no C++ destructor racing a process group's
    threads after a data-parallel run. Every other command exits the usual way.
    """
    code, fast = _dispatch(None)
    if fast:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: nothing more can reach it
                pass
        os._exit(code)
    sys.exit(code)


def _dispatch(argv: Sequence[str] | None) -> tuple[int, bool]:
    """(exit code, whether the command allows a fast exit)."""
    from mnistlab.allocator import keep_freed_blocks

    keep_freed_blocks()  # 13-17% faster CPU training steps (allocator.py says why)
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parse_command_line(parser, words)
    fast = bool(getattr(sys.modules.get(args.func.__module__), "FAST_EXIT", False))
    return _run(args, words), fast


def _run(args: argparse.Namespace, words: list[str]) -> int:
    args.argv = words  # `train --nproc` runs the same command under torchrun
    previous = warnings.showwarning

    def show_warning(message: Warning | str, category: type[Warning], *where: Any) -> None:
        # Our own warnings are one line on stderr, like errors; any other is shown as Python does.
        if issubclass(category, MnistlabWarning):
            warn(str(message))
        else:
            previous(message, category, *where)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except MnistlabError as e:
        if type(e).__name__ != "ConfigError" or _is_main_rank():  # under torchrun, one line for what all ranks refuse
            err(str(e))
        return EXIT_USAGE if type(e).__name__ == "ConfigError" else EXIT_ERROR
    except MemoryError:
        err("out of memory: use a smaller data set, --train-size or --batch-size, or a machine with more memory")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mnistlab ... | head`: the reader went away; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = previous
