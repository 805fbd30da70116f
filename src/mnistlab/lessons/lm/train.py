"""Train a character model with truncated backpropagation through time, and measure perplexity.

The training text is cut into `batch_size` parallel streams. Each step takes the next `seq_len`
characters of every stream, starting from the hidden state the previous chunk ended with (detached:
gradients stop at the chunk boundary, the state does not), and clips the gradient norm before the
update. Validation perplexity is exp(mean NLL per character) on held-out text, measured on the same
characters as the two baselines: uniform (= the vocabulary size) and unigram (train frequencies).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.errors import ConfigError
from mnistlab.lessons.lm.data import Vocab, most_common, split_text, unigram_log_probs
from mnistlab.lessons.lm.config import LMConfig
from mnistlab.lessons.lm.model import CharLM, detach
from mnistlab.training.schedule import lr_at
from mnistlab.training.trainer import Hooks, Task, Trainer


def build_lm(cfg: LMConfig, vocab_size: int) -> CharLM:
    """The model a config describes (also used to rebuild it from a checkpoint)."""
    return CharLM(vocab_size, cfg.model, cfg.hidden_size, cfg.layers, cfg.embed_size, cfg.dropout)


def _streams(ids: np.ndarray, num_streams: int) -> torch.Tensor:
    """(N,) -> (S, N // S): S contiguous streams side by side, the tail that does not fit dropped."""
    n = len(ids) // num_streams
    return torch.from_numpy(ids[: n * num_streams].reshape(num_streams, n))


@torch.inference_mode()
def evaluate_lm(model: CharLM, ids: np.ndarray, seq_len: int, device: torch.device | str = "cpu",
                unigram: np.ndarray | None = None, num_streams: int = 8) -> dict[str, float]:
    """Mean NLL per character (nats) and perplexity on `ids`, state carried across chunks; with
    `unigram` log-probs, also the unigram perplexity of exactly the same target characters."""
    model.eval()
    num_streams = max(1, min(num_streams, len(ids) // (seq_len + 1)))
    data = _streams(ids, num_streams).to(device)
    hidden, nll, count, uni = None, 0.0, 0, 0.0
    for t in range(0, data.shape[1] - 1, seq_len):
        x = data[:, t : t + seq_len]
        y = data[:, t + 1 : t + 1 + seq_len]
        x = x[:, : y.shape[1]]
        logits, hidden = model(x, hidden)
        nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
        if unigram is not None:
            uni += -float(unigram[y.cpu().numpy()].sum())
    model.train()
    out = {"nll": nll / count, "ppl": math.exp(nll / count), "num_chars": count}
    if unigram is not None:
        out["unigram_ppl"] = math.exp(uni / count)
    return out


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu (the LM does not offer MPS); otherwise mnistlab's resolve_device."""
    from mnistlab.device import resolve_device as resolve

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve(name)


class LMTask(Task):
    """Truncated BPTT for the one Trainer: batch i of an epoch is the i-th `seq_len` chunk of every
    stream; the hidden state is carried from chunk to chunk (detached) and starts afresh each epoch."""

    def __init__(self, data: torch.Tensor, seq_len: int, eval_every: int, val_ids: np.ndarray, unigram: np.ndarray,
                 max_lr: float):
        self.data, self.seq_len, self.eval_every = data, seq_len, eval_every
        self.val_ids, self.unigram, self.max_lr = val_ids, unigram, max_lr
        self.device = data.device
        self.steps_per_epoch = (data.shape[1] - 1) // seq_len
        self.hidden = None

    def batches(self, epoch: int, start: int):
        if start == 0:
            self.hidden = None  # each epoch starts the streams afresh
        for chunk in range(start, self.steps_per_epoch):
            t = chunk * self.seq_len
            yield self.data[:, t : t + self.seq_len], self.data[:, t + 1 : t + 1 + self.seq_len]  # (B, T) each

    def loss(self, model: CharLM, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, None]:
        x, y = batch
        logits, hidden = model(x, self.hidden)
        self.hidden = detach(hidden)  # truncated BPTT: keep the state, drop its history
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), y.numel(), None

    def evaluate(self, model: CharLM) -> dict:
        val = evaluate_lm(model, self.val_ids, self.seq_len, self.device, self.unigram)
        return {"val_loss": val["nll"], "val_ppl": val["ppl"]}

    def test(self, model: CharLM) -> tuple[dict, float]:
        start = time.perf_counter()
        return evaluate_lm(model, self.val_ids, self.seq_len, self.device, self.unigram), time.perf_counter() - start

    def diverged(self, loss: float, step: int, lr: float) -> str:
        return f"the loss became {loss} at step {step}: lower --lr (now {self.max_lr})"


def train_lm(text: str, cfg: LMConfig, on_eval: Callable[[dict], None] | None = None,
             hooks: Hooks | None = None) -> dict:
    """Train on `text` (the last val_fraction held out); return the model, vocab, records and final metrics.

    The loop is the one Trainer's (training/trainer.py) driving an LMTask: Adam, a cosine schedule
    with 2% warmup, the gradient clipped to `cfg.grad_clip`, validation every `eval_every` steps
    (each record goes to `on_eval`, and to `hooks.on_eval` when hooks are given).
    """
    train_text, val_text = split_text(text, cfg.val_fraction)
    min_chars = cfg.batch_size * (cfg.seq_len + 1)
    if len(train_text) < min_chars or len(val_text) < 2:
        raise ConfigError(
            f"the text is too short ({len(text):,} characters): training needs at least --batch-size x (--seq-len + 1) = "
            f"{min_chars:,} characters, and validation at least 2"
        )
    vocab = Vocab.from_text(text)
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
    unigram = unigram_log_probs(train_ids, len(vocab))
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_lm(cfg, len(vocab)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = _streams(train_ids, cfg.batch_size).to(device)
    steps_per_epoch = (data.shape[1] - 1) // cfg.seq_len
    total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = cfg.eval_every or max(1, total_steps // 10)

    task = LMTask(data, cfg.seq_len, eval_every, val_ids, unigram, cfg.lr)
    hooks = hooks or Hooks()
    if on_eval is not None:
        given = hooks.on_eval
        hooks = replace(hooks, on_eval=on_eval if given is None else (lambda r: (on_eval(r), given(r))))
    trainer = Trainer(model, task=task, optimizer=optimizer, total_steps=total_steps, grad_clip=cfg.grad_clip,
                      schedule=lambda step: lr_at(step, total_steps, cfg.lr, "cosine", warmup=0.02))
    history = trainer.fit(hooks)
    final = history.test
    metrics = {"val_ppl": final["ppl"], "val_nll": final["nll"], "uniform_ppl": float(len(vocab)),
               "unigram_ppl": final["unigram_ppl"], "val_chars": final["num_chars"], "steps": trainer.state.step,
               "train_seconds": history.train_seconds}
    return {"model": model.cpu().eval(), "vocab": vocab, "records": history.epochs, "metrics": metrics,
            "most_common": most_common(train_text), "num_train_chars": len(train_text), "num_val_chars": len(val_text)}
