"""Checkpoints: one safetensors file per checkpoint, never a pickle.

The file holds the model weights under `model.*`, and for a resumable checkpoint the optimiser's
tensors under `optim.*` and the RNG states under `rng.*`. Its JSON metadata (safetensors' string
header) holds the config, the class names, the input shape, the training position and the package
version, so one file is enough to rebuild the exact model. The whole file is written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import Config
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes

FORMAT = "mnistlab-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


def _version() -> str:
    from . import __version__

    return __version__


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    # torch's optimiser state is {"state": {i: {name: tensor|number}}, "param_groups": [...]}: tensors
    # go into the safetensors body, everything else (plain numbers, lists) into the JSON metadata.
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("plain_state", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    cfg: Config,
    class_names: tuple[str, ...],
    in_shape: tuple[int, ...],
    norm: tuple[tuple[float, ...], tuple[float, ...]],
    train_state: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights (+ optimiser and RNG state when given) and metadata atomically to `path`."""
    from safetensors.torch import save

    model = getattr(model, "_orig_mod", model)  # save the uncompiled module's names
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": _version(),
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "in_shape": list(in_shape),
        "mean": list(norm[0]),
        "std": list(norm[1]),
        "train_state": train_state,
    }
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value.detach().cpu().contiguous()
    # clone(): safetensors refuses tensors that share memory (tied or viewed parameters).
    tensors = {k: v.clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata={"mnistlab": json.dumps(meta)}))
    return Path(path)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt config, metadata and tensors (on the CPU)."""

    path: Path
    cfg: Config
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["in_shape"])

    @property
    def norm(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.meta["mean"]), tuple(self.meta["std"])

    @property
    def train_state(self) -> dict | None:
        return self.meta.get("train_state")

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def optimizer_state(self) -> dict | None:
        return _unflatten_optimizer(self.tensors, self.meta["optimizer"]) if "optimizer" in self.meta else None

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {k[len("rng."):]: v for k, v in self.tensors.items() if k.startswith("rng.")}

    def build_model(self) -> nn.Module:
        """Rebuild the model from the stored config and load the weights; a mismatch is a CheckpointError."""
        from .models import create_model, model_options

        try:
            # Only the model's own options: a config saved before models declared them may hold knobs it never used.
            overrides = self.cfg.model_overrides(model_options(self.cfg.model))
            model = create_model(self.cfg.model, len(self.class_names), self.in_shape, **overrides)
        except (ConfigError, ValueError, TypeError) as e:
            raise CheckpointError(f"{self.path}: cannot rebuild the model from its config: {e}") from None
        state = self.model_state()
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            detail = "; ".join(
                part for part in (
                    f"missing {', '.join(missing[:3])}" if missing else "",
                    f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                    ", ".join(f"{k} is {tuple(state[k].shape)} but the config builds {tuple(expected[k].shape)}" for k in wrong[:2]),
                ) if part
            )
            raise CheckpointError(f"{self.path}: the weights do not match the model its config describes ({detail})")
        model.load_state_dict(state)
        model.eval()
        return model


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run directory (-> its last, else best checkpoint) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        for name in ("last", "best"):  # last: the model whose test score `train` printed
            candidate = p / f"{name}{SUFFIX}"
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{p}: no checkpoint in this folder (expected best{SUFFIX} or last{SUFFIX})")
    if not p.exists():
        raise CheckpointError(f"{p}: no such run directory or checkpoint file")
    return p


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint (file or run directory) without executing anything in it."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = resolve_checkpoint(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        # Only now look at what it is instead: a safetensors header length can start with any byte.
        if (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[:4] == b"PK\x03\x04":
            raise CheckpointError(
                f"{p}: this is a pickle or a torch.save zip, not an mnistlab checkpoint; "
                "mnistlab never unpickles files (they can run arbitrary code)"
            ) from None
        raise CheckpointError(f"{p}: not a valid safetensors checkpoint ({str(e).splitlines()[0][:120]})") from None
    try:
        meta = json.loads(header.get("__metadata__", {}).get("mnistlab", "null"))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: a safetensors file, but not an mnistlab checkpoint (no mnistlab metadata)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p}: written by a newer mnistlab (format {meta['format_version']}); upgrade to read it")
    try:
        cfg = Config.from_dict(meta["config"])
        for key in ("class_names", "in_shape", "mean", "std"):
            meta[key]  # noqa: B018  (presence check)
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{p}: its stored config is invalid: {e}") from None
    return Checkpoint(p, cfg, meta, tensors)
