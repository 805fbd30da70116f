"""What `--nproc N` needs before torchrun starts, without importing torch.

The `mnistlab train --nproc N` process only starts torchrun and forwards signals to it; torchrun and
each rank import torch themselves. Importing it here as well (training/distributed.py does) put one
more torch import, about 1.5 s on the 2-core machines here, before every data-parallel job.
"""

from __future__ import annotations

import os
import sys


def env_world() -> int:
    """WORLD_SIZE as torchrun set it (1 when it is absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m mnistlab ARGV` (one machine)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "mnistlab", *argv]
