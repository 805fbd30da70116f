"""The softmax function up close: the lecture's worked example, hard max, temperature, and overflow.

softmax(z)_i = exp(z_i) / sum_j exp(z_j). Subtracting max(z) first changes nothing mathematically
(the factor exp(-max z) cancels) but keeps every exponent <= 0, so logits of 1000 stay finite where
the naive formula computes exp(1000) = inf and then inf / inf = nan.
"""

from __future__ import annotations

import math

import torch

from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, lecture_row, pct, Result, load, make_config, save_figure, train

EXAMPLE = (5.0, 2.0, -1.0, 3.0)  # the lecture's logits
EXPECTED = (0.842, 0.042, 0.002, 0.114)  # and their softmax, to 3 decimals
TEMPERATURES = (0.5, 1.0, 2.0, 5.0)
# The lecture's softmax regression: plain SGD lr 0.001 (no momentum), batch 100, 3,000 iterations,
# inputs only scaled to [0, 1] by ToTensor (no mean/std normalisation): 82% on the test set.
REGRESSION = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0, "batch_size": 100, "steps": 3000, "normalize": "unit"}
REGRESSION_SETTING = "SGD lr 0.001, no momentum, batch 100, 3,000 iterations, ToTensor scaling only"
LECTURE_REGRESSION_ACC = 0.82
QUICK_STEPS = 300
LARGE = (1000.0, 999.0, 997.0)  # logits large enough to overflow exp in float32 (and float64)


def naive_softmax(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """exp(z / T) / sum exp(z / T), exactly as written: overflows for large logits."""
    e = torch.exp(z / temperature)
    return e / e.sum(-1, keepdim=True)


def stable_softmax(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The same function computed as exp(z/T - max(z/T)) / sum(...): every exponent is <= 0."""
    z = z / temperature
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def hard_max(z: torch.Tensor) -> torch.Tensor:
    """One-hot of the largest logit: the limit of softmax as the temperature goes to 0."""
    return torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)


def entropy(p: torch.Tensor) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@register_experiment("softmax", "softmax([5, 2, -1, 3]) worked through; hard max, temperature, the stable form")
def run(opts: Options) -> Result:
    """The worked example and its variations, then the same on a trained softmax regression's logits."""
    z = torch.tensor(EXAMPLE)
    p = stable_softmax(z)
    example = [
        {"class": i, "logit": float(z[i]), "exp(logit)": float(torch.exp(z[i])), "softmax": round(float(p[i]), 3),
         "lecture": EXPECTED[i], "hard_max": float(hard_max(z)[i])}
        for i in range(len(EXAMPLE))
    ]
    temperature_rows = [
        {"temperature": t, **{f"p{i}": round(float(v), 3) for i, v in enumerate(stable_softmax(z, t))},
         "entropy_nats": entropy(stable_softmax(z, t))}
        for t in TEMPERATURES
    ]
    big = torch.tensor(LARGE)
    overflow_rows = []
    for dtype in (torch.float32, torch.float64):
        zb = big.to(dtype)
        overflow_rows.append({"dtype": str(dtype).replace("torch.", ""), "form": "naive exp(z) / sum exp(z)",
                              "probabilities": [float(v) for v in naive_softmax(zb)],
                              "finite": bool(torch.isfinite(naive_softmax(zb)).all())})
        overflow_rows.append({"dtype": str(dtype).replace("torch.", ""), "form": "stable exp(z - max z) / sum",
                              "probabilities": [round(float(v), 4) for v in stable_softmax(zb)],
                              "finite": bool(torch.isfinite(stable_softmax(zb)).all())})

    # A real digit: the logits of a softmax regression trained on MNIST, under the same temperatures.
    steps = QUICK_STEPS if opts.quick else REGRESSION["steps"]
    if opts.epochs is not None:  # --epochs: passes over the training set instead of the lecture's iterations
        fields = {**REGRESSION, "steps": None, "epochs": opts.epochs}
    else:
        fields = {**REGRESSION, "steps": steps}
    cfg = make_config(opts, model="softmax", **fields)
    data = load(opts, cfg)
    trained = train(cfg, data, tensorboard=opts.arm_log("softmax regression"))
    done = trained.epochs[-1]["step"] if trained.epochs else steps
    claims = [lecture_row("softmax regression test accuracy", pct(LECTURE_REGRESSION_ACC, 0), REGRESSION_SETTING,
                          pct(trained.history.test.acc),
                          f"same, {done} iterations, {trained.history.train_seconds:.1f} s of training"),
              lecture_row("softmax([5, 2, -1, 3])", ", ".join(f"{v:.3f}" for v in EXPECTED), "worked by hand",
                          ", ".join(f"{float(v):.3f}" for v in p), "stable_softmax, float32")]
    logits = trained.history.test.logits[0]
    label = int(data.test.y[0])
    digit_rows = [
        {"temperature": t, "predicted": int(logits.argmax()), "true": label,
         "p_predicted": float(stable_softmax(logits, t).max()), "entropy_nats": entropy(stable_softmax(logits, t))}
        for t in TEMPERATURES
    ]
    figures = [_plot_temperature(z, logits, label, opts.out_dir / "softmax_temperature.png").name]
    notes = [
        "softmax(z) = exp(z_i) / sum_j exp(z_j); with a temperature T it is softmax(z / T): T < 1 sharpens towards "
        "the hard max, T > 1 flattens towards uniform (entropy ln 4 = 1.386 nats for 4 classes).",
        f"the naive form overflows: exp(1000) is inf in float32 and float64 (float64 overflows above "
        f"{math.log(torch.finfo(torch.float64).max):.1f}), and inf / inf = nan; the stable form subtracts max z first.",
        f"the real digit is test image 0 (a {label}); its logits come from the lecture's softmax regression "
        f"({REGRESSION_SETTING}; here {done} iterations): test accuracy {100 * trained.history.test.acc:.2f}%, "
        f"the lecture's {100 * LECTURE_REGRESSION_ACC:.0f}%.",
    ]
    tables = {LECTURE_TABLE: claims, "worked example: softmax([5, 2, -1, 3])": example, "temperature": temperature_rows,
              "overflow: logits [1000, 999, 997]": overflow_rows, "a real digit under temperature": digit_rows}
    return Result("softmax", "the softmax function", tables, figures, notes, opts.quick, {"softmax regression": cfg.to_dict()})


def _plot_temperature(z: torch.Tensor, logits: torch.Tensor, label: int, path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    for ax, values, title in ((axes[0], z, "the lecture's logits [5, 2, -1, 3]"),
                              (axes[1], logits, f"softmax regression's logits for a test image of a {label}")):
        k = values.shape[0]
        width = 0.8 / (len(TEMPERATURES) + 1)
        ax.bar([i - 0.4 + width / 2 for i in range(k)], hard_max(values).numpy(), width, color="black", label="hard max")
        for j, t in enumerate(TEMPERATURES):
            ax.bar([i - 0.4 + width * (j + 1.5) for i in range(k)], stable_softmax(values, t).numpy(), width,
                   color=f"C{j}", label=f"softmax, T = {t:g}")
        ax.set_xticks(range(k))
        ax.set_xlabel("class")
        ax.set_ylabel("probability")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("hard max vs softmax at several temperatures")
    return save_figure(fig, path)
