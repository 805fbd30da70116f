"""The lectures' worked examples, computed by mnistlab and printed next to the lectures' figures.

- cross entropy of y = (0, 1, 0, 0) against y_hat = (0.3, 0.2, 0.1, 0.4): -log 0.2. The lecture writes
  0.698, a base-10 logarithm (-log10 0.2 = 0.69897, which rounds to 0.699: the lecture truncates);
  PyTorch's cross entropy, like every loss in mnistlab, uses the natural log: -ln 0.2 = 1.609.
- binary cross entropy of three sigmoid outputs (0.6, 0.7, 0.4) against labels (1, 0, 1):
  -[ln 0.6 + ln(1 - 0.7) + ln 0.4] = 2.631 (natural log here, as the lecture's 2.63 is).
- with C = 2 classes, softmax is logistic regression: softmax(z)_1 = sigmoid(z_1 - z_0).
- LeakyReLU as max(0.1x, x): the mlp model's `--negative-slope 0.1`.
- the house-price table: squared errors and their mean, recomputed by `mnistlab tabular --example lecture`.
No training: the lesson takes about a second.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, Result, lecture_row
from mnistlab.lessons.tabular import EXAMPLE_PREDICTIONS, EXAMPLES, EXAMPLES_DIR, score_predictions
from mnistlab.models import create_model
from mnistlab.training.losses import compute_loss

CE_TARGET = 1  # y = (0, 1, 0, 0)
CE_PROBS = (0.3, 0.2, 0.1, 0.4)
LECTURE_CE = 0.698
BCE_PROBS = (0.6, 0.7, 0.4)
BCE_LABELS = (1.0, 0.0, 1.0)
LECTURE_BCE = 2.63
LEAKY_SLOPE = 0.1
# The lecture's house-price table, in $1000: its squared errors and their average.
LECTURE_SQUARED = (449, 1756, 3969)
LECTURE_MEAN = 2058


def cross_entropy_example() -> dict[str, float]:
    """The lecture's cross entropy through mnistlab's loss (natural log), and in base 10 and base 2."""
    p = torch.tensor([CE_PROBS], dtype=torch.float64)
    # log p as logits: softmax(log p) = p because p sums to 1, so compute_loss sees exactly these probabilities.
    nats = float(compute_loss(p.log(), torch.tensor([CE_TARGET]), "ce"))
    return {"nats": nats, "base10": nats / math.log(10), "bits": nats / math.log(2)}


def binary_cross_entropy_example() -> dict[str, float]:
    """Sum over the three outputs of -[y ln p + (1 - y) ln(1 - p)], by F.binary_cross_entropy and by mnistlab's bce."""
    p = torch.tensor([BCE_PROBS], dtype=torch.float64)
    y = torch.tensor([BCE_LABELS], dtype=torch.float64)
    torch_sum = float(F.binary_cross_entropy(p, y, reduction="sum"))
    # mnistlab's bce loss averages over the outputs: times 3 it is the lecture's sum.
    ours = float(compute_loss(torch.logit(p), y, "bce")) * p.shape[1]
    by_hand = -(math.log(0.6) + math.log(1 - 0.7) + math.log(0.4))
    return {"torch_sum": torch_sum, "mnistlab_bce_times_3": ours, "by_hand": by_hand}


def two_class_softmax_gap(n: int = 10_000, seed: int = 0) -> float:
    """Largest |softmax(z)_1 - sigmoid(z_1 - z_0)| over n random logit pairs (float64)."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5
    return float((F.softmax(z, dim=1)[:, 1] - torch.sigmoid(z[:, 1] - z[:, 0])).abs().max())


def leaky_relu_gap(slope: float = LEAKY_SLOPE) -> float:
    """Largest |LeakyReLU(x) - max(slope x, x)| on [-10, 10], LeakyReLU taken from an mlp built with that slope."""
    model = create_model("mlp", 10, (1, 28, 28), hidden=(4,), activation="leaky_relu", negative_slope=slope)
    act = next(m for m in model.modules() if isinstance(m, torch.nn.LeakyReLU))
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    return float((act(x) - torch.maximum(slope * x, x)).abs().max())


def house_table() -> dict:
    """The lecture's house-price table scored as given (`mnistlab tabular --example lecture`)."""
    name, target, _ = EXAMPLES["lecture"]
    return score_predictions(EXAMPLES_DIR / name, target, EXAMPLE_PREDICTIONS["lecture"])


