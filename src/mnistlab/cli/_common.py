"""What every command module shares: the program name, exit codes, output lines and the help formatter."""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import sys
from pathlib import Path

from mnistlab.errors import ConfigError

PROG = "mnistlab"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def out(*lines: str) -> None:
    """Print lines on stdout, flushed (progress and results interleave with stderr in order)."""
    print(*lines, sep="\n", flush=True)


def err(message: str) -> None:
    """One `mnistlab: error: ...` line on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One `mnistlab: warning: ...` line on stderr (library warnings reach the user the same way, see main)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def check_positive(flag: str, value: int | None) -> None:
    """A ConfigError unless `value` is None or at least 1."""
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be positive, got {value}")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; descriptions kept as written."""


@functools.lru_cache(maxsize=None)  # in-process callers (tests, lessons) build the parser many times
def module_doc(name: str) -> str:
    """A module's docstring, read from its source without importing it (so `--help` needs no torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return ""
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
