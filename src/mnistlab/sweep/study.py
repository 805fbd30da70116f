"""A sweep: Optuna trials of `mnistlab train` settings, scored on VALIDATION accuracy, in one shared storage.

Each trial is one TrainSession with the fixed settings plus the trial's picks, trained without a run
folder (no checkpoints, metrics or figures: a sweep's trials live in the study) and on data whose
test split is empty, so nothing in a trial can read the test set. The validation accuracy after
every epoch is reported to Optuna, and the median pruner stops a trial below the median of the
trials before it at that epoch. A trial that diverges (TrainingDiverged) is recorded as failed and
the sweep goes on. Workers are processes that share the storage: a journal file by default (safe
for several processes on one machine), or any SQLAlchemy URL (postgresql://... for several
machines; plain postgresql:// means the psycopg driver). `--trials N` runs N more trials, as
Optuna's `study.optimize(n_trials=N)` does: this command's trials carry its run id, and every
worker keeps taking trials until the run holds N, claiming each one under a lock (a PostgreSQL
advisory lock, or an flock on the journal or SQLite file), so the count is exact and not one more.

A worker that dies (SIGKILL, a lost machine) leaves its trial RUNNING. On a database the trials
beat (Optuna's heartbeat, every --heartbeat seconds): a trial silent for --grace seconds is
failed by any other worker and re-queued once with the same parameters (Optuna's retry callback),
and the run still ends with N trials. A journal file has no heartbeat in Optuna, so each trial
records its process (host, pid namespace, pid, start time) and a worker on the same host fails
and re-queues a trial whose process is gone, at once.

At the end, `best_config` is the best trial's full Config, written as best.json; `retrain` trains it
again as a normal run (`mnistlab train --config best.json` does the same) and evaluates it once on
the test set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import time
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


def shown(storage: str) -> str:
    """The storage as printed: a URL's password as ***."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):.*@", r"\1:***@", storage)


def database_url(storage: str) -> str:
    """The SQLAlchemy URL: postgresql:// (and postgres://) mean the psycopg driver, which the sweep extra installs."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", storage)


def connect_reason(e: BaseException) -> str:
    """The driver's reason a connection failed, in one line: `password authentication failed for user "x"`."""
    text = str(getattr(e, "orig", None) or e).strip()
    text = re.sub(r"^connection failed:\s*", "", text.splitlines()[0] if text else type(e).__name__)
    text = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed:\s*', "", text)
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
    return text.rstrip(".") or type(e).__name__


# Seconds: a trial beats every HEARTBEAT s, and is failed by others after GRACE s of silence.
HEARTBEAT, GRACE = 10, 30  # `mnistlab sweep --help` states them too (cli/sweep.py; a test holds them equal)
_STORAGES: dict[tuple, Any] = {}  # one storage (one connection pool) per URL and setting in a process


def open_storage(storage: str, heartbeat: int = HEARTBEAT, grace: int = GRACE) -> Any:
    """An Optuna storage: a SQLAlchemy URL (sqlite:///..., postgresql://...) or else a journal file path.

    A database storage has Optuna's heartbeat on (trials beat every `heartbeat` s; a trial silent
    for `grace` s is failed by the next worker that looks, and re-queued once with its parameters).
    A bad URL is a ConfigError; a server that cannot be reached, or a missing driver, a MnistlabError.
    """
    key = (storage, heartbeat, grace)
    if key not in _STORAGES:
        _STORAGES[key] = _open_database(storage, heartbeat, grace) if is_database(storage) else _open_journal(storage)
    return _STORAGES[key]


def _retry_callback(optuna: Any) -> Any:
    """Optuna's callback that re-queues a stale trial (WAITING, the same parameters), once."""
    import warnings

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=1)


