"""`mnistlab train`: the options built from Config's fields, the first line, one row per epoch, Ctrl-C.

Also the config layering (defaults < --preset < --config FILE < flags) that `bench` shares.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from mnistlab.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, PROG, err, out, warn
from mnistlab.config import (PRESETS, Config, field_default, field_type, optimiser_summary, preset_values, read_config_file,
                     schedule_summary)
from mnistlab.cpus import usable_cpus
from mnistlab.errors import ConfigError, TrainingDiverged

# Everything this command writes is complete when it returns: the CLI may end the process at once (cli.entry).
FAST_EXIT = True

if TYPE_CHECKING:
    from mnistlab.runs.session import TrainSession


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
    if cfg.loss == "ce" and cfg.model != "logistic" and cfg.effective_label_smoothing:
        training.append(f"label smoothing {cfg.effective_label_smoothing:g}")
    if cfg.augment:
        training.append("augmented")
    if cfg.effective_tta:
        training.append(f"test-time augmentation ({cfg.tta_views} views{', mirrored' if cfg.aug_flip else ''})")
    length = cfg.run_length(trainer.steps_per_epoch)
    where = f"run {session.run.path}" if session.run else "no run directory (--no-save-run)"
    if resumed:
        where += f" (resumed at step {trainer.state.step:,})"
    return (
        f"{cfg.model} ({count_parameters(session.model):,} parameters) on {data.name}: {len(data.train):,} train / "
        f"{len(data.val) if data.val else 0:,} val / {len(data.test):,} test; {', '.join(training)}, "
        f"batch {cfg.batch_size}, {length}; device {trainer.device}; {where}"
    )


def launch_torchrun(args: argparse.Namespace) -> int:
    """`--nproc N`: run this same command under torchrun with N processes on this machine; its exit status.

    torchrun runs in its own session, so Ctrl-C reaches it once, forwarded from here: it then sends
    SIGTERM to every rank, and rank 0 saves one checkpoint.
    """
    import subprocess

    from mnistlab.training.launch import env_world, torchrun_command  # not torch: torchrun and the ranks import it

    if env_world() > 1:
        raise ConfigError("--nproc: this process already runs under torchrun; give --nproc-per-node to torchrun instead")
    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: give at least 1 process")
    argv, skip = [], False
    for a in getattr(args, "argv", None) or sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    child = subprocess.Popen(torchrun_command(args.nproc, argv), start_new_session=True)

    def forward(signum: int, frame: Any) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a run: the first line, a progress bar and one row per epoch, then the test result."""
    args.started = time.monotonic()  # for $MNISTLAB_PHASES: before torch is imported
    launcher = getattr(args, "nproc", None) not in (None, 1)  # this process only starts torchrun
    if getattr(args, "tensorboard", None) is not None:  # before torchrun starts, any data loads or a run folder
        from mnistlab.reporting.tensorboard import check_log_root, require_tensorboard

        require_tensorboard(package_only=launcher)  # the launcher imports no torch
        if args.tensorboard:
            check_log_root(args.tensorboard)
    if launcher:
        return launch_torchrun(args)
    from mnistlab.reporting import parallel

    try:
        if _may_draw(args) and usable_cpus() > 1:  # they import the plots now, on the core torch's import leaves idle
            parallel.start_drawers(2)
        from mnistlab.training.distributed import shutdown

        try:
            return _train(args)
        finally:
            shutdown()  # leave torchrun's process group, if this process joined one
    finally:
        parallel.stop_drawers()  # those not needed after all (no figures, an error, Ctrl-C)


def _may_draw(args: argparse.Namespace) -> bool:
    """Whether this run may draw figures, from the flags alone (the config is built after torch's import)."""
    import os

    if getattr(args, "figures", True) is False or getattr(args, "save_run", True) is False:
        return False
    if getattr(args, "engine", None) == "numpy":
        return False
    return os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes the run


