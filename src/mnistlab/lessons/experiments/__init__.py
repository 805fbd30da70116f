"""The classic lessons as experiments: `mnistlab experiment NAME`.

Each experiment is one module with one decorated `run(opts) -> Result` function. It trains for real
on the embedded MNIST, draws its figures into `opts.out_dir` and returns its tables as lists of
dicts; `run_experiment` adds `results.json` and a self-contained `report.html`. Importing this
package registers every built-in experiment and does nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments.common import Options, Result, write_outputs


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, a one-line description and its run function."""

    name: str
    description: str
    run: Callable[[Options], Result]


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, description: str) -> Callable:
    """Register `run(opts) -> Result` under `name` (a duplicate name is a programming error)."""

    def decorator(run: Callable[[Options], Result]) -> Callable[[Options], Result]:
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is already registered")
        _EXPERIMENTS[name] = Experiment(name, description, run)
        return run

    return decorator


def list_experiments() -> list[str]:
    """Names of the registered experiments, in lecture order."""
    return list(_EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`; an unknown name is a ConfigError that lists the valid ones."""
    if name not in _EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r} (choose from {', '.join(_EXPERIMENTS)})")
    return _EXPERIMENTS[name]


def run_experiment(name: str, opts: Options) -> Result:
    """Run one experiment into `opts.out_dir`; write results.json and report.html next to its figures."""
    import torch

    experiment = get_experiment(name)
    try:
        Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {opts.out_dir}: {e.strerror or e}") from None
    if opts.threads:
        torch.set_num_threads(opts.threads)
    start = time.perf_counter()
    result = experiment.run(opts)
    result.seconds = time.perf_counter() - start
    write_outputs(result, Path(opts.out_dir))
    return result


# Register the built-in experiments (import for side effect, after the registry exists), in lecture order.
from mnistlab.lessons.experiments import depth, activations, overfit, losses, ova, multilabel, softmax, templates, rnn, shapes  # noqa: E402,F401

__all__ = ["Experiment", "Options", "Result", "register_experiment", "list_experiments", "get_experiment", "run_experiment"]
