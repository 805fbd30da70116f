"""Loss functions for softmax regression, and why MSE after a poor initialisation barely moves.

Cross entropy, MSE on one-hot targets and NLL over log_softmax train the same softmax regression;
binary cross entropy trains binary logistic regression (3 against 8). With large initial weights
the softmax saturates: cross entropy's gradient (p - y) stays large, MSE's is multiplied by the
softmax's slope p(1 - p), which is nearly 0, so its loss surface is flat where training starts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.training.losses import compute_loss
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, Trained, load, make_config, save_figure, train

POOR_INIT_SCALE = 30.0  # multiply PyTorch's default weights by this: logits of tens, a saturated softmax
SLICE_IMAGES = 2000  # training images used for the loss-surface slice and the gradient norms
BINARY_CLASSES = (3, 8)
VARIANTS = (
    ("softmax regression, ce", "ce", False),
    ("softmax regression, nll (log_softmax)", "nll", False),
    ("softmax regression, mse (one-hot)", "mse", False),
    ("softmax regression, ce, poor init", "ce", True),
    ("softmax regression, mse (one-hot), poor init", "mse", True),
)


def scale_weights(model: nn.Module, scale: float = POOR_INIT_SCALE) -> None:
    """A deliberately poor initialisation: every weight multiplied by `scale`."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)


