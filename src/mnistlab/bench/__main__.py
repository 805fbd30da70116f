"""`python -m mnistlab.bench`: the worker that run_in_subprocess starts (one measured run, JSON out)."""

import sys

from mnistlab.bench import _worker_main

sys.exit(_worker_main())
