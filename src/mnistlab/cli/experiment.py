"""`mnistlab experiment NAME`: run one classic lesson and print its tables (the only printing here)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Iterator



def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


class _Experiments:
    """The experiment names, looked up only when argparse checks or lists them: the lessons import
    torch, which `mnistlab predict model.onnx` must not pay for."""

    def _names(self) -> list[str]:
        from mnistlab.lessons.experiments import list_experiments

        return [*list_experiments(), "all"]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


class _ExperimentParser(argparse.ArgumentParser):
    def format_help(self) -> str:
        from mnistlab.lessons.experiments import ALL_PAGE, get_experiment, list_experiments

        lines = "\n".join(f"  {name:<12} {get_experiment(name).description}" for name in list_experiments())
        lines += f"\n  {'all':<12} every lesson above, then one HTML page ({ALL_PAGE}) with all of them"
        self.description = f"Run one of the lectures' experiments on the embedded MNIST.\n\nexperiments:\n{lines}"
        return super().format_help()


def register(sub: Any) -> None:
    """Add the `experiment` subcommand to the main parser's subparsers."""
    p = sub.add_parser(
        "experiment", help="run a classic lesson: a table, figures and an HTML report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one of the lectures' experiments on the embedded MNIST.",
    )
    p.__class__ = _ExperimentParser  # the list of experiments is filled in when --help shows it
    p.add_argument("name", metavar="NAME", choices=_Experiments(), help="experiment: %(choices)s")
    p.add_argument("--quick", action="store_true", help="seconds instead of minutes: a data subset, few steps, rough numbers")
    p.add_argument("--out-dir", help="output folder (default: experiments/<name>-<time>)")
    p.add_argument("--seed", type=int, help="random seed (default: 0; with --lecture: that one seed)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where to train (default: auto)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.add_argument("--epochs", type=_positive_float, help="train each variant this many epochs (default: the experiment's own)")
    p.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                   help="also write a TensorBoard log per arm (variant) of the lesson, so that TensorBoard's run "
                        "selector compares them (the tensorboard extra): DIR/<lesson>/<arm>, or without DIR "
                        "<out-dir>/tb/<arm> (with all: <out-dir>/tb/<lesson>/<arm>)")
    p.add_argument("--lecture", action="store_true",
                   help="depth only: just the lecture's 9-layer net at its settings, once per --seeds, with the test "
                        "accuracy after every epoch: how many seeds stay on the 11%% plateau, when the others leave it")
    p.add_argument("--seeds", help="depth --lecture: the seeds, as a list and/or ranges, e.g. 0-9 or 0,3,7 (default: 0-4)")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run the experiment, then print its tables, notes and files."""
    from mnistlab.errors import ConfigError
    from mnistlab.lessons.experiments import run_experiment
    from mnistlab.lessons.experiments.common import ROUGH_NOTE, Options, format_table

    if args.threads is not None and args.threads <= 0:
        raise ConfigError(f"--threads must be positive, got {args.threads}")
    seeds = _lesson_options(args)
    out_dir = Path(args.out_dir) if args.out_dir else Path("experiments") / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tensorboard = _tensorboard_dir(args, out_dir)
    opts = Options(out_dir=out_dir, quick=args.quick, seed=args.seed or 0, device=args.device, threads=args.threads,
                   epochs=args.epochs, tensorboard=tensorboard, lecture=args.lecture, seeds=seeds,
                   progress=lambda line: print(line, flush=True))
    if args.quick:
        print(f"note: {ROUGH_NOTE}", flush=True)
    if args.name == "all":
        return _run_all(opts, args.quick)
    result = run_experiment(args.name, opts)
    print(f"experiment {result.name}: {result.title}")
    for name, rows in result.tables.items():
        print(f"\n{name}:")
        print("\n".join(format_table(rows)))
    if result.notes:
        print()
        for note in result.notes:
            print(f"note: {note}")
    if args.quick:
        print(f"note: {ROUGH_NOTE}")
    print(f"\nwrote {len(result.files)} files to {out_dir} in {result.seconds:.1f} s: {', '.join(result.files)}", flush=True)
    if tensorboard is not None:
        _print_tensorboard(tensorboard)
    return 0


def _tensorboard_dir(args: argparse.Namespace, out_dir: Path) -> Path | None:
    """The folder of this command's TensorBoard runs (checked, not created), or None without --tensorboard."""
    if args.tensorboard is None:
        return None
    from mnistlab.errors import ConfigError
    from mnistlab.lessons.experiments import get_experiment
    from mnistlab.reporting.tensorboard import check_log_root, require_tensorboard

    if args.name != "all" and not get_experiment(args.name).trains:
        raise ConfigError(f"--tensorboard: experiment {args.name} trains no model, so it has nothing to log")
    require_tensorboard()
    if not args.tensorboard:
        return check_log_root(out_dir / "tb")
    root = check_log_root(args.tensorboard)
    return root if args.name == "all" else root / args.name


def _print_tensorboard(folder: Path) -> None:
    runs = sorted({p.parent.relative_to(folder).as_posix() for p in folder.rglob("events.out.tfevents.*")})
    print(f"TensorBoard: {len(runs)} run{'s' * (len(runs) != 1)} in {folder}; view: tensorboard --logdir {folder}", flush=True)


def _lesson_options(args: argparse.Namespace) -> tuple[int, ...] | None:
    """Check --lecture and --seeds against the lesson (no option silently ignored); the parsed seeds."""
    from mnistlab.errors import ConfigError
    from mnistlab.lessons.experiments import get_experiment
    from mnistlab.lessons.experiments.depth import parse_seeds

    given = [flag for flag, on in (("lecture", args.lecture), ("seeds", args.seeds is not None)) if on]
    accepted = () if args.name == "all" else get_experiment(args.name).options
    for flag in given:
        if flag not in accepted:
            raise ConfigError(f"--{flag}: only `mnistlab experiment depth` has it, not {args.name}")
    if args.seeds is None:
        return (args.seed,) if args.lecture and args.seed is not None else None
    if not args.lecture:
        raise ConfigError("--seeds runs the 9-layer net once per seed: add --lecture (the full lesson uses --seed)")
    if args.seed is not None:
        raise ConfigError("--lecture: give either --seed S or --seeds LIST, not both")
    return parse_seeds(args.seeds)


def _run_all(opts: Options, quick: bool) -> int:
    """Every lesson in turn: after each, its lecture-vs-mnistlab table and time; then the page written."""
    from mnistlab.lessons.experiments import ALL_PAGE, run_all
    from mnistlab.lessons.experiments.common import LECTURE_TABLE, Result, format_table

    def done(result: Result) -> None:
        print(f"\n{result.name}: {result.title} ({result.seconds:.1f} s)")
        rows = result.tables.get(LECTURE_TABLE)
        if rows:
            print("\n".join(format_table(rows)))
        print(flush=True)

    results = run_all(opts, on_done=done)
    total = sum(r.seconds for r in results)
    print("lesson times: " + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in results))
    if quick:
        print(f"note: {ROUGH_NOTE}")
    print(f"wrote {len(results)} lessons to {opts.out_dir} in {total:.1f} s; the page: {opts.out_dir / ALL_PAGE}", flush=True)
    if opts.tensorboard is not None:
        _print_tensorboard(opts.tensorboard)
    return 0
