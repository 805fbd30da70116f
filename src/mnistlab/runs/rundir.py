"""A run directory `runs/<name>/`: config.json, metrics.jsonl, checkpoints and figures.

Two runs given the same name never overwrite each other: creating a run whose folder already
exists is an error unless the caller resumes it, or the folder is a failed start (it holds only
what a run writes before its first checkpoint: config.json, metrics.jsonl) that no live process
is writing. A failed start is reused by the same name. A run that fails before its first
checkpoint and before logging anything removes its own folder; one that logged steps keeps them
(metrics.jsonl shows what went wrong) until the same name starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mnistlab.runs.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.fileio import append_jsonl, atomic_write_text
from mnistlab.training.trainer import Trainer, TrainState


def default_run_name(cfg: Config) -> str:
    """<model>-<dataset>-<YYYYmmdd-HHMMSS>, safe as a folder name."""
    dataset = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.dataset)
    return f"{cfg.model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _taken(path: Path) -> ConfigError:
    return ConfigError(f"run {path} already exists: pass --resume to continue it, or choose another --name")


# What a run writes before its first checkpoint. A folder holding nothing else is a failed start:
# reusing or removing it loses no checkpoint and nothing that mnistlab did not write.
EARLY_FILES = frozenset({"config.json", "metrics.jsonl"})
# `train --tensorboard`'s log in the run folder: early too while it holds only event files.
TB_FOLDER = "tb"


def _event_files(folder: Path) -> list[Path] | None:
    """The plain TensorBoard event files that are all `folder` holds; None if it holds anything else."""
    from mnistlab.reporting.tensorboard import EVENT_PREFIX

    if folder.is_symlink() or not folder.is_dir():
        return None
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    ok = all(e.name.startswith(EVENT_PREFIX) and e.is_file() and not e.is_symlink() for e in entries)
    return entries if ok else None


def is_failed_start(path: Path, early_files: frozenset[str] = EARLY_FILES) -> bool:
    """True for an existing folder whose entries are only plain files named in `early_files` (or none),
    and a tb/ folder of TensorBoard event files."""
    try:
        entries = list(path.iterdir())
    except OSError:  # absent, not a folder, unreadable: not ours to reuse
        return False
    return all((e.name in early_files and e.is_file() and not e.is_symlink())
               or (e.name == TB_FOLDER and _event_files(e) is not None) for e in entries)


def lock_folder(path: Path) -> int | None:
    """Take this process's advisory lock on a folder; return its descriptor (None where locks are unsupported).

    The lock tells a failed start from a live run that has not reached its first checkpoint yet:
    the kernel drops it when the process ends, even on kill -9, so a stale folder is never locked.
    Raises ConfigError when another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a failed start is still reusable
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{path} is in use: another mnistlab process is training in it right now") from None
    except OSError:  # a file system without locks (some network mounts): proceed without one
        os.close(fd)
        return None
    return fd


def check_reusable(path: Path, early_files: frozenset[str] = EARLY_FILES) -> None:
    """Raise ConfigError unless `path` is a failed start that no live process holds."""
    if not is_failed_start(path, early_files):
        raise _taken(path)
    fd = lock_folder(path)  # only a probe: released at once
    if fd is not None:
        os.close(fd)


def remove_failed_start(path: Path, remove_folder: bool, keep_records: bool = False,
                        early_files: frozenset[str] = EARLY_FILES) -> bool:
    """Delete the early files of a failed start (and the folder itself if `remove_folder`); True if deleted.

    With `keep_records`, a failed start whose metrics.jsonl holds records is kept as it is.
    """
    if not is_failed_start(path, early_files):
        return False  # a checkpoint or a foreign file appeared: keep everything
    records = path / "metrics.jsonl"
    if keep_records and records.exists() and records.stat().st_size > 0:
        return False
    for name in early_files:
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    for event_file in _event_files(path / TB_FOLDER) or []:  # the log of the steps those records were
        with contextlib.suppress(FileNotFoundError):
            event_file.unlink()
    with contextlib.suppress(OSError):
        (path / TB_FOLDER).rmdir()
    if remove_folder:
        with contextlib.suppress(OSError):
            path.rmdir()
    return True


