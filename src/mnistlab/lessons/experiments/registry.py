"""The lesson registry: `@register_experiment(name, description)` on each lesson's `run(opts)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments.common import Options, Result


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, a one-line description and its run function."""

    name: str
    description: str
    run: Callable[[Options], Result]
    trains: bool = True  # trains models (through common.train), so --tensorboard has arms to log
    options: tuple[str, ...] = ()  # the lesson's own options beyond the common ones (e.g. "lecture", "seeds")


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, description: str, trains: bool = True, options: tuple[str, ...] = ()) -> Callable:
    """Register `run(opts) -> Result` under `name` (a duplicate name is a programming error).

    Args:
        trains: False for a lesson that trains nothing (worked examples): --tensorboard is refused for it.
        options: the Options fields beyond the common ones that this lesson reads.
    """

    def decorator(run: Callable[[Options], Result]) -> Callable[[Options], Result]:
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is already registered")
        _EXPERIMENTS[name] = Experiment(name, description, run, trains, tuple(options))
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
