"""Sigmoid, tanh, ReLU and LeakyReLU in the same MLP, and each activation next to its derivative.

The derivative comes from autograd, not from a hand-written formula: sigmoid's never exceeds 0.25,
so every sigmoid layer shrinks the gradient by 4x or more; ReLU's is 1 wherever the unit is on.
"""

from __future__ import annotations

import torch

from mnistlab.models.mlp import ACTIVATIONS
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, plot_step_curves, save_figure, train

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu")
HIDDEN = (520, 320, 240, 120)  # the lectures' default MLP: 784-520-320-240-120-10
LEAKY_SLOPE = 0.1  # the lecture's LeakyReLU is max(0.1x, x) (PyTorch's default slope is 0.01)


def activation_and_derivative(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) for an MLP activation, the derivative by autograd."""
    x = x.detach().clone().requires_grad_(True)
    y = (ACTIVATIONS[name](LEAKY_SLOPE) if name == "leaky_relu" else ACTIVATIONS[name]())(x)
    (grad,) = torch.autograd.grad(y.sum(), x)  # d(sum f(x_i))/dx_i = f'(x_i): the activation is elementwise
    return y.detach(), grad


@register_experiment("activations", "sigmoid, tanh, ReLU and LeakyReLU in the lectures' MLP; each with its derivative")
def run(opts: Options) -> Result:
    """Train the same MLP with each activation; tabulate and plot the curves and the derivatives."""
    epochs = opts.epochs_for(default=1.0, quick=2.0)
    data = load(opts, make_config(opts, model="mlp"))
    xs = torch.linspace(-6, 6, 601)
    rows, runs, configs = [], {}, {}
    for name in NAMES:
        slope = {"negative_slope": LEAKY_SLOPE} if name == "leaky_relu" else {}
        cfg = make_config(opts, model="mlp", hidden=list(HIDDEN), activation=name, epochs=epochs, **slope)
        trained = train(cfg, data, tensorboard=opts.arm_log(name))
        _, grad = activation_and_derivative(name, xs)
        last = trained.epochs[-1]
        rows.append({
            "activation": name, "max_derivative": float(grad.max()), "train_loss": last["train_loss"],
            "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": trained.history.test.acc,
            "train_s": trained.history.train_seconds,
        })
        runs[name] = trained
        configs[name] = cfg.to_dict()
    figures = [
        plot_step_curves(runs, opts.out_dir / "activations_curves.png",
                         "the lectures' MLP (784-520-320-240-120-10) with four activations").name,
        _plot_functions(xs, opts.out_dir / "activations_functions.png").name,
    ]
    notes = [
        f"lectures' SGD (lr 0.01, momentum 0.5, batch 64), {epochs:g} epoch(s) per activation, default PyTorch init.",
        "max_derivative: the largest slope of the activation on [-6, 6], by autograd; sigmoid's 0.25 shrinks the "
        "backward signal at least 4x per layer, which is why the sigmoid net learns slowest.",
        f"leaky_relu is the lecture's max({LEAKY_SLOPE:g}x, x) (`--activation leaky_relu --negative-slope {LEAKY_SLOPE:g}`; "
        "the mlp model's default slope stays PyTorch's 0.01).",
    ]
    return Result("activations", "activation functions in the same MLP", {"activations": rows},
                  figures, notes, opts.quick, configs)


def _plot_functions(xs: torch.Tensor, path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax_f, ax_d = fig.subplots(1, 2)
    for i, name in enumerate(NAMES):
        y, grad = activation_and_derivative(name, xs)
        ax_f.plot(xs.numpy(), y.numpy(), color=f"C{i}", label=name)
        ax_d.plot(xs.numpy(), grad.numpy(), color=f"C{i}", label=f"{name}'")
    ax_f.set_title("activation f(x)")
    ax_f.set_ylabel("f(x) (unit of the pre-activation)")
    ax_d.set_title("derivative f'(x), by autograd")
    ax_d.set_ylabel("f'(x) (dimensionless slope)")
    for ax in (ax_f, ax_d):
        ax.set_xlabel("pre-activation x")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("activations and their derivatives (LeakyReLU: max(0.1x, x), the lecture's slope)")
    return save_figure(fig, path)
