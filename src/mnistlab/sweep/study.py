"""A sweep: Optuna trials of `mnistlab train` settings, scored on VALIDATION accuracy, in one shared storage.

Each trial is one TrainSession with the fixed settings plus the trial's picks, trained without a run
folder (no checkpoints, metrics or figures: a sweep's trials live in the study) and on data whose
test split is empty, so nothing in a trial can read the test set. The validation accuracy after
every epoch is reported to Optuna, and the median pruner stops a trial below the median of the
trials before it at that epoch. A trial that diverges (TrainingDiverged) is recorded as failed and
the sweep goes on. Workers are processes that share the storage: a journal file by default (safe
for several processes on one machine), or any SQLAlchemy URL (postgresql://...) for several
machines. `--trials N` runs N more trials, as Optuna's `study.optimize(n_trials=N)` does; they are
split between the workers up front, so the count is exact.

At the end, `best_config` is the best trial's full Config, written as best.json; `retrain` trains it
again as a normal run (`mnistlab train --config best.json` does the same) and evaluates it once on
the test set.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mnistlab.config import Config
from mnistlab.errors import ConfigError, MnistlabError, TrainingDiverged
from mnistlab.sweep.space import Param

INSTALL = "mnistlab sweep needs Optuna: pip install 'mnistlab[sweep]' (or: pip install optuna)"
# Data-loading fields: trials that agree on them share one loaded copy of the data in a worker.
INTERRUPTED = "interrupted (Ctrl-C)"
DATA_FIELDS = ("dataset", "data_dir", "val_size", "train_size", "classes", "positive", "normalize", "image_size",
               "channels", "test_size", "seed", "device")


def require_optuna() -> Any:
    """The optuna module, or a MnistlabError saying what to install."""
    try:
        import optuna
    except ImportError:
        raise MnistlabError(INSTALL) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the CLI prints one line per trial itself
    return optuna


def default_study_name(cfg: Config) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cfg.model}-{cfg.dataset}").strip("_")


def default_storage(cfg: Config, study: str) -> str:
    """The journal file of a sweep that names no --storage: <out_dir>/sweeps/<study>/journal.log."""
    return str(Path(cfg.out_dir) / "sweeps" / study / "journal.log")


def is_database(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str) -> Any:
    """An Optuna storage: a SQLAlchemy URL (sqlite:///..., postgresql://...) or else a journal file path."""
    optuna = require_optuna()
    if is_database(storage):
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as e:  # a bad URL, a missing driver, a server that is down: one line
            raise ConfigError(f"--storage {storage}: cannot open the database: {str(e).splitlines()[0]}") from None
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend as Backend  # optuna >= 4
    except ImportError:  # optuna 3
        from optuna.storages import JournalFileStorage as Backend  # type: ignore[no-redef]
    path = Path(storage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(Backend(str(path)))
    except OSError as e:
        raise ConfigError(f"--storage {storage}: cannot open the journal file: {e.strerror or e}") from None


@dataclass
class SweepSpec:
    """What every worker needs (picklable: it travels to worker processes)."""

    base: Config  # the fixed settings
    space: list[Param]
    study: str
    storage: str
    folder: Path  # best.json, trials.json, sweep.png and the best trial's run folder go here


def create_or_load(spec: SweepSpec, space_json: dict[str, Any]) -> tuple[Any, int]:
    """Create the study (storing its fixed settings and space), or load it and check they match; (study, trials so far)."""
    optuna = require_optuna()
    storage = open_storage(spec.storage)
    study = optuna.create_study(study_name=spec.study, storage=storage, direction="maximize", load_if_exists=True)
    fixed = spec.base.to_dict()
    stored = study.user_attrs
    if "fixed" not in stored:
        study.set_user_attr("fixed", fixed)
        study.set_user_attr("space", space_json)
    else:
        # out_dir only says where the results are written: it may change.
        diffs = [k for k in fixed if k != "out_dir" and stored["fixed"].get(k) != fixed[k]]
        if diffs:
            raise ConfigError(f"study {spec.study!r} in {spec.storage} was started with other fixed settings "
                              f"(different: {', '.join('--' + d.replace('_', '-') for d in diffs)}): give the same options "
                              "to continue it, or none at all to reuse the stored ones, or a new --study")
        if stored.get("space") != space_json:
            raise ConfigError(f"study {spec.study!r} in {spec.storage} was started with another search space: "
                              "give the same --space to continue it, or none, or a new --study")
    return study, len(study.trials)


def stored_settings(study_name: str, storage: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(fixed settings, space) stored by an existing study, or None if there is no such study."""
    optuna = require_optuna()
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        return None
    attrs = study.user_attrs
    if "fixed" not in attrs:
        return None
    return attrs["fixed"], attrs["space"]


def split_trials(n: int, workers: int) -> list[int]:
    """n trials over `workers` workers: exact, as even as can be."""
    return [n // workers + (i < n % workers) for i in range(workers)]


def trial_config(spec: SweepSpec, values: dict[str, Any]) -> Config:
    """The fixed settings with a trial's picks; trials save no run folder."""
    return Config.from_dict({**values, "save_run": False, "figures": True, "name": None, "out_dir": "runs"}, base=spec.base)


def run_worker(spec: SweepSpec, n_trials: int, worker: int = 0,
               on_trial: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run `n_trials` trials of the study into its storage (one process; several may run at once)."""
    import torch

    optuna = require_optuna()
    from mnistlab.runs.session import TrainSession, load_data
    from mnistlab.training.trainer import ImageTask, resolve_device

    storage = open_storage(spec.storage)
    probe = optuna.load_study(study_name=spec.study, storage=storage)
    # Seeded per worker and per start: parallel workers (and a resumed sweep) must not repeat each other's picks.
    seed = hash((spec.base.seed, worker, len(probe.trials))) % 2**31
    study = optuna.load_study(study_name=spec.study, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                              pruner=optuna.pruners.MedianPruner())
    cache: dict[tuple, Any] = {}

    class ValidationOnly(ImageTask):
        """The image task without its final test: a trial is scored on validation data only."""

        def test(self, model: torch.nn.Module) -> tuple[None, float]:
            return None, 0.0

    def trial_data(cfg: Config) -> Any:
        key = tuple(getattr(cfg, name) for name in DATA_FIELDS)
        if key not in cache:
            cache.clear()
            data = load_data(cfg, resolve_device(cfg.device))
            if data.val is None or not len(data.val):
                raise ConfigError("a sweep scores trials on validation data: give --val-size above 0")
            empty = type(data.test)(data.test.x[:0], data.test.y[:0])
            cache[key] = dataclasses.replace(data, test=empty, test_images=None)  # no test images in a trial
        return cache[key]

    def objective(trial: Any) -> float:
        values = {p.name: p.suggest(trial) for p in spec.space}
        try:
            cfg = trial_config(spec, values)
        except ConfigError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("config", cfg.to_dict())
        trial.set_user_attr("worker", worker)
        session = TrainSession.start(cfg, data=trial_data(cfg))
        trainer = session.trainer
        trainer.task = ValidationOnly(trainer)

        def on_epoch_end(record: dict) -> None:
            trial.report(record["val_acc"], record["epoch"])
            trial.set_user_attr("epochs_done", record["epoch"])
            if record["step"] < trainer.total_steps and trial.should_prune():
                raise optuna.TrialPruned(f"val acc {record['val_acc']:.4f} after epoch {record['epoch']}")

        try:
            history = session.fit(on_epoch_end=on_epoch_end)
        except TrainingDiverged as e:
            trial.set_user_attr("error", str(e))
            raise
        except KeyboardInterrupt:  # Optuna records the trial as failed: say why, so that it is not counted as run
            trial.set_user_attr("error", INTERRUPTED)
            raise
        trial.set_user_attr("train_seconds", history.train_seconds)
        return float(history.epochs[-1]["val_acc"])

    def callback(study: Any, frozen: Any) -> None:
        if on_trial:
            on_trial(trial_row(frozen))

    study.optimize(objective, n_trials=n_trials, catch=(TrainingDiverged, ConfigError), callbacks=[callback])


def trial_row(trial: Any) -> dict[str, Any]:
    """A trial as a plain dict: number, state, val_acc (the last reported for a pruned one), params, error."""
    value = trial.value if trial.values else None
    if value is None and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    params = {k: (tuple(int(x) for x in v.split(",")) if isinstance(v, str) and re.fullmatch(r"\d+(,\d+)*", v) else v)
              for k, v in trial.params.items()}
    return {"number": trial.number, "state": trial.state.name, "val_acc": value, "params": params,
            "error": trial.user_attrs.get("error"), "worker": trial.user_attrs.get("worker"),
            "train_seconds": trial.user_attrs.get("train_seconds")}


def load_trials(spec: SweepSpec) -> tuple[Any, list[dict[str, Any]]]:
    optuna = require_optuna()
    study = optuna.load_study(study_name=spec.study, storage=open_storage(spec.storage))
    return study, [trial_row(t) for t in study.trials]


def best_config(study: Any, base: Config) -> tuple[int, float, Config]:
    """(trial number, val acc, config) of the best completed trial; the config saves a run as the fixed settings say."""
    optuna = require_optuna()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise MnistlabError(f"study {study.study_name!r} has no completed trial yet: no best config")
    best = max(done, key=lambda t: (t.value, -t.number))
    cfg = Config.from_dict({**best.user_attrs["config"], "save_run": base.save_run, "out_dir": base.out_dir,
                            "figures": base.figures, "name": None})
    return best.number, float(best.value), cfg


def write_results(spec: SweepSpec, rows: list[dict[str, Any]], best: tuple[int, float, Config] | None) -> dict[str, Path]:
    """trials.json, sweep.png (accuracy per trial and per parameter) and best.json, atomically, in the sweep folder."""
    from mnistlab.fileio import atomic_write_json
    from mnistlab.reporting.plots import plot_sweep

    spec.folder.mkdir(parents=True, exist_ok=True)
    paths = {"trials": spec.folder / "trials.json", "figure": spec.folder / "sweep.png"}
    atomic_write_json(paths["trials"], [{**r, "params": {k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in r["params"].items()}} for r in rows])
    logs = {p.name for p in spec.space if p.log}
    plot_sweep(rows, [p.name for p in spec.space], paths["figure"], log_params=logs, title=f"sweep {spec.study}")
    if best is not None:
        paths["best"] = spec.folder / "best.json"
        best[2].save(paths["best"])
    return paths


def retrain(spec: SweepSpec, number: int, cfg: Config) -> tuple[Any, Any]:
    """Train the best config again as a normal run in the sweep folder and test it once: (session, history).

    A run folder kept from an earlier retrain of the same trial is not trained (or tested) again:
    (None, its records) then.
    """
    from mnistlab.runs.rundir import RunDir
    from mnistlab.runs.session import TrainSession

    name = f"best-trial-{number}"
    folder = spec.folder / name
    if cfg.save_run and (folder / "evaluation.json").exists():
        return None, RunDir(folder).records()
    run_cfg = Config.from_dict({"out_dir": str(spec.folder), "name": name} if cfg.save_run else {}, base=cfg)
    session = TrainSession.start(run_cfg)
    return session, session.fit()
