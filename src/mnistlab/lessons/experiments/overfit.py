"""Overfitting, as in the lecture: 20 training images are learnt by heart, and validation lags far behind.

Then the usual remedies side by side: weight decay 0.001, dropout 0.4, and more data. With 20
images one batch is the whole training set, so every optimizer step is an epoch and validation is
measured after every step: the lecture's figure of training and validation accuracy against
iterations.
"""

from __future__ import annotations

from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, lecture_row, pct, Result, Trained, load, make_config, save_figure, train

NUM_IMAGES = 20  # the lecture's tiny training set
MORE_IMAGES = 200  # "more data"
HIDDEN = (50, 20)  # the lecture's small MLP, 784-50-20-10
# The lecture's optimiser for this lesson: SGD lr 0.01 with momentum 0.9 (not the 0.5 of the other
# lessons), batch 20 (the whole training set: one step is one epoch), 500 iterations.
OPTIMISER = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": NUM_IMAGES}
STEPS = 500
QUICK_STEPS = 150
SETTING = "MLP 784-50-20-10, 20 images, batch 20, SGD lr 0.01 momentum 0.9, 500 iterations"
# The lecture: training accuracy reaches 100%, validation stays at 52-61%.
LECTURE_TRAIN = "100%"
LECTURE_VAL = "52-61%"
VARIANTS = (
    ("20 images", NUM_IMAGES, {}),
    ("20 images + weight decay 0.001", NUM_IMAGES, {"weight_decay": 0.001}),
    ("20 images + dropout 0.4", NUM_IMAGES, {"dropout": 0.4}),
    (f"{MORE_IMAGES} images (more data)", MORE_IMAGES, {}),
)


@register_experiment("overfit", "20 training images: 100% training vs ~55% validation; weight decay, dropout, more data")
def run(opts: Options) -> Result:
    """Train each variant for the same number of optimizer steps; compare training and validation accuracy."""
    steps = QUICK_STEPS if opts.quick else STEPS
    if opts.epochs is not None:  # one epoch of 20 images is one step
        steps = max(1, round(opts.epochs))
    val_size = 100 if opts.quick else 1000
    rows, runs, configs = [], {}, {}
    data = {}
    for name, num_images, fields in VARIANTS:
        cfg = make_config(opts, model="mlp", hidden=list(HIDDEN), train_size=num_images, val_size=val_size,
                          steps=steps, log_every=10_000, **OPTIMISER,
                          **fields)
        if num_images not in data:  # the validation images are the same for every training-set size
            data[num_images] = load(opts, cfg)
        trained = train(cfg, data[num_images], tensorboard=opts.arm_log(name))
        tail = [r for r in trained.epochs if r["step"] > 0.9 * steps] or trained.epochs[-1:]
        train_acc = sum(r["train_acc"] for r in tail) / len(tail)
        val_acc = sum(r["val_acc"] for r in tail) / len(tail)
        train_eval = trained.session.trainer.evaluate(data[num_images].train)
        rows.append({
            "variant": name, "train_images": num_images, "steps": steps, "train_acc": train_acc,
            "train_acc_eval_mode": train_eval.acc, "val_acc": val_acc, "acc_gap": train_acc - val_acc,
            "test_acc": trained.history.test.acc,
        })
        runs[name] = trained
        configs[name] = cfg.to_dict()
    figures = [_plot_overfit(runs, opts.out_dir / "overfit_curves.png").name]
    notes = [
        f"the lecture's setting: {SETTING}; here {steps} optimizer steps per variant (the {MORE_IMAGES}-image "
        f"variant also uses batch {NUM_IMAGES}, so it sees each image {steps * NUM_IMAGES // MORE_IMAGES} times); "
        f"validation: {val_size} held-out training images, measured after every epoch.",
        "train_acc and val_acc: means over the last 10% of the steps; train_acc is measured during training "
        "(dropout on), as in the lecture's figure, train_acc_eval_mode re-measures the training images at the end "
        "with dropout off. acc_gap = train_acc - val_acc.",
        "weight decay 0.001 at lr 0.01 shrinks each weight by only lr x wd = 1e-5 per step, so over a few hundred "
        "steps it changes little.",
        _summary(rows),
    ]
    base = rows[0]
    claims = [
        lecture_row("training accuracy, 20 images", LECTURE_TRAIN, SETTING, pct(base["train_acc"]), f"same, {steps} iterations"),
        lecture_row("validation accuracy, 20 images", LECTURE_VAL, SETTING, pct(base["val_acc"]),
                    f"same, {val_size} validation images"),
        *(lecture_row(f"validation accuracy, {r['variant']}", "(shown as a curve)", SETTING, pct(r["val_acc"]),
                      f"gap {100 * r['acc_gap']:.1f} points") for r in rows[1:3]),
    ]
    return Result("overfit", "overfitting 20 images, and three remedies", {LECTURE_TABLE: claims, "overfitting": rows},
                  figures, notes, opts.quick, configs)


def _summary(rows: list[dict]) -> str:
    """One sentence comparing each remedy's gap with the baseline's, from the measured numbers."""
    base = rows[0]
    parts = [f"{r['variant']}: {100 * r['acc_gap']:.1f} points ({'narrower' if r['acc_gap'] < base['acc_gap'] else 'not narrower'})"
             for r in rows[1:]]
    return f"train/val gap, baseline {100 * base['acc_gap']:.1f} points; " + "; ".join(parts) + "."


def _plot_overfit(runs: dict[str, Trained], path) -> object:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2, sharex=True, sharey=True).ravel()
    for ax, (name, run) in zip(axes, runs.items()):
        steps = [r["step"] for r in run.epochs]
        ax.plot(steps, [r["train_acc"] for r in run.epochs], color="tab:blue", label="training accuracy")
        ax.plot(steps, [r["val_acc"] for r in run.epochs], color="tab:orange", label="validation accuracy")
        ax.set_title(name)
        ax.set_xlabel("iteration (optimizer steps)")
        ax.set_ylabel("accuracy (% of images)")
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("overfitting: training vs validation accuracy against iterations")
    return save_figure(fig, path)