@register_experiment("worked", "the lectures' worked examples: cross entropy, BCE, 2-class softmax, LeakyReLU, house prices",
                     trains=False)
def run(opts: Options) -> Result:
    """Compute each worked example and set it beside the lecture's figure."""
    ce = cross_entropy_example()
    bce = binary_cross_entropy_example()
    gap2 = two_class_softmax_gap(seed=opts.seed)
    leaky = leaky_relu_gap()
    houses = house_table()
    claims = [
        lecture_row("cross entropy, y = (0,1,0,0), y_hat = (0.3,0.2,0.1,0.4)", f"{LECTURE_CE}", "-log 0.2, base 10",
                    f"{ce['base10']:.5f} (base 10); {ce['nats']:.4f} (natural log)", "mnistlab's ce loss"),
        lecture_row("binary cross entropy, p = (0.6,0.7,0.4), y = (1,0,1)", f"{LECTURE_BCE}",
                    "-[log 0.6 + log(1-0.7) + log 0.4]", f"{bce['torch_sum']:.4f}", "natural log, summed over outputs"),
        lecture_row("C = 2: softmax = logistic regression", "equal", "claim", f"largest difference {gap2:.1e}",
                    "10,000 random logit pairs, float64"),
        lecture_row("LeakyReLU = max(0.1x, x)", "definition", "slope 0.1",
                    f"largest difference {leaky:g}", "mlp --activation leaky_relu --negative-slope 0.1"),
        *(lecture_row(f"house {r['row']}: squared error", f"{LECTURE_SQUARED[i]:,}", "lecture's table",
                      f"{r['squared_error']:,.2f}", f"({r['predicted']:g} - {r['actual']:g})^2")
          for i, r in enumerate(houses["rows"])),
        lecture_row("house table: average squared error", f"{LECTURE_MEAN:,}", "lecture's table",
                    f"{houses['mse']:,.2f}", "mnistlab tabular --example lecture"),
    ]
    ce_rows = [{"log base": "natural (nats): mnistlab and PyTorch", "loss": ce["nats"]},
               {"log base": "10 (the lecture's)", "loss": ce["base10"]},
               {"log base": "2 (bits)", "loss": ce["bits"]}]
    bce_rows = [{"computed by": k.replace("_", " "), "loss": v} for k, v in bce.items()]
    lecture_mean = sum(LECTURE_SQUARED) / len(LECTURE_SQUARED)
    notes = [
        f"cross entropy: the lecture's {LECTURE_CE} is -log10 0.2 = {ce['base10']:.5f}, truncated (it rounds to "
        f"{ce['base10']:.3f}); with the natural log that PyTorch's cross entropy and every mnistlab loss use it is "
        f"-ln 0.2 = {ce['nats']:.4f} nats. Only the true class's probability counts: y is one-hot.",
        f"binary cross entropy: sum over the three sigmoid outputs, natural log: {bce['by_hand']:.4f}, the lecture's "
        f"{LECTURE_BCE}. mnistlab's bce loss averages over the outputs ({bce['mnistlab_bce_times_3'] / 3:.4f} here), "
        "so it is the lecture's sum divided by 3.",
        "2 classes: softmax(z)_1 = e^z1 / (e^z0 + e^z1) = 1 / (1 + e^-(z1 - z0)) = sigmoid(z1 - z0): "
        "softmax regression with C = 2 is logistic regression on the logit difference.",
        f"house table: the lecture's squared error 449 for the first house does not follow from its own numbers: "
        f"(379 - 399.9)^2 = 20.9^2 = {houses['rows'][0]['squared_error']:.2f} (449 = 21.2^2, as if the prediction "
        f"were 378.7). The others round correctly (1,755.61 -> 1,756; 3,969 exact). The lecture's average "
        f"{LECTURE_MEAN:,} is the mean of its rounded squares ({lecture_mean:,.1f}); from the table's own "
        f"predictions it is {houses['mse']:,.2f}.",
    ]
    house_rows = [{k: v for k, v in r.items()} for r in houses["rows"]]
    tables = {LECTURE_TABLE: claims, "cross entropy in three log bases": ce_rows,
              "binary cross entropy, three sigmoid outputs": bce_rows, "house-price table": house_rows}
    return Result("worked", "the lectures' worked examples", tables, [], notes, opts.quick)
