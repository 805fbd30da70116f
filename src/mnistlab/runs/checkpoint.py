"""Checkpoints: one safetensors file per checkpoint, never a pickle; one reader and one writer for every kind.

Three kinds share the format. An image model (`mnistlab train`) holds its weights under `model.*`,
and for a resumable checkpoint the optimiser's tensors under `optim.*` and the RNG states under
`rng.*`; a character language model (`mnistlab lm train`) holds its weights; a NumPy model
(`--engine numpy`) holds its arrays. The JSON metadata (safetensors' string header, key "mnistlab")
names the kind (`format`) and holds the config and whatever else rebuilds the exact model.

`read_checkpoint` is the only reader: safetensors parses the file first (its header length may start
with any byte, 0x80 included), and only when that fails is the file looked at as a pickle or a
torch.save zip, to refuse it by name (nothing is ever unpickled). Tensors with NaN or infinite values
are refused on load. `write_checkpoint` is the only writer, and writes the whole file atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mnistlab.config import Config
from mnistlab.errors import CheckpointError, ConfigError
from mnistlab.fileio import atomic_write_bytes

FORMAT = "mnistlab-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"

# kind -> the `format` string in its metadata, the newest format version this code reads, and the file
# names a run folder of that kind holds (first found is loaded).
KINDS = {
    "image": (FORMAT, FORMAT_VERSION, ("last" + SUFFIX, "best" + SUFFIX)),  # last: the model `train` scored
    "lm": ("mnistlab-lm", 1, ("lm" + SUFFIX,)),
    "numpy": ("mnistlab-numpy", 1, ("weights" + SUFFIX,)),
}
_KIND_OF_FORMAT = {fmt: kind for kind, (fmt, _, _) in KINDS.items()}
# What to tell someone who hands one kind to a command for another.
_KIND_NAMES = {
    "image": "an image-model checkpoint (use `mnistlab predict` or `mnistlab evaluate`)",
    "lm": "a character language-model checkpoint (use `mnistlab lm sample`)",
    "numpy": "a NumPy model (--engine numpy; its test accuracy is in its run's metrics.jsonl)",
}
_WANTED = {"image": "an image-model checkpoint", "lm": "a language-model checkpoint", "numpy": "a NumPy model"}
# A safetensors file without our metadata, by the kind that was asked for.
_NOT_OURS = {
    None: "not an mnistlab checkpoint (no mnistlab metadata)",
    "image": "not an mnistlab checkpoint (no mnistlab metadata)",
    "lm": "not an mnistlab language-model checkpoint (train one with `mnistlab lm train`)",
    "numpy": "not a NumPy mnistlab model (no mnistlab metadata)",
}


def _version() -> str:
    from mnistlab import __version__

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


def write_checkpoint(path: str | os.PathLike, kind: str, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """The one writer: torch tensors or NumPy arrays plus JSON `meta` as one safetensors file, atomically.

    `meta` gains the kind's `format`, `format_version` and the package `version` in front.
    """
    fmt, version, _ = KINDS[kind]
    meta = {"format": fmt, "format_version": version, "version": _version(), **meta}
    header = {"mnistlab": json.dumps(meta)}
    if all(isinstance(v, np.ndarray) for v in tensors.values()) and tensors:
        from safetensors.numpy import save

        data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=header)
    else:
        from safetensors.torch import save

        # clone(): safetensors refuses tensors that share memory (tied or viewed parameters).
        data = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, metadata=header)
    atomic_write_bytes(path, data)
    return Path(path)


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
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an image model's weights (+ optimiser and RNG state when given) and metadata atomically to `path`.

    `extra` is JSON-ready metadata for the caller (the estimator keeps its original labels there).
    """
    model = getattr(model, "_orig_mod", model)  # save the uncompiled module's names
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "in_shape": list(in_shape),
        "mean": list(norm[0]),
        "std": list(norm[1]),
        "train_state": train_state,
    }
    if extra:
        meta["extra"] = extra
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value
    return write_checkpoint(path, "image", tensors, meta)


@dataclass
class Checkpoint:
    """A loaded checkpoint of any kind: its metadata and tensors (on the CPU), nothing executed.

    `tensors` are torch tensors for the "image" and "lm" kinds and NumPy arrays for "numpy". `cfg` is
    the validated run Config of the "image" and "numpy" kinds (an LM's config is `meta["config"]`,
    which `mnistlab.lessons.lm.checkpoint` validates). The properties below are the image kind's.
    """

    path: Path
    kind: str  # "image" | "lm" | "numpy"
    meta: dict[str, Any]
    tensors: dict[str, Any]
    cfg: Config | None = None

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
        from mnistlab.models import create_model, model_options

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


