"""Language-model checkpoints: weights in safetensors, config + vocabulary + metrics as JSON metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..fileio import atomic_write_bytes
from .data import Vocab
from .model import CharLM
from .train import LMConfig, build_lm

FORMAT = "mnistlab-lm"
FORMAT_VERSION = 1
FILENAME = "lm.safetensors"


def save_lm(path: str | os.PathLike, model: CharLM, cfg: LMConfig, vocab: Vocab, fallback: str,
            metrics: dict[str, Any] | None = None) -> Path:
    """Write the model atomically; `fallback` stands in for unknown characters at sample time."""
    from safetensors.torch import save

    from .. import __version__

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": __version__, "config": cfg.to_dict(),
            "vocab": list(vocab.chars), "fallback": fallback, "metrics": metrics or {}}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"mnistlab": json.dumps(meta)}))
    return Path(path)


def load_lm(path: str | os.PathLike) -> tuple[CharLM, Vocab, dict[str, Any]]:
    """(model in eval mode, vocabulary, metadata) from a checkpoint file or the folder holding lm.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read: {e.strerror or e}") from None
    if data[:1] == b"\x80" or data[:2] == b"PK":
        raise CheckpointError(f"{p}: a pickle or torch.save zip, not an mnistlab checkpoint; mnistlab never unpickles files")
    try:
        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        meta = json.loads(header.get("__metadata__", {}).get("mnistlab", "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: not a valid safetensors checkpoint ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not an mnistlab language-model checkpoint (train one with `mnistlab lm train`)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p}: written by a newer mnistlab (format {meta['format_version']})")
    try:
        cfg = LMConfig(**meta["config"])
        vocab = Vocab(tuple(meta["vocab"]))
        model = build_lm(cfg, len(vocab))
        model.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{p}: its weights or config are inconsistent ({str(e).splitlines()[0][:160]})") from None
    return model.eval(), vocab, meta
