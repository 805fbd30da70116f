"""The language-model run's settings (torch-free, so the CLI can build its options without importing torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mnistlab.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")  # the recurrent cells `lessons.lm.model` builds


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class LMConfig:
    """Everything that defines a language-model run."""

    # --- data ---
    text: str | None = _f(None, "UTF-8 text file to train on (default: the shipped Python reference text)")
    val_fraction: float = _f(0.1, "the last fraction of the text, held out for validation perplexity")
    # --- model ---
    model: str = _f("lstm", "recurrent cell", CELLS)
    hidden_size: int = _f(256, "hidden state size")
    layers: int = _f(1, "stacked recurrent layers")
    embed_size: int = _f(64, "character embedding size")
    dropout: float = _f(0.0, "dropout between stacked layers")
    # --- optimisation ---
    seq_len: int = _f(128, "characters per truncated-BPTT chunk (gradients stop at chunk boundaries)")
    batch_size: int = _f(32, "parallel streams of text per step")
    epochs: float = _f(8.0, "passes over the training text (fractions allowed)")
    steps: int | None = _f(None, "optimiser steps; overrides --epochs")
    lr: float = _f(3e-3, "Adam peak learning rate (cosine decay to 0)")
    grad_clip: float = _f(1.0, "clip the gradient norm to this value (0: off)")
    # --- run ---
    eval_every: int | None = _f(None, "validate every this many steps (default: about 10 times per run)")
    seed: int = _f(0, "random seed (initialisation)")
    device: str = _f("auto", "where to train", ("auto", "cpu", "cuda"))

    def __post_init__(self) -> None:
        for f in fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"--{f.name.replace('_', '-')}: invalid choice {value!r} (choose from {', '.join(choices)})")
        for name in ("hidden_size", "layers", "embed_size", "seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction is a fraction in (0, 1), got {self.val_fraction}")
        if self.epochs <= 0 or (self.steps is not None and self.steps < 1) or self.lr <= 0:
            raise ConfigError("--epochs, --steps and --lr must be positive")
        if not 0 <= self.dropout < 1 or self.grad_clip < 0:
            raise ConfigError("--dropout must be in [0, 1) and --grad-clip 0 or more")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(f"--eval-every must be positive, got {self.eval_every}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for config.json and the checkpoint metadata)."""
        return asdict(self)