def _train(args: argparse.Namespace) -> int:
    started = getattr(args, "started", time.monotonic())
    from mnistlab.runs.session import TrainSession, check_names
    from mnistlab.training.distributed import current
    from mnistlab.training.launch import env_world

    imported = time.monotonic()

    tensorboard = getattr(args, "tensorboard", None)
    if args.resume:
        changes = resume_changes(args)
        session = TrainSession.resume(args.resume, device=changes.get("device"), threads=changes.get("threads"))
        if "figures" in changes:
            session.cfg.figures = changes["figures"]
    else:
        cfg = config_from_args(args)
        if tensorboard is not None and cfg.engine == "numpy":
            raise ConfigError("--tensorboard logs torch training; --engine numpy has no TensorBoard log")
        if tensorboard == "" and not cfg.save_run:
            raise ConfigError("--tensorboard without a DIR logs into the run folder's tb/, and --no-save-run writes "
                              "no run folder: give a DIR, e.g. --tensorboard tb")
        if cfg.engine == "numpy":
            if env_world() > 1:
                raise ConfigError("--engine numpy trains in one process; run it without torchrun or --nproc")
            from mnistlab.cli.numpy_engine import run_numpy

            check_names(cfg)
            return run_numpy(cfg, quiet=args.quiet)
        session = TrainSession.start(cfg)
    cfg = session.cfg
    data = session.data
    dist = current()
    if not dist.is_main:  # rank 0 alone prints, shows the progress bar and writes the run (and its TensorBoard log)
        args.quiet = True
    log_dir = session.tensorboard_dir(tensorboard or None) if tensorboard is not None and dist.is_main else None
    if args.resume and tensorboard is None and dist.is_main and (session.run.path / "tb").is_dir():
        warn(f"{session.run.path / 'tb'} holds this run's TensorBoard log; add --tensorboard to go on logging to it")
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
        out(
            f"epoch {record['epoch']:>3}/{total}  train loss {_fmt_loss(record['train_loss'])} acc {_fmt_pct(record['train_acc'])}"
            f"  | val loss {_fmt_loss(record['val_loss'])} acc {_fmt_pct(record['val_acc'])}  | {record['time_s']:6.2f} s"
        )

    if not args.quiet:
        out(describe_run(session, resumed=bool(args.resume)))
        if log_dir is not None:
            view = tensorboard or session.run.path.parent  # the folder of many runs: TensorBoard compares them
            out(f"TensorBoard log {log_dir}  (view: tensorboard --logdir {view})")
        if dist.active:
            shares = f"{cfg.batch_size // dist.world}" + ("" if cfg.batch_size % dist.world == 0 else f"-{cfg.batch_size // dist.world + 1}")
            out(f"data-parallel: {dist.world} processes ({'nccl' if dist.comm_device.type == 'cuda' else 'gloo'}), "
                f"global batch {cfg.batch_size} ({shares} images per rank)")
    start = time.perf_counter()

    def on_test(history: Any) -> None:  # the result first; the run's files and figures follow
        if not dist.is_main:
            return
        test = history.test
        n = len(data.test)
        what = "Accuracy" if data.test.y.dim() == 1 else f"Subset accuracy (threshold {cfg.threshold:g})"
        out(
            f"Test set: Average loss: {test.loss:.4f}, {what}: {round(test.acc * n)}/{n} ({100 * test.acc:.2f}%)",
            f"Training time {history.train_seconds:.2f} s, testing time {history.test_seconds:.2f} s, "
            f"total {time.perf_counter() - start:.2f} s",
        )

    try:
        with _StopFlag() as stop:
            history = session.fit(on_epoch_start=on_epoch_start, on_step=on_step, on_epoch_end=on_epoch_end, should_stop=stop,
                                  on_test=on_test, tensorboard=log_dir)
    except TrainingDiverged as e:
        if bar is not None:
            bar.close()
        kept = session.run and session.run.checkpoint_path("last").exists()
        tail = f"; the last good checkpoint is {session.run.checkpoint_path('last')}" if kept else "; no checkpoint was written"
        if session.run and not kept:  # a failed start: removed if it logged nothing; the same --name reuses it
            gone = not session.run.path.exists()
            tail += f", so {session.run.path} was removed" if gone else (
                f"; the steps logged are in {session.run.metrics_path}, and the same --name starts afresh")
        err(f"{e}{tail}")
        return EXIT_ERROR
    except session.Interrupted as e:
        if bar is not None:
            bar.close()
        if not dist.is_main:
            return EXIT_INTERRUPTED
        if session.run:
            err(
                f"interrupted at step {e.state.step}; checkpoint saved to {session.run.checkpoint_path('last')}. "
                f"Resume with: {PROG} train --resume {session.run.path}"
            )
        else:
            err(f"interrupted at step {e.state.step} (--no-save-run: nothing saved)")
        return EXIT_INTERRUPTED
    if not dist.is_main:
        return 0
    if session.run:
        out(f"saved run {session.run.path}  (evaluate: {PROG} evaluate {session.run.path})")
    _write_phases(session, history, started, imported)
    return 0


def _write_phases(session: TrainSession, history: Any, started: float, imported: float) -> None:
    """For benchmarks/speedrun_command.py: where this run's time went, as JSON in $MNISTLAB_PHASES.

    Timestamps are time.monotonic() (one clock for the benchmark's process and this one); durations
    are seconds. Nothing is written without the variable.
    """
    import os

    path = os.environ.get("MNISTLAB_PHASES")
    if not path:
        return
    from mnistlab.fileio import atomic_write_json

    t = session.timings
    try:
        atomic_write_json(path, {"t_main": started, "t_imports": imported, "data_s": t.get("data", 0.0),
                                 "model_s": t.get("model", 0.0), "train_s": history.train_seconds,
                                 "test_s": history.test_seconds, "artifacts_s": t.get("artifacts", 0.0),
                                 "t_end": time.monotonic()})
    except OSError as e:  # the run itself is saved: a bad benchmark path costs only the phases
        warn(f"MNISTLAB_PHASES={path}: could not write the phases ({e.strerror or e})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab train` to the CLI."""
    # A short usage line: argparse prints it above every flag error, and the full one is 30+ lines.
    p = subparsers.add_parser("train", help="train a model; writes runs/<name>/", formatter_class=argparse.HelpFormatter,
                              usage=f"{PROG} train [--preset NAME] [--config FILE] [--resume RUN] [-q] [OPTIONS]",
                              description="Train a model. Options override --config, which overrides --preset, which overrides the defaults.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a tuned set of options (speedrun, best, mlp, lecture)")
    p.add_argument("--config", metavar="FILE", help="JSON file of options (e.g. a run's config.json)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training in N processes on this machine (runs this command under torchrun)")
    p.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                   help="also write a TensorBoard log (the tensorboard extra): train loss, accuracy and lr at every "
                        "--log-every step, train/val per epoch, then the test result with the options as hparams, "
                        "the confusion matrix and the most confident mistakes. Without DIR: the run folder's tb/; "
                        "with DIR: DIR/<run name> (so tensorboard --logdir DIR compares runs). With --resume it "
                        "appends (the steps after the checkpoint are replaced)")
    add_config_options(p)
    p.set_defaults(func=cmd_train)
