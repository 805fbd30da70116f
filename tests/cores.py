"""How many torch threads a test uses: its worker's share of the cores.

pyproject runs one pytest-xdist worker per core. A test that asked for two threads while the other
worker asked for two as well spun four OpenMP threads on two cores: some lessons ran 20x slower. So a
test that sets a thread count (--threads, Config.threads, Options.threads) asks for THREADS, and the
processes a test starts inherit OMP_NUM_THREADS=THREADS (conftest). Imported before torch (mnistlab.cpus
imports neither torch nor numpy).
"""

from __future__ import annotations

import os

from mnistlab.cpus import usable_cpus

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
# alone, two threads like CI's two cores; under xdist, this worker's share
THREADS = 2 if WORKERS == 1 else max(1, usable_cpus() // WORKERS)
