"""The `mnistlab` command: the only module that reads argv or prints to the terminal.

Every user-facing failure is a MnistlabError (or an argparse error): one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mnistlab.config import (PRESETS, Config, field_default, field_type, optimiser_summary, preset_values, read_config_file,
                     schedule_summary)
from mnistlab.errors import ConfigError, MnistlabError, MnistlabWarning, TrainingDiverged

if TYPE_CHECKING:
    from mnistlab.runs.session import TrainSession

PROG = "mnistlab"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _out(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- config options


def _parse_list(base: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = tuple(base(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {base.__name__}s, e.g. 520,320; got {text!r}") from None
        if not values:  # "" would mean no hidden layers (a linear model), no classes, no betas
            example = "0.9,0.999" if base is float else "520,320"
            raise argparse.ArgumentTypeError(f"expected at least one {base.__name__}, e.g. {example}; got {text!r}")
        return values

    parse.__name__ = f"list of {base.__name__}"
    return parse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per Config field, typed from its annotation, documented from its metadata."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    group_of = {
        "dataset": "data", "model": "model", "loss": "loss and optimiser", "epochs": "schedule", "engine": "run",
    }
    current = "data"
    for f in dataclasses.fields(Config):
        current = group_of.get(f.name, current)
        group = groups.setdefault(current, parser.add_argument_group(current))
        base, optional, is_tuple = field_type(f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            kwargs["help"] = argparse.SUPPRESS
            continue
        if is_tuple:
            kwargs["type"] = _parse_list(base)
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = base
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and default != ():
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            kwargs["help"] = f"{help_text} (default: {shown})"
        group.add_argument(flag, **kwargs)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The Config fields given on the command line (the others are absent: argparse.SUPPRESS)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}


def config_from_args(args: argparse.Namespace) -> Config:
    """defaults < --preset (with its overrides for the chosen data set) < --config FILE < flags.

    A setting from --preset or --config that a higher layer made meaningless (`--preset lecture
    --optimizer adam`: the preset's momentum) goes back to its default, since nobody asked for it
    with this choice; one that is meaningless where it was given (`--model lenet --dropout 0.5`,
    or both in one config file) is an error (here for files, in session.check_names for flags).
    """
    from mnistlab.runs.session import ignored_settings

    preset = getattr(args, "preset", None)
    below_flags = [(f"--config {args.config}", read_config_file(args.config))] if getattr(args, "config", None) else []

    def layers(dataset: str | None) -> list[tuple[str, dict[str, Any]]]:
        first = [(f"--preset {preset}", preset_values(preset, dataset))] if preset else []
        return first + below_flags + [("flags", _flags(args))]

    def build(chosen: list[tuple[str, dict[str, Any]]]) -> Config:
        cfg = Config()
        for _, values in chosen:
            cfg = Config.from_dict(values, base=cfg) if values else cfg
        return cfg

    chosen = layers(None)
    cfg = build(chosen)
    if preset:
        # The data set may come from the flags or the config file: build again with the preset's
        # overrides for it (a no-op for data sets without any).
        chosen = layers(cfg.dataset)
        cfg = build(chosen)
    stale: dict[str, Any] = {}
    for name in ignored_settings(cfg):
        owners = [i for i, (_, values) in enumerate(chosen) if name in values]
        if not owners or owners[-1] == len(chosen) - 1:
            continue  # the default, or the user's own flag: check_names refuses it
        where, _ = chosen[owners[-1]]
        why = ignored_settings(build(chosen[: owners[-1] + 1])).get(name)
        if why:
            raise ConfigError(f"{where}: {why}")
        stale[name] = field_default(name)
    return Config.from_dict(stale, base=cfg) if stale else cfg


# ----------------------------------------------------------------------------- train


class _StopFlag:
    """SIGINT/SIGTERM set a flag that the trainer polls after each step; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: {signal.Signals(signum).name} received: saving a checkpoint after this step...",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __call__(self) -> bool:
        return self.requested


def _fmt_pct(x: float | None) -> str:
    return "   -   " if x is None else f"{100 * x:6.2f}%"


def _fmt_loss(x: float | None) -> str:
    return "   -   " if x is None else f"{x:7.4f}"


# Settings that only say where a run executes: they may change when it resumes. Every other one
# shapes the numbers (a longer --epochs would even rewrite the schedule already followed).
RESUME_MAY_CHANGE = ("device", "threads", "figures")


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(map(_plain, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def resume_changes(args: argparse.Namespace) -> dict[str, Any]:
    """What --resume may change (device, threads, figures), from the settings given with it.

    Any other setting (flag, --preset or --config) that differs from the run's stored config is
    one ConfigError listing each difference, before any data is loaded.
    """
    from pathlib import Path

    from mnistlab.runs.rundir import RunDir, check_resumable

    stored = check_resumable(RunDir(Path(args.resume)))
    wanted = stored
    preset = getattr(args, "preset", None)
    layers = [preset_values(preset, stored.dataset)] if preset else []
    layers += [read_config_file(args.config)] if getattr(args, "config", None) else []
    for values in [*layers, _flags(args)]:
        wanted = Config.from_dict(values, base=wanted) if values else wanted
    diffs = [f"--{f.name.replace('_', '-')} (stored {_plain(getattr(stored, f.name))}, given {_plain(getattr(wanted, f.name))})"
             for f in dataclasses.fields(Config)
             if f.name not in RESUME_MAY_CHANGE and getattr(stored, f.name) != getattr(wanted, f.name)]
    if diffs:
        raise ConfigError(f"--resume {args.resume} continues the run with its stored config, but these settings differ: "
                          f"{'; '.join(diffs)} (only --{', --'.join(RESUME_MAY_CHANGE)} may change on resume)")
    return {name: getattr(wanted, name) for name in RESUME_MAY_CHANGE if getattr(wanted, name) != getattr(stored, name)}


def describe_run(session: "TrainSession", resumed: bool = False) -> str:
    """The first line of a training run: model, split sizes, the effective optimiser and schedule, length, device, run."""
    from mnistlab.models import count_parameters

    cfg, data, trainer = session.cfg, session.data, session.trainer
    training = [optimiser_summary(cfg), schedule_summary(cfg)]
    if cfg.loss != "ce":
        training.append(f"loss {cfg.loss}")
    if cfg.label_smoothing:
        training.append(f"label smoothing {cfg.label_smoothing:g}")
    if cfg.augment:
        training.append("augmented")
    steps = f"{trainer.total_steps:,} step{'' if trainer.total_steps == 1 else 's'}"
    length = steps if cfg.steps else f"{cfg.epochs:g} epoch{'' if cfg.epochs == 1 else 's'} ({steps})"
    where = f"run {session.run.path}" if session.run else "no run directory (--no-save-run)"
    if resumed:
        where += f" (resumed at step {trainer.state.step:,})"
    return (
        f"{cfg.model} ({count_parameters(session.model):,} parameters) on {data.name}: {len(data.train):,} train / "
        f"{len(data.val) if data.val else 0:,} val / {len(data.test):,} test; {', '.join(training)}, "
        f"batch {cfg.batch_size}, {length}; device {trainer.device}; {where}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from mnistlab.runs.session import TrainSession, check_names

    if args.resume:
        changes = resume_changes(args)
        session = TrainSession.resume(args.resume, device=changes.get("device"), threads=changes.get("threads"))
        if "figures" in changes:
            session.cfg.figures = changes["figures"]
    else:
        cfg = config_from_args(args)
        if cfg.engine == "numpy":
            from mnistlab.cli.numpy_engine import run_numpy

            check_names(cfg)
            return run_numpy(cfg, quiet=args.quiet)
        session = TrainSession.start(cfg)
    cfg = session.cfg
    data = session.data
    progress = not args.quiet
    bar = None

    def on_epoch_start(epoch: int, batches: int) -> None:
        nonlocal bar
        if progress:
            from tqdm import tqdm

            start = session.trainer.state.batch
            bar = tqdm(total=batches, initial=start, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                       dynamic_ncols=True, file=sys.stderr, disable=None, mininterval=0.2)
            bar.images = 0
            bar.t0 = time.perf_counter()

    def on_step(info: dict) -> None:
        if bar is not None:
            bar.update(1)
            bar.images += info["items"]
            if bar.n % 10 == 0:
                rate = bar.images / max(1e-9, time.perf_counter() - bar.t0)
                bar.set_postfix_str(f"loss {info['loss'].item():.4f}, {rate:,.0f} img/s", refresh=False)

    def on_epoch_end(record: dict) -> None:
        if bar is not None:
            bar.close()
        if args.quiet:
            return
        total = math.ceil(session.trainer.total_steps / session.trainer.steps_per_epoch)
        _out(
            f"epoch {record['epoch']:>3}/{total}  train loss {_fmt_loss(record['train_loss'])} acc {_fmt_pct(record['train_acc'])}"
            f"  | val loss {_fmt_loss(record['val_loss'])} acc {_fmt_pct(record['val_acc'])}  | {record['time_s']:6.2f} s"
        )

    if not args.quiet:
        _out(describe_run(session, resumed=bool(args.resume)))
    start = time.perf_counter()
    try:
        with _StopFlag() as stop:
            history = session.fit(on_epoch_start=on_epoch_start, on_step=on_step, on_epoch_end=on_epoch_end, should_stop=stop)
    except TrainingDiverged as e:
        if bar is not None:
            bar.close()
        kept = session.run and session.run.checkpoint_path("last").exists()
        tail = f"; the last good checkpoint is {session.run.checkpoint_path('last')}" if kept else "; no checkpoint was written"
        if session.run and not kept:  # a failed start: removed if it logged nothing; the same --name reuses it
            gone = not session.run.path.exists()
            tail += f", so {session.run.path} was removed" if gone else (
                f"; the steps logged are in {session.run.metrics_path}, and the same --name starts afresh")
        _err(f"{e}{tail}")
        return EXIT_ERROR
    except session.Interrupted as e:
        if bar is not None:
            bar.close()
        if session.run:
            _err(
                f"interrupted at step {e.state.step}; checkpoint saved to {session.run.checkpoint_path('last')}. "
                f"Resume with: {PROG} train --resume {session.run.path}"
            )
        else:
            _err(f"interrupted at step {e.state.step} (--no-save-run: nothing saved)")
        return EXIT_INTERRUPTED
    test = history.test
    n = len(data.test)
    correct = round(test.acc * n)
    what = "Accuracy" if data.test.y.dim() == 1 else f"Subset accuracy (threshold {cfg.threshold:g})"
    _out(
        f"Test set: Average loss: {test.loss:.4f}, {what}: {correct}/{n} ({100 * test.acc:.2f}%)",
        f"Training time {history.train_seconds:.2f} s, testing time {history.test_seconds:.2f} s, "
        f"total {time.perf_counter() - start:.2f} s",
    )
    if session.run:
        _out(f"saved run {session.run.path}  (evaluate: {PROG} evaluate {session.run.path})")
    return 0


# ----------------------------------------------------------------------------- evaluate / predict


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _check_positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be positive, got {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mnistlab.evaluation.evaluate import evaluate_checkpoint
    from mnistlab.evaluation.metrics import format_report

    # The options first, as `train` does: a bad flag costs no checkpoint or data loading.
    _check_positive("--batch-size", args.batch_size)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ConfigError(f"--threshold is a probability in (0, 1), got {args.threshold}")
    report = evaluate_checkpoint(args.run, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
                                 device=args.device, tta=args.tta, batch_size=args.batch_size, threshold=args.threshold)
    if args.json:
        _out(json.dumps(report, indent=2))
    else:
        _out(f"{report['checkpoint']} on {report['dataset']} ({report['split']}, {report['num_samples']:,} images)",
             format_report(report))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mnistlab.data.images import find_blanks
    from mnistlab.evaluation.predict import Predictor

    if not args.images and not args.csv:
        raise ConfigError("predict needs IMAGE files or --csv FILE (rows of pixels, e.g. the Digit Recognizer test.csv)")
    if args.images and args.csv:
        raise ConfigError("give IMAGE files or --csv FILE, not both")
    if args.out and not args.csv:
        raise ConfigError("--out writes the ImageId,Label table of --csv; for images use --json")
    _check_positive("--top-k", args.top_k)
    predictor = Predictor.from_checkpoint(args.run, device=args.device)
    if args.csv:
        from mnistlab.data.custom import fit_to_model, read_pixel_csv
        from mnistlab.fileio import atomic_write_text

        x, _ = read_pixel_csv(args.csv)  # a label column, if present, is ignored
        x = fit_to_model(x, predictor.in_shape, args.csv)
        # The submission format wants a label on every row: blank rows keep their (guessed) label,
        # and one line says how many there were.
        num_blank = int(find_blanks(x).sum())
        preds = predictor.classify(x)
        table = "ImageId,Label\n" + "".join(f"{i},{predictor.class_names[c]}\n" for i, c in enumerate(preds.tolist(), 1))
        if args.out:
            atomic_write_text(args.out, table)
            _out(f"wrote {len(preds):,} predictions to {args.out}")
        else:
            sys.stdout.write(table)
            sys.stdout.flush()
        if num_blank:
            _warn(f"{args.csv}: {num_blank:,} of {len(preds):,} rows are blank (no ink); their labels are guesses")
        return EXIT_ERROR if num_blank and num_blank == len(preds) else 0
    results = predictor.predict_files(args.images, top_k=args.top_k)
    if args.json:
        _out(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["blank"]:
                _out(f"{r['file']}: no digit found (blank image)")
                continue
            top = ", ".join(f"{c['label']} {100 * c['prob']:.1f}%" for c in r["top"])
            _out(f"{r['file']}: {r['label']}   ({top})")
    if all(r["blank"] for r in results):
        n = len(results)
        _err("no digit found (the image is blank)" if n == 1 else f"no digit found in any of the {n} images (all blank)")
        return EXIT_ERROR
    return 0


# ----------------------------------------------------------------------------- models / datasets / report


def cmd_models(args: argparse.Namespace) -> int:
    from mnistlab.models import count_parameters, create_model, list_models, model_description
    from mnistlab.models.summary import summarize

    if args.summary:
        _out(summarize(args.summary, num_classes=10, in_shape=(1, 28, 28)))
        return 0
    _out(f"{'model':<10} {'parameters':>11}  description")
    for name in list_models():
        k = 2 if name == "logistic" else 10
        n = count_parameters(create_model(name, k, (1, 28, 28)))
        _out(f"{name:<10} {n:>11,}  {model_description(name)}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from mnistlab.data.raw import dataset_paths, verify_dataset
    from mnistlab.data.sources import get_dataset_spec, list_datasets

    if args.action == "list":
        _out(f"{'name':<16} {'classes':>7}  where        description")
        for name in list_datasets():
            spec = get_dataset_spec(name)
            where = "embedded" if spec.embedded else ("generated" if spec.generated else "download")
            _out(f"{name:<16} {len(spec.class_names):>7}  {where:<12} {spec.description}")
        return 0
    if args.action == "export":
        from mnistlab.data.export import export_dataset, export_summary

        if not args.name or not args.dir:
            raise ConfigError("datasets export needs NAME and DIR, e.g. datasets export mnist --format folder mnist-png")
        out = export_dataset(args.name, args.format, args.dir, data_dir=args.data_dir)
        _out(f"wrote {args.name} as {args.format} to {out} ({export_summary(out)})")
        return 0
    names = [args.name] if args.name else ["mnist"]
    if args.action == "path":
        for name in names:
            for key, path in dataset_paths(name, args.data_dir).items():
                _out(f"{name} {key}: {path if path else '(not on this machine)'}")
        return 0
    ok_all = True
    for name in names:
        for key, path, ok, detail in verify_dataset(name, args.data_dir):
            ok_all &= ok
            _out(f"{'ok  ' if ok else 'FAIL'} {name} {key}: {path} ({detail})")
    return 0 if ok_all else EXIT_ERROR


def cmd_report(args: argparse.Namespace) -> int:
    from mnistlab.reporting.html import render_report

    _out(f"wrote {render_report(args.run, args.out)}")
    return 0


# ----------------------------------------------------------------------------- parser


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    from mnistlab import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="Train, evaluate, explain and serve classifiers on MNIST-family images.",
        epilog=f"Start with: {PROG} train   (the default CNN on the embedded MNIST, about a minute on 2 CPU cores)",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # A short usage line: argparse prints it above every flag error, and the full one is 30+ lines.
    p = sub.add_parser("train", help="train a model; writes runs/<name>/", formatter_class=argparse.HelpFormatter,
                       usage=f"{PROG} train [--preset NAME] [--config FILE] [--resume RUN] [-q] [OPTIONS]",
                       description="Train a model. Options override --config, which overrides --preset, which overrides the defaults.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a tuned set of options (speedrun, best, mlp, lecture)")
    p.add_argument("--config", metavar="FILE", help="JSON file of options (e.g. a run's config.json)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, loss, perplexity, per-class table and confusion matrix", formatter_class=_Formatter)
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--dataset", help="evaluate on another data set (default: the one it was trained on)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--batch-size", type=int, default=2000, help="images per forward pass (a positive integer)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation (default: as trained)")
    p.add_argument("--threshold", type=float, default=None,
                   help="multi-label data: predict each label whose probability is >= this (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (PNG, JPEG, ...) prepared like MNIST", formatter_class=_Formatter,
                       description="Classify images prepared like MNIST. An image with no ink is reported as blank "
                                   "(\"no digit found\"; JSON \"blank\": true, no class), and the exit status is 1 "
                                   "when every input is blank. --csv rows always get a label (the submission format "
                                   "needs one); blank rows are counted in one warning line.")
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--csv", metavar="FILE", help="classify the rows of a pixel CSV (pixel0..pixelN, label column optional)")
    p.add_argument("--out", metavar="FILE", help="with --csv: write ImageId,Label rows (numbered from 1) here, not to stdout")
    p.add_argument("--top-k", type=int, default=3,
                   help="how many classes to list per image (at least 1; more than the model has lists them all)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the models with parameter counts", formatter_class=_Formatter)
    p.add_argument("--summary", metavar="MODEL", help="print each layer's output shape for MODEL")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", help="list, verify, locate or export data sets", formatter_class=_Formatter)
    p.add_argument("action", choices=("list", "verify", "path", "export"))
    p.add_argument("name", nargs="?", help="data set (default: mnist)")
    p.add_argument("dir", nargs="?", metavar="DIR", help="export: the new folder to write")
    p.add_argument("--format", choices=("folder", "csv", "idx"), default="folder",
                   help="export: image folders train/<class>/*.png, train.csv/test.csv, or gzipped IDX files")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("report", help="render a run's figures and numbers into one HTML page", formatter_class=_Formatter)
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="output file (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """The subcommands defined in their own modules, registered explicitly: a module that fails to
    import is an error here, never a command silently missing from --help."""
    from mnistlab import bench
    from mnistlab.cli import experiment, lm, serve
    from mnistlab.lessons import tabular

    return [experiment.register, bench.register, lm.register, tabular.register, serve.register]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn our errors into one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning

    def show_warning(message: Warning | str, category: type[Warning], *where: Any) -> None:
        # Our own warnings are one line on stderr, like errors; any other is shown as Python does.
        if issubclass(category, MnistlabWarning):
            print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, category, *where)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except MnistlabError as e:
        _err(str(e))
        return EXIT_USAGE if type(e).__name__ == "ConfigError" else EXIT_ERROR
    except MemoryError:
        _err("out of memory: use a smaller data set, --train-size or --batch-size, or a machine with more memory")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mnistlab ... | head`: the reader went away; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = previous
