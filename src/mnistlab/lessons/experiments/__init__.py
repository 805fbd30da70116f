"""The classic lessons as experiments: `mnistlab experiment NAME`.

Each experiment is one module with one decorated `run(opts) -> Result` function. It trains for real
on the embedded MNIST, draws its figures into `opts.out_dir` and returns its tables as lists of
dicts; `run_experiment` adds `results.json` and a self-contained `report.html`. Importing this
package registers every built-in experiment and does nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path

from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments.common import Options, Result, write_outputs
from mnistlab.lessons.experiments.registry import Experiment, get_experiment, list_experiments, register_experiment


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
from mnistlab.lessons.experiments import depth, activations, overfit, losses, ova, multilabel, softmax, templates, rnn, shapes, convolution, worked  # noqa: E402,F401

__all__ = ["Experiment", "Options", "Result", "register_experiment", "list_experiments", "get_experiment", "run_experiment"]
