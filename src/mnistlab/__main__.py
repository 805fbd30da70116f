"""`python -m mnistlab` is the `mnistlab` command."""

from mnistlab.cli import entry

entry()
