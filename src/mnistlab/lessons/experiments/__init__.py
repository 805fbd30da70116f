"""The classic lessons as experiments: `mnistlab experiment NAME`.

Each experiment is one module with one decorated `run(opts) -> Result` function. It trains for real
on the embedded MNIST, draws its figures into `opts.out_dir` and returns its tables as lists of
dicts; `run_experiment` adds `results.json` and a self-contained `report.html`. Importing this
package registers every built-in experiment and does nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnistlab.errors import ConfigError
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, Result, result_sections, table_html, write_outputs
from mnistlab.lessons.experiments.registry import Experiment, get_experiment, list_experiments, register_experiment


def run_experiment(name: str, opts: Options) -> Result:
    """Run one experiment into `opts.out_dir`; write results.json and report.html next to its figures."""
    import torch

    experiment = get_experiment(name)
    if opts.tensorboard is not None and not experiment.trains:
        raise ConfigError(f"--tensorboard: experiment {name} trains no model, so it has nothing to log")
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


ALL_PAGE = "index.html"


def run_all(opts: Options, names: list[str] | None = None, on_done: Any = None) -> list[Result]:
    """Run every experiment (or `names`), each into `opts.out_dir/<name>`, then write one page for all of them.

    Args:
        on_done: optional `on_done(result)` called after each experiment (the CLI prints progress with it).
    Returns:
        The results, in lecture order; `opts.out_dir/index.html` holds them all.
    """
    import dataclasses

    from mnistlab.fileio import atomic_write_text
    from mnistlab.reporting import html as page

    names = names or list_experiments()
    results = []
    for name in names:
        # With --tensorboard, each lesson's arms are runs under <tensorboard>/<lesson>/ (a lesson that
        # trains nothing has none).
        tensorboard = Path(opts.tensorboard) / name if opts.tensorboard and get_experiment(name).trains else None
        result = run_experiment(name, dataclasses.replace(opts, out_dir=Path(opts.out_dir) / name, tensorboard=tensorboard))
        results.append(result)
        if on_done is not None:
            on_done(result)
    summary = [{"lesson": r.name, **row, "lesson_seconds": round(r.seconds, 1)}
               for r in results for row in r.tables.get(LECTURE_TABLE, [])]
    total = sum(r.seconds for r in results)
    sections = [page.note("A companion to the lectures: every lesson run by `mnistlab experiment all`"
                          f"{' --quick (rough numbers)' if opts.quick else ''}; each lesson's claim from the lecture "
                          f"beside mnistlab's number, then its tables and figures. Total {total:.0f} s."),
                page.heading("The lectures' numbers beside ours"), table_html(summary),
                page.heading("Lessons"),
                page.table([["lesson", "title", "seconds"], *([f"{r.name}", r.title, f"{r.seconds:.1f}"] for r in results)])]
    for r in results:
        sections += [page.heading(f"{r.name}: {r.title} ({r.seconds:.1f} s)"),
                     *result_sections(r, Path(opts.out_dir) / r.name, level=3)]
    atomic_write_text(Path(opts.out_dir) / ALL_PAGE, page.render_page("mnistlab: every lesson", sections))
    return results


# Register the built-in experiments (import for side effect, after the registry exists), in lecture order.
from mnistlab.lessons.experiments import depth, activations, overfit, losses, ova, multilabel, softmax, templates, rnn, shapes, convolution, worked  # noqa: E402,F401

__all__ = ["Experiment", "Options", "Result", "register_experiment", "list_experiments", "get_experiment", "run_experiment",
           "run_all", "ALL_PAGE"]