@dataclass
class RunDir:
    """The folder of one run and the files in it."""

    path: Path
    # Set by create(): this process started the run (made the folder, or took over a failed start) and
    # holds the folder lock until release(); the finalizer closes the lock's descriptor exactly once.
    _started: bool = field(default=False, init=False, repr=False, compare=False)
    _made_folder: bool = field(default=False, init=False, repr=False, compare=False)
    _unlock: weakref.finalize | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def checkpoint_path(self, kind: str) -> Path:
        return self.path / f"{kind}{SUFFIX}"

    @staticmethod
    def check_free(cfg: Config) -> None:
        """Refuse a --name whose folder holds a run: the cheap early check (create() checks again).

        A failed start (no checkpoint, only config.json and metrics.jsonl, no live process) is free.
        """
        if cfg.name is not None and (Path(cfg.out_dir) / cfg.name).exists():
            check_reusable(Path(cfg.out_dir) / cfg.name)

    @classmethod
    def create(cls, cfg: Config) -> "RunDir":
        """Make a new run folder, or take over a failed start of the same --name; refuse any other that exists."""
        name = cfg.name or default_run_name(cfg)
        path = Path(cfg.out_dir) / name
        reuse = False
        if path.exists():
            if cfg.name is None:  # two unnamed runs in the same second: add a counter
                i = 2
                while (Path(cfg.out_dir) / f"{name}-{i}").exists():
                    i += 1
                path = Path(cfg.out_dir) / f"{name}-{i}"
            else:
                reuse = is_failed_start(path)
                if not reuse:
                    raise _taken(path)
        try:
            path.mkdir(parents=True, exist_ok=reuse)
        except FileExistsError:
            raise _taken(path) from None
        except OSError as e:
            raise ConfigError(f"cannot create run folder {path}: {e.strerror or e}") from None
        run = cls(path)
        run._started, run._made_folder = True, not reuse
        fd = lock_folder(path)
        if fd is not None:
            run._unlock = weakref.finalize(run, os.close, fd)  # also when a session is dropped without fit()
        if reuse:
            # Checked again under the lock: a process that held the folder may have written a checkpoint.
            if not remove_failed_start(path, remove_folder=False):
                run.release()
                raise _taken(path)
        cfg.save(run.config_path)
        return run

    def release(self) -> None:
        """Drop the folder lock taken by create() (training here is over)."""
        if self._unlock is not None:
            self._unlock()  # closes the descriptor, which drops the lock; a no-op the second time

    def remove_if_failed_start(self) -> bool:
        """After a run created here failed before its first checkpoint and first record: remove it; True if removed.

        Only config.json (and an empty metrics.jsonl) are deleted, and the folder only if create() made
        it; a folder holding records, a checkpoint or any other file is kept as it is (and a folder
        holding only config.json and records is reused by the same --name).
        """
        if not self._started:
            return False  # not started by this process (a resumed run): never ours to remove
        try:
            return remove_failed_start(self.path, remove_folder=self._made_folder, keep_records=True)
        finally:
            self.release()

    def log(self, record: dict) -> None:
        append_jsonl(self.metrics_path, record)

    def records(self) -> list[dict]:
        """The metrics.jsonl records (a half-written last line, from a crash, is skipped)."""
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_records(self, step: int) -> None:
        """Keep only the records up to `step` (a resumed run rewrites what came after)."""
        kept = [r for r in self.records() if r.get("kind") in ("step", "epoch") and r.get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))


def rng_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every random state a resumed run needs to continue bit for bit."""
    state = {"torch": torch.get_rng_state(), "augment": trainer.aug_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_trainer(run: RunDir, kind: str, trainer: Trainer, state: TrainState) -> None:
    """Write `last` (resumable: optimiser + RNG) or `best` (weights only) atomically."""
    data = trainer.data
    resumable = kind == "last"
    save_checkpoint(
        run.checkpoint_path(kind), trainer.model, trainer.cfg, data.class_names, data.in_shape, (data.mean, data.std),
        train_state=state.to_dict(),
        optimizer=trainer.optimizer if resumable else None,
        rng=rng_state(trainer) if resumable else None,
    )


def restore_trainer(run: RunDir, trainer: Trainer) -> TrainState:
    """Load `last` into a freshly built trainer: weights, optimiser, RNG states and position."""
    ckpt = load_checkpoint(run.checkpoint_path("last"))
    trainer.model.load_state_dict(ckpt.model_state())
    opt_state = ckpt.optimizer_state()
    if opt_state is not None:
        trainer.optimizer.load_state_dict(opt_state)
    rng = ckpt.rng_state()
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "augment" in rng:
        trainer.aug_generator.set_state(rng["augment"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    trainer.state = TrainState(**ckpt.train_state)
    return trainer.state


def check_resumable(run: RunDir) -> Config:
    """The config a run was started with; errors if it cannot be resumed."""
    if not run.config_path.exists():
        raise ConfigError(f"{run.path}: not a run directory (no config.json)")
    if not run.checkpoint_path("last").exists():
        if is_failed_start(run.path):
            raise ConfigError(f"{run.path}: nothing to resume (no last{SUFFIX}): the run stopped before its first "
                              "checkpoint; start it again with the same --name")
        raise ConfigError(f"{run.path}: nothing to resume (no last{SUFFIX})")
    return Config.load(run.config_path)