def _open_database(storage: str, heartbeat: int, grace: int) -> Any:
    import inspect
    import warnings

    optuna = require_optuna()
    import sqlalchemy.exc

    url, where = database_url(storage), f"--storage {shown(storage)}"
    if url.startswith("postgresql+psycopg://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MnistlabError(f"{where}: PostgreSQL needs the psycopg driver: pip install 'mnistlab[sweep]' "
                                "(or: pip install 'psycopg[binary]')") from None
    try:
        dialect = sqlalchemy.engine.make_url(url).get_backend_name()
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise ConfigError(f"{where}: not a database URL ({e}); e.g. postgresql://USER:PASS@HOST[:PORT]/DB "
                          "or sqlite:///FILE.db") from None
    kwargs = {"connect_args": {"connect_timeout": 10}} if dialect == "postgresql" else {}
    stale = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
             in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback")
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                                      grace_period=grace, **{stale: _retry_callback(optuna)})
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # Workers on several machines started on a new database at once: another one is creating
                # Optuna's tables right now (a duplicate key, a table that already exists); open it again.
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ImportError as e:  # another dialect's driver
        raise MnistlabError(f"{where}: the database driver is not installed ({e})") from None
    except (sqlalchemy.exc.NoSuchModuleError, sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise ConfigError(f"{where}: not a database URL SQLAlchemy knows ({str(e).splitlines()[0]}); e.g. "
                          "postgresql://USER:PASS@HOST[:PORT]/DB or sqlite:///FILE.db") from None
    except sqlalchemy.exc.OperationalError as e:  # a wrong password, an unknown database, a server down or unreachable
        raise MnistlabError(f"{where}: cannot connect: {connect_reason(e)}") from None
    except sqlalchemy.exc.SQLAlchemyError as e:  # connected, but the database refused Optuna's tables
        raise MnistlabError(f"{where}: cannot open the study tables: {connect_reason(e)}") from None


def _hold_flock(path: str) -> int:
    """An open descriptor of `path` (created if need be) holding its exclusive flock; closing it lets go."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:  # interrupted while waiting: no descriptor left open
        os.close(fd)
        raise
    return fd


class JournalWriteLock:
    """Optuna's journal-file write lock as an flock on FILE.flock, which the kernel drops when its process dies.

    Optuna's default (a FILE.lock symlink) stays behind when a worker is SIGKILLed while appending
    (a trial's report each epoch makes that likely): every other worker, and the next sweep, then
    waits its 30 s grace period before breaking it. Not the journal itself: the claim lock flocks
    that one, and a second descriptor in the same process would wait on it.
    """

    def __init__(self, journal: str) -> None:
        self._path = journal + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = _hold_flock(self._path)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops its flock


def _open_journal(storage: str) -> Any:
    optuna = require_optuna()
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend as Backend  # optuna >= 4
    except ImportError:  # optuna 3
        from optuna.storages import JournalFileStorage as Backend  # type: ignore[no-redef]
    path = Path(storage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(Backend(str(path), lock_obj=JournalWriteLock(str(path))))
    except OSError as e:
        raise ConfigError(f"--storage {storage}: cannot open the journal file: {e.strerror or e}") from None


class ClaimLock:
    """Held while a worker counts its run's trials and starts one: two workers never both start the N-th.

    PostgreSQL: a session advisory lock keyed by the study's name (released by the server if the
    worker dies). A journal file or an SQLite file: an flock (on the journal itself; on a
    FILE.mnistlab-lock beside an SQLite file, whose own POSIX locks a second descriptor would drop).
    Other databases: no lock (two workers may then both start the last trial).
    """

    def __init__(self, storage: Any, spec_storage: str, study: str) -> None:
        self._conn: Any = None
        self._fd: int | None = None
        self._key = int.from_bytes(hashlib.sha1(f"mnistlab-sweep:{study}".encode()).digest()[:8], "big", signed=True)
        self._engine, self._path = None, None
        if is_database(spec_storage):
            engine = storage.engine
            if engine.dialect.name == "postgresql":
                self._engine = engine
            elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                self._path = engine.url.database + ".mnistlab-lock"
        else:
            self._path = spec_storage
        self.held = False

    def acquire(self) -> None:
        import sqlalchemy

        if self._engine is not None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        elif self._path is not None:
            self._fd = _hold_flock(self._path)
        self.held = True

    def release(self) -> None:
        """Let the next worker claim (idempotent)."""
        if not self.held:
            return
        self.held = False
        if self._conn is not None:
            import sqlalchemy

            conn, self._conn = self._conn, None
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            finally:
                conn.close()
        elif self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops its flock


RUN_ATTR = "sweep_run"  # user attr: the id of the `mnistlab sweep` command whose --trials count a trial is in


def process_id() -> str:
    """This process as host:pid-namespace:pid:start-time (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{_start_time(os.getpid()) or ''}"


def _pid_namespace() -> str:
    """The pid namespace's inode ('' without /proc): containers sharing a host name see other pids."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_gone(process: str) -> bool:
    """Whether a process_id() of this host names a process that has ended (or is a zombie).

    False where this process cannot tell: another host, or another pid namespace (container).
    """
    parts = process.split(":")
    if len(parts) < 4:
        return False
    host, namespace, pid, start = ":".join(parts[:-3]), parts[-3], parts[-2], parts[-1]
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] in ("Z", "X") or (bool(start) and fields[19] != start)


def has_heartbeat(storage: Any) -> bool:
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


def fail_dead_trials(study: Any, storage: Any) -> list[int]:
    """Fail the RUNNING trials whose worker is gone, and re-queue each once (the numbers failed).

    A database: Optuna's heartbeat check (a trial silent for the grace period). A journal file
    (no heartbeat): a trial whose recorded process on this host has ended.
    """
    import warnings

    optuna = require_optuna()
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if has_heartbeat(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        return [t.number for t in running if now.get(t.number) == optuna.trial.TrialState.FAIL]
    failed = []
    for t in running:
        process = t.user_attrs.get("process")
        if not process or not process_gone(process):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        _retry_callback(optuna)(study, storage.get_trial(t._trial_id))
    return failed


@dataclass
class RunCount:
    """A sweep command's trials in the study: `slots` count towards its --trials (a retried trial counts once)."""

    slots: int
    waiting: int  # re-queued trials of this run not started yet
    running: int
    retried: int  # trials of this run failed for a dead worker and re-queued


def run_count(trials: list[Any], run_id: str) -> RunCount:
    superseded = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    ours = [t for t in trials if t.user_attrs.get(RUN_ATTR) == run_id]
    live = [t for t in ours if t.number not in superseded]
    return RunCount(slots=len(live), waiting=sum(t.state.name == "WAITING" for t in live),
                    running=sum(t.state.name == "RUNNING" for t in live), retried=len(ours) - len(live))


@dataclass
class SweepSpec:
    """What every worker needs (picklable: it travels to worker processes)."""

    base: Config  # the fixed settings
    space: list[Param]
    study: str
    storage: str
    folder: Path  # best.json, trials.json, sweep.png and the best trial's run folder go here
    trials: int = 1  # this command's --trials: its workers stop when its run holds that many
    run_id: str = ""  # tags this command's trials (RUN_ATTR)
    heartbeat: int = HEARTBEAT  # database storages: seconds between a trial's heartbeats
    grace: int = GRACE  # database storages: seconds of silence after which a trial is failed and re-queued

    def open(self) -> Any:
        return open_storage(self.storage, self.heartbeat, self.grace)


def create_or_load(spec: SweepSpec, space_json: dict[str, Any]) -> tuple[Any, int]:
    """Create the study (storing its fixed settings and space), or load it and check they match; (study, trials so far)."""
    optuna = require_optuna()
    storage = spec.open()
    # Under the claim lock: two commands started at once on one study (two machines) would otherwise
    # both find it new, or one would read it between the other's two writes and see another space.
    lock = ClaimLock(storage, spec.storage, spec.study)
    lock.acquire()
    try:
        study = optuna.create_study(study_name=spec.study, storage=storage, direction="maximize", load_if_exists=True)
        fixed = spec.base.to_dict()
        stored = study.user_attrs
        if "fixed" not in stored:
            # The space first: a reader without the lock (stored_settings) takes "fixed" to mean both are there.
            study.set_user_attr("space", space_json)
            study.set_user_attr("fixed", fixed)
            return study, len(study.trials)
    finally:
        lock.release()
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


def trial_config(spec: SweepSpec, values: dict[str, Any]) -> Config:
    """The fixed settings with a trial's picks; trials save no run folder."""
    return Config.from_dict({**values, "save_run": False, "figures": True, "name": None, "out_dir": "runs"}, base=spec.base)


class _Stop(Exception):
    """Carries an error that ends the sweep through Optuna (which re-raises what `catch` does not name)."""

    def __init__(self, error: MnistlabError) -> None:
        super().__init__(str(error))
        self.error = error


def run_worker(spec: SweepSpec, worker: int = 0, on_trial: Callable[[dict[str, Any]], None] | None = None,
               poll: float = 0.5) -> None:
    """Take trials of the study until this command's run holds `spec.trials` (one process; several may run at once).

    Each round, under the claim lock: fail (and re-queue once) the trials of dead workers, count the
    run's trials, and start one if the run is short of its count or one of its trials was re-queued;
    the lock is let go as soon as the trial is tagged. A worker with nothing to start waits (polling
    every `poll` s) while a trial of its run still runs elsewhere: that worker may die, and its trial
    come back to be run here. A trial failed by another worker while it still ran here (a worker that
    stalled past the grace period) is left as failed, and the worker goes on.
    """
    import torch

    optuna = require_optuna()
    from mnistlab.runs.session import TrainSession, load_data
    from mnistlab.training.trainer import ImageTask, resolve_device

    storage = spec.open()
    probe = optuna.load_study(study_name=spec.study, storage=storage)
    # Seeded per worker and per start: parallel workers (and a resumed sweep) must not repeat each other's picks.
    seed = hash((spec.base.seed, worker, len(probe.trials))) % 2**31
    study = optuna.load_study(study_name=spec.study, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                              pruner=optuna.pruners.MedianPruner())
    lock = ClaimLock(storage, spec.storage, spec.study)
    cache: dict[tuple, Any] = {}
    me = process_id()
    current: list[int] = []  # the trial id this worker runs now

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
        current[:] = [trial._trial_id]
        if RUN_ATTR not in trial.user_attrs:  # a new trial (or one enqueued by hand): it counts in this run
            trial.set_user_attr(RUN_ATTR, spec.run_id)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("process", me)
        lock.release()  # counted and tagged: the next worker may claim
        values = {p.name: p.suggest(trial) for p in spec.space}  # a re-queued trial gets its own values back
        try:
            cfg = trial_config(spec, values)
        except ConfigError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("config", cfg.to_dict())
        try:
            data = trial_data(cfg)
        except MnistlabError as e:  # the fixed settings' data: every trial would fail alike, so the sweep stops
            trial.set_user_attr("error", str(e))
            raise _Stop(e) from None
        session = TrainSession.start(cfg, data=data)
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

    while True:
        lock.acquire()
        try:
            fail_dead_trials(study, storage)
            count = run_count(study.get_trials(deepcopy=False), spec.run_id)
            if count.slots < spec.trials or count.waiting:
                current.clear()
                try:
                    study.optimize(objective, n_trials=1, catch=(TrainingDiverged, ConfigError), callbacks=[callback])
                except _Stop as stop:
                    raise stop.error from None
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                    # Optuna could not record the trial: another worker failed it as stale while it ran here.
                    if not current or not storage.get_trial(current[0]).state.is_finished():
                        raise
                    if on_trial:
                        on_trial({**trial_row(storage.get_trial(current[0])),
                                  "error": f"failed by another worker: no heartbeat here for {spec.grace} s"})
                continue
            if not count.running:
                return
        finally:
            lock.release()
        time.sleep(poll)  # a trial of this run still runs elsewhere: its worker may yet die


def trial_row(trial: Any, retried_as: int | None = None) -> dict[str, Any]:
    """A trial as a plain dict: number, state, val_acc (the last reported for a pruned one), params, error.

    `retried_as`: the number of the trial that re-runs this one (its worker died).
    """
    value = trial.value if trial.values else None
    if value is None and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    params = {k: (tuple(int(x) for x in v.split(",")) if isinstance(v, str) and re.fullmatch(r"\d+(,\d+)*", v) else v)
              for k, v in trial.params.items()}
    error = trial.user_attrs.get("error")
    if retried_as is not None:
        error = f"its worker died or stalled; retried as trial {retried_as}"
    elif error is None and trial.system_attrs.get("failed_trial") is not None:
        error = f"retry of trial {trial.system_attrs['failed_trial']}" + (
            "; its worker died or stalled too" if trial.state.name == "FAIL" else "")
    return {"number": trial.number, "state": trial.state.name, "val_acc": value, "params": params,
            "error": error, "worker": trial.user_attrs.get("worker"), "run": trial.user_attrs.get(RUN_ATTR),
            "retried": retried_as is not None,
            "train_seconds": trial.user_attrs.get("train_seconds")}


def load_trials(spec: SweepSpec) -> tuple[Any, list[dict[str, Any]]]:
    optuna = require_optuna()
    study = optuna.load_study(study_name=spec.study, storage=spec.open())
    trials = study.trials
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    return study, [trial_row(t, retried_as.get(t.number)) for t in trials]


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
