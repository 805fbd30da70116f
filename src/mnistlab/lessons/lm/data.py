"""Text -> character ids, the train/validation split, and the baselines a model has to beat."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.errors import DataError


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file as a string; unreadable or non-UTF-8 files are a one-line DataError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(f"{p}, line {line}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    return text


@dataclass(frozen=True)
class Vocab:
    """The characters a model knows, in a fixed order; ids are positions in `chars`."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """Every distinct character of `text`, sorted."""
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        """Character -> id."""
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str, fallback: str | None = None) -> np.ndarray:
        """Ids (int64). A character outside the vocabulary becomes `fallback`, or is a KeyError without one."""
        index = self.index
        default = index[fallback] if fallback is not None else None
        if default is None:
            return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        return np.fromiter((index.get(c, default) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        """Ids -> text."""
        return "".join(self.chars[int(i)] for i in ids)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary (each once, in order)."""
        index = self.index
        return list(dict.fromkeys(c for c in text if c not in index))


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """(train, validation): the last `val_fraction` of the text is held out, unseen in training."""
    cut = len(text) - int(len(text) * val_fraction)
    return text[:cut], text[cut:]


def unigram_log_probs(train_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """log p(c) from training frequencies with add-one smoothing: (count + 1) / (N + V)."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
    return np.log((counts + 1) / (counts.sum() + vocab_size))


def unigram_perplexity(train: str, val: str, vocab: Vocab) -> float:
    """exp of the unigram cross entropy of `val` under add-one-smoothed `train` frequencies."""
    logp = unigram_log_probs(vocab.encode(train), len(vocab))
    return math.exp(-float(logp[vocab.encode(val)].mean()))


def most_common(text: str) -> str:
    """The most frequent character (the stand-in for unknown characters at sample time)."""
    return Counter(text).most_common(1)[0][0]
