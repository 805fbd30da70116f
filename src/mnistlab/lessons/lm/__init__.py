"""A character-level language model (RNN, LSTM or GRU) and its perplexity, for lecture 004's RNN chapter.

`data.py` turns any UTF-8 text into character ids and computes the uniform and unigram baselines;
`model.py` is the network; `train.py` trains it with truncated backpropagation through time;
`checkpoint.py` stores it as safetensors + JSON; `sample.py` generates text; `cli.py` is `mnistlab lm`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_TEXT = Path(__file__).resolve().parent / "corpus" / "python_reference.txt"
