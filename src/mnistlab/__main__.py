"""`python -m mnistlab` is the `mnistlab` command."""

import sys

from mnistlab.cli import main

sys.exit(main())
