"""Recurrent nets that read an image row by row: 28 steps of 28 pixels for MNIST."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnistlab.models.registry import register_model

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowRNN(nn.Module):
    """Treat each image row as one time step; classify from the last hidden state."""

    def __init__(self, cell: str, in_shape: tuple[int, int, int], num_classes: int, hidden_size: int, layers: int):
        super().__init__()
        channels, _, width = in_shape
        self.rnn = _CELLS[cell](channels * width, hidden_size, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, C, H, W) -> (B, H, C*W): H time steps
        out, _ = self.rnn(rows)
        return self.head(out[:, -1])  # last time step, (B, hidden) -> (B, K)


def _builder(cell: str):
    def build(
        num_classes: int, in_shape: tuple[int, int, int], hidden_size: int = 128, layers: int = 1
    ) -> nn.Module:
        return RowRNN(cell, in_shape, num_classes, hidden_size, layers)

    build.__doc__ = f"{cell.upper()} over image rows (one row per time step)."
    return build


for _cell in _CELLS:
    register_model(_cell, f"{_cell.upper()} reading image rows: --hidden-size, --layers")(_builder(_cell))
