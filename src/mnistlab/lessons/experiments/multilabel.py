"""Multi-label: a sigmoid per class (bce) against softmax (ce) on `multimnist`, 1-3 digits per image.

The same CNN is trained twice on the same images. With bce each of the K outputs is its own binary
classifier ("is there a 7?"), so any number of labels can be on. With ce the outputs are one softmax
trained against the normalised label set (each of the |y| present digits gets 1/|y|); its
probabilities sum to 1, so at the same threshold (0.5) it can name at most one label: it gets at
most the single-digit images right. Judged with the oracle rule "the |y| most probable labels" (it is
told how many digits there are), softmax ranks the labels well: what it lacks is the decision of how
many labels are present, which is exactly what the independent sigmoids provide.
"""

from __future__ import annotations

import torch

from mnistlab.training.losses import class_probabilities
from mnistlab.evaluation.metrics import hamming_loss, multilabel_prf, topk_oracle_sets
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, save_figure, train

THRESHOLD = 0.5
QUICK_TRAIN_SIZE = 1500  # --quick: fewer images than the other lessons, 28x84 images cost 3x more
_OUTPUT = {"bce": "sigmoid per class", "ce": "softmax"}


def _config(opts: Options, loss: str, epochs: float):
    fields = dict(dataset="multimnist", model="cnn", hidden=[128], loss=loss, epochs=epochs, optimizer="adam", lr=3e-3,
                  batch_size=32 if opts.quick else 64, weight_decay=0.0, threshold=THRESHOLD)
    if opts.quick:
        fields["train_size"] = QUICK_TRAIN_SIZE
    return make_config(opts, **fields)


def _row(loss: str, decision: str, decided: torch.Tensor, y: torch.Tensor, seconds: float) -> dict:
    prf = multilabel_prf(decided.float(), y, 0.5, logits=False)
    return {
        "output": _OUTPUT[loss], "loss": loss, "decision": decision,
        "subset_acc": float((decided == y.bool()).all(1).float().mean()),
        "hamming_loss": hamming_loss(decided.float(), y, 0.5, logits=False),
        "macro_f1": prf["macro_f1"], "micro_f1": prf["micro_f1"],
        "labels_per_image": float(decided.sum(1).float().mean()), "train_s": seconds,
    }


@register_experiment("multilabel", "multimnist (1-3 digits per image): sigmoid per class (bce) against softmax (ce)")
def run(opts: Options) -> Result:
    """Train the same CNN with bce and with ce on multimnist; compare subset accuracy, Hamming loss and F1."""
    epochs = opts.epochs_for(default=3.0, quick=3.0)
    data = load(opts, _config(opts, "bce", epochs))
    y = data.test.y.cpu()
    rows, oracle_rows, sets, configs = [], [], {}, {}
    for loss in ("bce", "ce"):
        cfg = _config(opts, loss, epochs)
        trained = train(cfg, data, tensorboard=opts.arm_log(loss))
        probs = class_probabilities(trained.history.test.logits, loss)
        decided = probs >= THRESHOLD
        rows.append(_row(loss, f"p >= {THRESHOLD:g}", decided, y, trained.history.train_seconds))
        oracle_rows.append(_row(loss, "top-|y| (told the count)", topk_oracle_sets(probs, y), y,
                                trained.history.train_seconds))
        sets[loss] = decided
        configs[f"{loss} ({_OUTPUT[loss]})"] = cfg.to_dict()

    from mnistlab.reporting import plots

    figures = [_plot_metrics(rows + oracle_rows, opts.out_dir / "multilabel_metrics.png").name]
    for loss, decided in sets.items():
        path = opts.out_dir / f"multilabel_{loss}_predictions.png"
        title = f"{_OUTPUT[loss]} ({loss}), label = p >= {THRESHOLD:g}"
        plots.plot_label_set_grid(data.test_images[:16], decided[:16], path, y[:16], data.class_names, title)
        figures.append(path.name)
    single = float((y.sum(1) == 1).float().mean())
    notes = [
        f"the same CNN (hidden 128), Adam lr 0.003, {epochs:g} epoch(s) per loss on {len(data.train):,} multimnist "
        f"images; test: {len(y):,} images, {float(y.sum(1).float().mean()):.2f} digits per image on average.",
        f"Hamming loss of predicting no label at all: {float(y.float().mean()):.4f}; single-digit test images: "
        f"{100 * single:.1f}%, the most softmax at p >= {THRESHOLD:g} can get right (its probabilities sum to 1, "
        "so at most one label passes 0.5).",
        "ce trains the softmax against the normalised label set y/|y|; top-|y| is an oracle rule that is told how "
        "many labels each image has: it measures ranking, not the decision.",
    ]
    tables = {f"threshold {THRESHOLD:g} (the deployable rule)": rows, "oracle: the |y| most probable labels": oracle_rows}
    return Result("multilabel", "sigmoid per class against softmax on multi-label multimnist", tables, figures, notes,
                  opts.quick, configs)


def _plot_metrics(rows: list[dict], path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    labels = [f"{r['loss']} ({r['output']})\n{r['decision'].split(' (')[0]}" for r in rows]
    for ax, key, title in zip(axes, ("subset_acc", "hamming_loss", "macro_f1"),
                              ("subset accuracy (higher is better)", "Hamming loss (lower is better)",
                               "macro F1 (higher is better)")):
        values = [r[key] for r in rows]
        bars = ax.bar(range(len(rows)), values, color=[f"C{i}" for i in range(len(rows))])
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_title(title)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("multimnist: sigmoid per class (bce) against softmax (ce), same CNN, same images")
    return save_figure(fig, path)