def weight_grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> float:
    """L2 norm of the loss gradient with respect to the weights (all parameters), on (x, y)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(compute_loss(model(x), y, loss), params)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))


def saturated_share(model: nn.Module, x: torch.Tensor, threshold: float = 0.99) -> float:
    """Share of images whose largest softmax probability exceeds `threshold`."""
    with torch.no_grad():
        return float((F.softmax(model(x), dim=1).max(1).values > threshold).float().mean())


@register_experiment("losses", "ce vs mse (one-hot) vs nll for softmax regression; bce for logistic; mse's flat start")
def run(opts: Options) -> Result:
    """Train softmax regression with each loss (and a poor init), then binary logistic regression with BCE."""
    epochs = opts.epochs_for(default=1.0, quick=2.0)
    data = load(opts, make_config(opts, model="softmax"))
    x, y = data.train.x[:SLICE_IMAGES], data.train.y[:SLICE_IMAGES]
    rows, runs, configs = [], {}, {}
    for name, loss, poor in VARIANTS:
        cfg = make_config(opts, model="softmax", loss=loss, epochs=epochs)
        at_init: dict[str, float] = {}

        def prepare(model: nn.Module, loss: str = loss, poor: bool = poor, at_init: dict = at_init) -> None:
            if poor:
                scale_weights(model)
            at_init["grad"] = weight_grad_norm(model, x, y, loss)
            at_init["saturated"] = saturated_share(model, x)

        trained = train(cfg, data, prepare=prepare, tensorboard=opts.arm_log(name))
        rows.append(_row(name, "softmax", loss, "x%g" % POOR_INIT_SCALE if poor else "default", at_init, trained))
        runs[name] = trained
        configs[name] = cfg.to_dict()

    binary_cfg = make_config(opts, model="logistic", loss="bce", classes=list(BINARY_CLASSES), epochs=epochs)
    binary_data = load(opts, binary_cfg)
    at_init = {"grad": weight_grad_norm(_fresh(binary_cfg, binary_data), binary_data.train.x[:SLICE_IMAGES],
                                        binary_data.train.y[:SLICE_IMAGES], "bce"), "saturated": None}
    trained = train(binary_cfg, binary_data, tensorboard=opts.arm_log("logistic regression, bce"))
    rows.append(_row(f"logistic regression {BINARY_CLASSES[0]} vs {BINARY_CLASSES[1]}, bce", "logistic", "bce",
                     "default", at_init, trained))
    configs["logistic, bce"] = binary_cfg.to_dict()

    slice_rows = _loss_slice(runs["softmax regression, ce"].model, make_config(opts, model="softmax"), data, x, y)
    figures = [
        _plot_curves(runs, opts.out_dir / "losses_curves.png").name,
        _plot_slice(slice_rows, opts.out_dir / "losses_slice.png").name,
    ]
    notes = [
        f"the lectures' SGD (lr 0.01, momentum 0.5, batch 64), {epochs:g} epoch(s) each; 'poor init' multiplies "
        f"PyTorch's default weights by {POOR_INIT_SCALE:g}.",
        f"grad_norm_init: norm of the weight gradient on {SLICE_IMAGES} training images at initialisation; "
        "saturated_share_init: share of those images whose top softmax probability exceeds 0.99.",
        "the slice table walks the straight line from the poor initialisation (t = 0) to the trained ce weights "
        "(t = 1): mse is flat near t = 0, where cross entropy is steep.",
        "logistic regression is evaluated on the test images of its two classes only.",
    ]
    tables = {"losses": rows, "loss along the line from the poor init to a trained solution": slice_rows}
    return Result("losses", "loss functions, and MSE's flat start", tables, figures, notes, opts.quick, configs)


def _fresh(cfg, data) -> nn.Module:
    from mnistlab.runs.session import build_model

    return build_model(cfg, data).to(data.train.x.device)


def _row(name: str, model: str, loss: str, init: str, at_init: dict, trained: Trained) -> dict:
    last = trained.epochs[-1]
    return {
        "variant": name, "model": model, "loss": loss, "init": init, "grad_norm_init": at_init["grad"],
        "saturated_share_init": at_init["saturated"], "train_loss": last["train_loss"],
        "val_acc": last["val_acc"], "test_acc": trained.history.test.acc,
    }


def _loss_slice(trained: nn.Module, cfg, data, x: torch.Tensor, y: torch.Tensor, points: int = 11) -> list[dict]:
    """Loss and gradient norm for ce and mse along W(t) = W_poor + t (W_trained - W_poor)."""
    start = _fresh(cfg, data)
    scale_weights(start)
    probe = _fresh(cfg, data)
    begin = [p.detach().clone() for p in start.parameters()]
    end = [p.detach().clone() for p in trained.parameters()]
    rows = []
    for i in range(points):
        t = i / (points - 1)
        with torch.no_grad():
            for p, a, b in zip(probe.parameters(), begin, end):
                p.copy_(a + t * (b - a))
        row: dict = {"t": t}
        for loss in ("ce", "mse"):
            with torch.no_grad():
                row[f"{loss}_loss"] = float(compute_loss(probe(x), y, loss))
            row[f"{loss}_grad_norm"] = weight_grad_norm(probe, x, y, loss)
        rows.append(row)
    return rows


def _plot_curves(runs: dict[str, Trained], path) -> object:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(12, 4.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (name, run) in enumerate(runs.items()):
        xs = [r["step"] for r in run.steps]
        first = run.steps[0]["loss"] if run.steps else 1.0
        ax_loss.plot(xs, [r["loss"] / first for r in run.steps], color=f"C{i}", lw=1, label=name)
        ax_acc.plot(xs, [r["acc"] for r in run.steps], color=f"C{i}", lw=1, label=name)
    ax_loss.set_title("training loss relative to its first logged value")
    ax_loss.set_ylabel("loss / first logged loss (ratio; losses have different units)")
    ax_acc.set_title("training accuracy")
    ax_acc.set_ylabel("accuracy (% of images)")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("iteration (optimizer steps)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("softmax regression trained with different losses")
    return save_figure(fig, path)


def _plot_slice(rows: list[dict], path) -> object:
    from matplotlib.figure import Figure

    t = [r["t"] for r in rows]
    fig = Figure(figsize=(13, 4.5))
    ax_loss, ax_grad = fig.subplots(1, 2, gridspec_kw={"wspace": 0.45})  # room for the twin axis' label
    ax_loss.plot(t, [r["ce_loss"] for r in rows], "o-", ms=3, color="C0", label="cross entropy (nats)")
    ax_mse = ax_loss.twinx()
    ax_mse.plot(t, [r["mse_loss"] for r in rows], "s-", ms=3, color="C3", label="MSE on one-hot (right axis)")
    ax_loss.set_title("loss along the line poor init (t=0) -> trained (t=1)")
    ax_loss.set_xlabel("t (position on the line, 0 = poor init)")
    ax_loss.set_ylabel("cross-entropy loss (nats)")
    ax_mse.set_ylabel("MSE loss (squared probability error)")
    ax_loss.legend(handles=ax_loss.get_lines() + ax_mse.get_lines(), fontsize=8)
    ax_grad.plot(t, [r["ce_grad_norm"] for r in rows], "o-", ms=3, color="C0", label="cross entropy")
    ax_grad.plot(t, [r["mse_grad_norm"] for r in rows], "s-", ms=3, color="C3", label="MSE on one-hot")
    ax_grad.set_yscale("log")
    ax_grad.set_title("gradient norm along the same line")
    ax_grad.set_xlabel("t (position on the line, 0 = poor init)")
    ax_grad.set_ylabel("L2 norm of dLoss/dparameters (log scale)")
    ax_grad.legend(fontsize=8)
    for ax in (ax_loss, ax_grad):
        ax.grid(alpha=0.3)
    fig.suptitle("a saturated softmax leaves MSE flat where cross entropy is steep")
    return save_figure(fig, path)
