"""From scratch in NumPy: softmax regression and an MLP with hand-written backprop (no torch inside).

`softmax.py` and `mlp.py` hold the models, each forward pass next to its backward pass;
`train.py` trains them with mini-batch SGD on MNIST (`mnistlab train --engine numpy`).
"""

from __future__ import annotations

from mnistlab.lessons.scratch.mlp import MLP
from mnistlab.lessons.scratch.softmax import SoftmaxRegression, cross_entropy, softmax

__all__ = ["MLP", "SoftmaxRegression", "cross_entropy", "softmax"]
