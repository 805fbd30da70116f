"""How many CPUs this process may use: the one answer that training's figure processes, sweep
workers and `serve`'s default worker count share. Imports neither torch nor numpy."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1
