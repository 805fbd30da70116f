"""Generate text from a character model: read the prompt, then draw one character at a time."""

from __future__ import annotations

import torch

from mnistlab.errors import ConfigError
from mnistlab.lessons.lm.data import Vocab
from mnistlab.lessons.lm.model import CharLM


@torch.inference_mode()
def sample_text(model: CharLM, vocab: Vocab, prompt: str, length: int, temperature: float = 0.8,
                seed: int = 0, fallback: str | None = None) -> str:
    """`length` new characters after `prompt` (not included). temperature 0 is greedy decoding;
    prompt characters outside the vocabulary become `fallback` (the model has never seen them)."""
    if length < 0:
        raise ConfigError(f"--length must be 0 or more, got {length}")
    if temperature < 0:
        raise ConfigError(f"--temperature must be 0 or more, got {temperature}")
    if fallback is None or fallback not in vocab.chars:
        fallback = " " if " " in vocab.chars else vocab.chars[0]
    # With no prompt, condition on a newline (the start of a line) when the model knows one.
    context = prompt or ("\n" if "\n" in vocab.chars else fallback)
    ids = torch.from_numpy(vocab.encode(context, fallback=fallback)).unsqueeze(0)  # (1, T)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    logits, hidden = model(ids)
    out = []
    for _ in range(length):
        last = logits[0, -1]
        if temperature == 0:
            nxt = int(last.argmax())
        else:
            probs = torch.softmax(last.double() / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        out.append(nxt)
        logits, hidden = model(torch.tensor([[nxt]]), hidden)
    return vocab.decode(out)
