"""Language-model checkpoints: weights in safetensors, config + vocabulary + metrics as JSON metadata.

A thin user of the one checkpoint reader and writer in `mnistlab.runs.checkpoint` (kind "lm").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mnistlab.runs.checkpoint import KINDS, read_checkpoint, write_checkpoint
from mnistlab.errors import CheckpointError
from mnistlab.lessons.lm.data import Vocab
from mnistlab.lessons.lm.model import CharLM
from mnistlab.lessons.lm.train import LMConfig, build_lm

FORMAT, FORMAT_VERSION, (FILENAME,) = KINDS["lm"]


def save_lm(path: str | os.PathLike, model: CharLM, cfg: LMConfig, vocab: Vocab, fallback: str,
            metrics: dict[str, Any] | None = None) -> Path:
    """Write the model atomically; `fallback` stands in for unknown characters at sample time."""
    meta = {"config": cfg.to_dict(), "vocab": list(vocab.chars), "fallback": fallback, "metrics": metrics or {}}
    return write_checkpoint(path, "lm", dict(model.state_dict()), meta)


def load_lm(path: str | os.PathLike) -> tuple[CharLM, Vocab, dict[str, Any]]:
    """(model in eval mode, vocabulary, metadata) from a checkpoint file or the folder holding lm.safetensors."""
    ckpt = read_checkpoint(path, "lm")
    try:
        cfg = LMConfig(**ckpt.meta["config"])
        vocab = Vocab(tuple(ckpt.meta["vocab"]))
        model = build_lm(cfg, len(vocab))
        model.load_state_dict(ckpt.tensors)
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: its weights or config are inconsistent ({str(e).splitlines()[0][:160]})") from None
    return model.eval(), vocab, ckpt.meta
