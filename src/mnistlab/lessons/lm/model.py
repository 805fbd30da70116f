"""The character model: embedding -> RNN/LSTM/GRU -> linear to logits over the vocabulary."""

from __future__ import annotations

import torch
import torch.nn as nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class CharLM(nn.Module):
    """Next-character logits for every position of a (B, T) batch of character ids."""

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 256, layers: int = 2,
                 embed_size: int = 64, dropout: float = 0.0):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed_size)
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = CELLS[cell](embed_size, hidden_size, num_layers=layers, batch_first=True,
                               dropout=dropout if layers > 1 else 0.0, **kwargs)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """(B, T) ids -> (B, T, V) logits, and the hidden state after the last position."""
        out, hidden = self.rnn(self.embed(x), hidden)  # out: (B, T, H)
        return self.head(out), hidden


def detach(hidden: Hidden) -> Hidden:
    """Cut the graph at a chunk boundary (truncated BPTT) but keep the state's values."""
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
