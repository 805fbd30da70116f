"""`mnistlab models`: the registered models with parameter counts, or one model's layer summary."""

from __future__ import annotations

import argparse

from mnistlab.cli._common import Formatter, out


def cmd_models(args: argparse.Namespace) -> int:
    """Print the model table, or one model's layer summary."""
    from mnistlab.models import count_parameters, create_model, list_models, model_description
    from mnistlab.models.summary import summarize

    if args.summary:
        out(summarize(args.summary, num_classes=10, in_shape=(1, 28, 28)))
        return 0
    out(f"{'model':<10} {'parameters':>11}  description")
    for name in list_models():
        k = 2 if name == "logistic" else 10
        n = count_parameters(create_model(name, k, (1, 28, 28)))
        out(f"{name:<10} {n:>11,}  {model_description(name)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab models` to the CLI."""
    p = subparsers.add_parser("models", help="list the models with parameter counts", formatter_class=Formatter)
    p.add_argument("--summary", metavar="MODEL", help="print each layer's output shape for MODEL")
    p.set_defaults(func=cmd_models)
