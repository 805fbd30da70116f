"""Host memory: keep the C allocator from handing training's buffers back to the OS every step.

A CPU training step allocates and frees the same few activation and gradient buffers (0.5-4 MB
each for the default CNN at batch 256). glibc serves blocks that large with mmap and returns them
with munmap when freed, and trims the heap's top, so every step page-faults its buffers in again:
measured on the 2-core machines here, 13-17% of the default CNN's step time. Raising the two
thresholds keeps those blocks in the heap for reuse. Peak memory stays that of one step's
buffers; what is kept is only what the process already needed.

This module imports neither torch nor numpy (the CLI calls it first, for every command).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for this parameter on 64-bit systems
TRIM_THRESHOLD = 256 << 20

_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_CONF", "LD_PRELOAD")


def keep_freed_blocks() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when they were set.

    Nothing is changed off Linux, on a C library without `mallopt` (musl), or when the user chose
    an allocator or its settings through the environment (MALLOC_*_ variables, LD_PRELOAD of
    jemalloc or tcmalloc), or set MNISTLAB_MALLOC=default.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MNISTLAB_MALLOC") == "default":
        return False
    if any(os.environ.get(name) for name in _ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
