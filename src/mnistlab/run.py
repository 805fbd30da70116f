"""A run directory `runs/<name>/`: config.json, metrics.jsonl, checkpoints and figures.

Two runs given the same name never overwrite each other: creating a run whose folder already
exists is an error unless the caller resumes it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from .config import Config
from .errors import ConfigError
from .fileio import append_jsonl, atomic_write_text
from .train import Trainer, TrainState


def default_run_name(cfg: Config) -> str:
    """<model>-<dataset>-<YYYYmmdd-HHMMSS>, safe as a folder name."""
    dataset = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.dataset)
    return f"{cfg.model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _taken(path: Path) -> ConfigError:
    return ConfigError(f"run {path} already exists: pass --resume to continue it, or choose another --name")


@dataclass
class RunDir:
    """The folder of one run and the files in it."""

    path: Path

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
        """Refuse a --name whose folder exists: the cheap early check (create() checks again)."""
        if cfg.name is not None and (Path(cfg.out_dir) / cfg.name).exists():
            raise _taken(Path(cfg.out_dir) / cfg.name)

    @classmethod
    def create(cls, cfg: Config) -> "RunDir":
        """Make a new, empty run folder; refuse to reuse one that exists."""
        name = cfg.name or default_run_name(cfg)
        path = Path(cfg.out_dir) / name
        if path.exists():
            if cfg.name is None:  # two unnamed runs in the same second: add a counter
                i = 2
                while (Path(cfg.out_dir) / f"{name}-{i}").exists():
                    i += 1
                path = Path(cfg.out_dir) / f"{name}-{i}"
            else:
                raise _taken(path)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise _taken(path) from None
        except OSError as e:
            raise ConfigError(f"cannot create run folder {path}: {e.strerror or e}") from None
        run = cls(path)
        cfg.save(run.config_path)
        return run

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
        raise ConfigError(f"{run.path}: nothing to resume (no last{SUFFIX})")
    return Config.load(run.config_path)