def resolve_checkpoint(path: str | os.PathLike, kind: str | None = "image") -> Path:
    """A run directory (-> the checkpoint file of `kind` it holds; None: of any kind) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        names = [n for k, (_, _, files) in KINDS.items() if kind in (None, k) for n in files]
        for name in names:
            if (p / name).is_file():
                return p / name
        for other, (_, _, files) in KINDS.items():  # a run folder of another kind: say which
            if any((p / name).is_file() for name in files):
                raise CheckpointError(f"{p}: this folder holds {_KIND_NAMES[other]}, not {_WANTED[kind]}")
        expected = " or ".join(reversed(names)) if kind == "image" else " or ".join(names)
        raise CheckpointError(f"{p}: no checkpoint in this folder (expected {expected})")
    if not p.exists():
        raise CheckpointError(f"{p}: no such run directory or checkpoint file")
    if not p.is_file():  # a FIFO or a device would block or stream forever
        raise CheckpointError(f"{p}: not a regular file")
    return p


def _looks_like_pickle(head: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number; torch.save writes a zip.
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:4] == b"PK\x03\x04"


def read_checkpoint(path: str | os.PathLike, kind: str | None = None) -> Checkpoint:
    """The one reader: any mnistlab checkpoint (file or run folder), checked, without executing anything.

    Args:
        kind: "image", "lm" or "numpy" to insist on one (a file of another kind is a CheckpointError
            that names what it is); None accepts any kind.
    """
    from safetensors import SafetensorError, safe_open

    p = resolve_checkpoint(path, kind)
    try:
        with p.open("rb") as f:  # OSError here is the one clear "cannot read" (permissions, ...)
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        with safe_open(p, framework="pt") as f:
            header = f.metadata() or {}
            # clone(): safe_open's CPU tensors map the file, so a later change to it would reach them.
            tensors = {name: f.get_tensor(name).clone() for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        # Only now look at what it is instead: a safetensors header length can start with any byte.
        if _looks_like_pickle(head):
            raise CheckpointError(
                f"{p}: this is a pickle or a torch.save zip, not an mnistlab checkpoint; "
                "mnistlab never unpickles files (they can run arbitrary code)"
            ) from None
        reason = "empty file" if not head else str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: not a valid safetensors checkpoint ({reason})") from None
    try:
        meta = json.loads(header.get("mnistlab", "null"))
    except (json.JSONDecodeError, TypeError):
        meta = None
    found = _KIND_OF_FORMAT.get(meta.get("format")) if isinstance(meta, dict) else None
    if found is None:
        raise CheckpointError(f"{p}: a safetensors file, but {_NOT_OURS[kind]}")
    if kind is not None and found != kind:
        raise CheckpointError(f"{p}: {_KIND_NAMES[found]}, not {_WANTED[kind]}")
    newest = KINDS[found][1]
    if not isinstance(meta.get("format_version", 1), int) or meta.get("format_version", 1) > newest:
        raise CheckpointError(f"{p}: written by a newer mnistlab (format {meta.get('format_version')}); upgrade to read it")
    for name, t in tensors.items():
        # A diverged run's weights would answer every input with NaN "probabilities": refuse them here.
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{p}: tensor {name} holds NaN or infinite values (did the training diverge?); "
                                  "refusing to load it")
    cfg = None
    if found in ("image", "numpy"):
        try:
            cfg = Config.from_dict(meta["config"])
            keys = ("class_names", "in_shape", "mean", "std") if found == "image" else ("class_names", "mean", "std")
            for key in keys:
                meta[key]  # noqa: B018  (presence check)
            stds = np.atleast_1d(np.asarray(meta["std"], dtype=np.float64))
            means = np.atleast_1d(np.asarray(meta["mean"], dtype=np.float64))
        except (ConfigError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{p}: its stored config is invalid: {e}") from None
        if not (np.isfinite(means).all() and np.isfinite(stds).all() and (stds > 0).all()):
            raise CheckpointError(f"{p}: its stored normalisation is unusable (mean {meta['mean']}, std {meta['std']})")
    if found == "numpy":
        tensors = {name: t.numpy() for name, t in tensors.items()}
    return Checkpoint(p, found, meta, tensors, cfg)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read an image-model checkpoint (file or run directory) without executing anything in it."""
    return read_checkpoint(path, "image")
