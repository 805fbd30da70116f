"""What the tests that start servers and torchrun jobs read about their processes (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The pids of `pid`'s children, whichever of its threads started them; [] once it is gone."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            pass
    return found
