"""Deeper is not automatically better: the lectures' 3-, 5- and 9-layer MLPs with plain SGD, then the fixes.

With PyTorch's default init and ReLU, each layer shrinks the signal (and, backwards, the gradient):
after nine layers the output barely depends on the input, the gradients reaching the first layers
are tiny, and the net predicts one class for every image. Kaiming init, batch norm or Adam each
make the same 9-layer net learn.

`--lecture` (run_seeds) trains only the lecture's 9-layer net, once per seed, with the test accuracy
after every epoch: how many seeds are still on the plateau after the lecture's 9 epochs, and when
the others left it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from mnistlab.errors import ConfigError
from mnistlab.reporting import plots
from mnistlab.training.losses import compute_loss
from mnistlab.models import count_parameters
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, Result, Trained, lecture_row, load, pct, make_config, plot_step_curves, predicted_class_share, save_figure, train

# The lectures' architectures (hidden layer sizes; input 784 and output 10 are implied).
ARCHITECTURES = {
    3: (420, 120),
    5: (520, 320, 240, 120),
    9: (650, 530, 420, 350, 290, 200, 150, 80),
}
# (variant, layers, config fields): the three depths with the lectures' SGD, then three fixes.
VARIANTS = (
    ("3 layers, SGD", 3, {}),
    ("5 layers, SGD", 5, {}),
    ("9 layers, SGD", 9, {}),
    ("9 layers, SGD + Kaiming init", 9, {"init": "kaiming"}),
    ("9 layers, SGD + batch norm", 9, {"batch_norm": True}),
    ("9 layers, Adam", 9, {"optimizer": "adam", "lr": 1e-3}),
)
# The lectures' numbers after their 9 epochs of SGD (lr 0.01, momentum 0.5, batch 64).
LECTURE_EPOCHS = 9
LECTURE_ACC = {3: 0.96, 5: 0.97, 9: 0.11}
# Measured 2026-12-01 (`python benchmarks/lecture_deep_mlp.py --seeds 0,1`, 2 cores): where the lectures' own
# kind of loop stood after each of its 9 epochs.
LECTURE_LOOP_RUNS = ("seed 0 stayed at 11.35% for 5 epochs, then reached 39.60%, 87.65%, 92.69% and 93.95%; "
                     "seed 1 stayed there for 3 epochs, then 21.11%, 58.79%, 90.57% ... 95.69% after 9")
FIX_EPOCHS = 3  # the fixes are not the lectures' runs: 3 epochs show that each makes the 9-layer net learn
GRAD_BATCHES = 4  # batches averaged for the per-layer gradient norms


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                     num_batches: int = GRAD_BATCHES, batch_size: int = 64) -> list[float]:
    """Mean L2 norm of each Linear layer's weight gradient over a few batches (first layer first).

    Works on a copy, so the model (and its batch-norm statistics) is left untouched.
    """
    model = copy.deepcopy(model).train()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    totals = torch.zeros(len(linears), dtype=torch.float64)
    for i in range(num_batches):
        xb, yb = x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size]
        model.zero_grad(set_to_none=True)
        compute_loss(model(xb), yb, loss).backward()
        totals += torch.tensor([m.weight.grad.norm().item() for m in linears], dtype=torch.float64)
    return (totals / num_batches).tolist()


def _plateau_epochs(epochs: list[dict], chance: float = 0.2) -> int | None:
    """How many epochs from the start validation stayed near chance (below `chance`); None without validation."""
    accs = [e.get("val_acc") for e in epochs]
    if not accs or any(a is None for a in accs):
        return None
    n = 0
    while n < len(accs) and accs[n] < chance:
        n += 1
    return n


@register_experiment("depth", "3/5/9-layer MLPs with the lectures' SGD; Kaiming init, batch norm and Adam as fixes; "
                             "--lecture: the 9-layer net over --seeds", options=("lecture", "seeds"))
def run(opts: Options) -> Result:
    """Train the six variants on one shared data bundle and measure per-layer gradient norms
    (with `opts.lecture`: only the lecture's 9-layer net, over several seeds: `run_seeds`)."""
    if opts.lecture:
        return run_seeds(opts)
    epochs = opts.epochs_for(default=float(LECTURE_EPOCHS), quick=2.0)
    fix_epochs = opts.epochs_for(default=float(FIX_EPOCHS), quick=2.0)
    data = load(opts, make_config(opts, model="mlp"))
    x, y = data.train.x, data.train.y
    rows, runs, grads_init, grads_end, configs = [], {}, {}, {}, {}
    claims = []
    plateau = None
    for name, layers, fields in VARIANTS:
        cfg = make_config(opts, model="mlp", hidden=list(ARCHITECTURES[layers]),
                          epochs=fix_epochs if fields else epochs, **fields)
        captured: dict[str, list[float]] = {}

        def before(model: nn.Module, captured: dict = captured) -> None:
            captured["init"] = layer_grad_norms(model, x, y)

        run_: Trained = train(cfg, data, prepare=before, tensorboard=opts.arm_log(name))
        grads_init[name] = captured["init"]
        grads_end[name] = layer_grad_norms(run_.model, x, y)
        share, distinct = predicted_class_share(run_.test_preds)
        last = run_.epochs[-1]
        rows.append({
            "variant": name, "layers": layers, "params": count_parameters(run_.model), "epochs": cfg.epochs,
            "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": run_.history.test.acc,
            "top_class_share": share, "classes_predicted": distinct,
            "grad_first_layer": grads_init[name][0], "train_s": run_.history.train_seconds,
        })
        runs[name] = run_
        configs[name] = cfg.to_dict()
        if not fields and layers == 9:
            plateau = _plateau_epochs(run_.epochs)
        if not fields:
            claims.append(lecture_row(
                f"{layers}-layer MLP test accuracy", f"{100 * LECTURE_ACC[layers]:.0f}%",
                f"SGD lr 0.01 momentum 0.5, batch 64, {LECTURE_EPOCHS} epochs", pct(run_.history.test.acc),
                f"same, {epochs:g} epochs, {run_.history.train_seconds:.0f} s of training"))

    figures = [
        plot_step_curves(runs, opts.out_dir / "depth_curves.png", "MLPs of 3, 5 and 9 layers: training curves").name,
        _plot_grad_norms(grads_init, grads_end, opts.out_dir / "depth_grad_norms.png").name,
    ]
    grad_rows = [
        {"variant": name, **{f"layer {i + 1}": g for i, g in enumerate(norms)}} for name, norms in grads_init.items()
    ]
    deep = next(r for r in rows if r["layers"] == 9)
    shallow = next(r for r in rows if r["layers"] == 3)
    if deep["test_acc"] > 2 * LECTURE_ACC[9] and plateau is not None:
        notes_plateau = [
            f"the 9-layer net sat on the lecture's plateau (validation at chance, one class for almost every image) for "
            f"its first {plateau} epoch(s), then left it and reached {pct(deep['test_acc'])}; the lecture's run was "
            f"still on it after {LECTURE_EPOCHS} epochs. The settings are the same: how long the plateau lasts is "
            f"decided by the random start and the data order (this run: --seed {opts.seed}). The first layer's "
            f"gradient starts at {deep['grad_first_layer']:.2g}, {shallow['grad_first_layer'] / deep['grad_first_layer']:.0f} "
            f"times smaller than the 3-layer net's (the gradient table), so it takes thousands of steps to move. "
            f"The lectures' own kind of loop, without mnistlab (torch.optim.SGD, a DataLoader with per-item "
            f"Normalize, nn.Sequential with default init: benchmarks/lecture_deep_mlp.py), does the same on this "
            f"machine: {LECTURE_LOOP_RUNS}. `mnistlab experiment depth --lecture --seeds 0-9` runs the 9-layer net "
            f"once per seed and counts how often it is still on the plateau after {LECTURE_EPOCHS} epochs."]
    else:
        notes_plateau = []
    notes = notes_plateau + [
        f"lectures' SGD (lr 0.01, momentum 0.5, batch 64, constant rate, default PyTorch init) for {epochs:g} "
        f"epoch(s) per depth, the lectures' {LECTURE_EPOCHS}; the lectures report 96%, 97% and 11% (one class for "
        f"every image) for 3, 5 and 9 layers. The three fixes train {fix_epochs:g} epoch(s) each.",
        "top_class_share: the share of test images given the most frequent predicted class (10% is balanced, 100% is one class).",
        f"gradient norms: mean L2 norm of each Linear layer's weight gradient over {GRAD_BATCHES} training batches "
        "at initialisation (layer 1 is next to the input).",
    ]
    return Result("depth", "deeper MLPs, the 9-layer one's plateau, and three fixes",
                  {LECTURE_TABLE: claims, "accuracy by depth and fix": rows, "gradient norm per layer at initialisation": grad_rows},
                  figures, notes, opts.quick, configs)


def _plot_grad_norms(at_init: dict[str, list[float]], at_end: dict[str, list[float]], path) -> object:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, norms, when in ((axes[0], at_init, "at initialisation"), (axes[1], at_end, "after training")):
        for i, (name, values) in enumerate(norms.items()):
            # Distinct line styles: variants that share an initialisation draw the same line at init.
            ax.plot(range(1, len(values) + 1), values, marker="os^vDx"[i % 6], ls=("-", "--", ":")[i % 3],
                    ms=7 - i // 2, color=f"C{i}", label=name)
        ax.set_yscale("log")
        ax.set_title(f"weight-gradient norm per layer, {when}")
        ax.set_xlabel("Linear layer (1 = next to the input)")
        ax.set_ylabel("mean L2 norm of dLoss/dW (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("vanishing gradients: the 9-layer SGD net's first layers get almost no signal")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- --lecture: the plateau over seeds

LECTURE_SEEDS = (0, 1, 2, 3, 4)  # --lecture without --seeds
# "On the plateau": test accuracy below this. Calling every image one class scores that class's share of the
# test set (8.92-11.35% on MNIST's; 11.35% is 1,135 "1"s of 10,000); a net that has started to tell digits
# apart passes 20% within an epoch of leaving (see the README's measured curves).
PLATEAU_BELOW = 0.20
# What the lesson runs beside the seeds when none of them stays on the plateau: the same 9-layer net with
# one setting changed (seed: the first of --seeds), to show what does give the lecture's 11%.
STUCK_VARIANTS = (
    ("9 layers, sigmoid", {"activation": "sigmoid"}),
    ("9 layers, lr 0.001", {"lr": 0.001}),
)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-9' or '0,3,7' or '0-4,9' -> the seeds, in order; anything else is a ConfigError (one line)."""
    seeds: list[int] = []
    for part in text.split(","):
        item = part.strip()
        lo, sep, hi = item.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(item), int(item))
        except ValueError:
            raise ConfigError(f"--seeds: {item!r} is not a seed or a range (give e.g. 0-9, 0,3,7 or 0-4,9)") from None
        if first > last:
            raise ConfigError(f"--seeds: the range {item!r} runs backwards (write {last}-{first})")
        seeds += range(first, last + 1)
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ConfigError(f"--seeds: seed {duplicates[0]} is given twice (each seed trains once)")
    return tuple(seeds)


def left_plateau_epoch(test_accs: list[float], below: float = PLATEAU_BELOW) -> int | None:
    """The first epoch (1-based) whose test accuracy is `below` or more; None: on the plateau throughout."""
    return next((i + 1 for i, a in enumerate(test_accs) if a >= below), None)


def summarize_seeds(rows: list[dict], chance_correct: int, test_size: int) -> dict:
    """What the seed table adds up to: how many seeds are on the plateau at the end, how many exactly at
    chance (`chance_correct` images right: the most common class, e.g. 1,135 "1"s), when the others left."""
    stuck = [r["seed"] for r in rows if r["left_plateau_epoch"] is None]
    at_chance = [r["seed"] for r in rows if r["test_correct_by_epoch"][-1] == chance_correct]
    left = {r["seed"]: r["left_plateau_epoch"] for r in rows if r["left_plateau_epoch"] is not None}
    return {"seeds": len(rows), "stuck": stuck, "at_chance": at_chance, "left": left,
            "chance": chance_correct / test_size, "chance_correct": chance_correct, "test_size": test_size}


def _span(lo: float, hi: float) -> str:
    return f"{lo:.0f}" if f"{lo:.0f}" == f"{hi:.0f}" else f"{lo:.0f}-{hi:.0f}"


def _seed_word(seeds: list[int]) -> str:
    return f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})" if seeds else ""


def seed_configs(opts: Options, **fields: object) -> list:
    """One Config per seed of `--lecture`: the lecture's 9-layer net and SGD, no validation split (`fields`
    change a setting, as the STUCK_VARIANTS do)."""
    import dataclasses

    seeds = opts.seeds if opts.seeds is not None else LECTURE_SEEDS
    epochs = opts.epochs_for(default=float(LECTURE_EPOCHS), quick=2.0)
    return [make_config(dataclasses.replace(opts, seed=seed), model="mlp", hidden=list(ARCHITECTURES[9]),
                        epochs=epochs, val_size=0, **fields) for seed in seeds]


def run_seeds(opts: Options) -> Result:
    """The lecture's 9-layer net at the lecture's settings (no validation split: all 60,000 training
    images, as in the lecture), once per seed, with the test accuracy after every epoch."""
    import dataclasses

    from mnistlab.runs.session import build_model

    seeds = opts.seeds if opts.seeds is not None else LECTURE_SEEDS
    epochs = opts.epochs_for(default=float(LECTURE_EPOCHS), quick=2.0)
    rows, configs, curves = [], {}, {}
    grad_shallow = None
    data = None
    for seed, cfg in zip(seeds, seed_configs(opts)):
        seed_opts = dataclasses.replace(opts, seed=seed)
        data = load(seed_opts, cfg)  # (per seed: --quick's training subset is drawn from the seed)
        captured: dict[str, list[float]] = {}

        def before(model: nn.Module, captured: dict = captured, data=data) -> None:
            captured["init"] = layer_grad_norms(model, data.train.x, data.train.y)

        run_: Trained = train(cfg, data, prepare=before, test_every_epoch=True,
                            tensorboard=opts.arm_log(f"9 layers, seed {seed}"))
        if grad_shallow is None:  # the 3-layer net's first layer at the same seed, for scale (no training)
            shallow = build_model(make_config(seed_opts, model="mlp", hidden=list(ARCHITECTURES[3]), val_size=0), data)
            grad_shallow = layer_grad_norms(shallow, data.train.x, data.train.y)[0]
        accs = [e["test_acc"] for e in run_.epochs]
        share, distinct = predicted_class_share(run_.test_preds)
        grads = captured["init"]
        rows.append({
            "seed": seed, "left_plateau_epoch": left_plateau_epoch(accs), "test_acc": accs[-1],
            "test_correct_by_epoch": [e["test_correct"] for e in run_.epochs], "test_acc_by_epoch": accs,
            "top_class_share": share, "classes_predicted": distinct, "grad_first_layer": grads[0],
            "grad_last_layer": grads[-1], "grad_ratio_last_to_first": grads[-1] / grads[0],
            "train_s": run_.history.train_seconds,
        })
        curves[f"seed {seed}"] = accs
        if opts.progress:
            left = rows[-1]["left_plateau_epoch"]
            opts.progress(f"seed {seed}: {'still on the plateau' if left is None else f'left the plateau at epoch {left}'}, "
                          f"test {pct(accs[-1])} after {epochs:g} epochs ({run_.history.train_seconds:.0f} s)")
        configs[f"9 layers, seed {seed}"] = cfg.to_dict()
    chance_correct = int(torch.bincount(data.test.y.cpu()).max())
    summary = summarize_seeds(rows, chance_correct, len(data.test))
    stuck_rows = []
    if not summary["stuck"]:  # no seed reproduced the lecture: show what does, at the first seed
        seed_opts = dataclasses.replace(opts, seed=seeds[0], seeds=seeds[:1])
        for name, fields in STUCK_VARIANTS:
            (cfg,) = seed_configs(seed_opts, **fields)
            run_ = train(cfg, load(seed_opts, cfg), test_every_epoch=True,
                         tensorboard=opts.arm_log(f"{name} (seed {seeds[0]})"))
            accs = [e["test_acc"] for e in run_.epochs]
            stuck_rows.append({"variant": name, "seed": seeds[0], "left_plateau_epoch": left_plateau_epoch(accs),
                               "test_acc": accs[-1], "test_acc_by_epoch": accs, "train_s": run_.history.train_seconds})
            curves[f"{name} (seed {seeds[0]})"] = accs
            if opts.progress:
                opts.progress(f"{name} (seed {seeds[0]}): test {pct(accs[-1])} after {epochs:g} epochs")
            configs[f"{name}, seed {seeds[0]}"] = cfg.to_dict()
    figure = plots.plot_accuracy_per_epoch(
        curves, opts.out_dir / "depth_seeds.png",
        f"the lectures' 9-layer MLP, {len(seeds)} seeds: test accuracy after each epoch",
        lines={f"plateau below {100 * PLATEAU_BELOW:.0f}%": PLATEAU_BELOW, f"the lecture's {100 * LECTURE_ACC[9]:.0f}%": LECTURE_ACC[9]},
        dashed=[f"{name} (seed {seeds[0]})" for name, _ in STUCK_VARIANTS]).name
    claims, notes = _seed_claims(rows, summary, stuck_rows, epochs, grad_shallow)
    tables = {LECTURE_TABLE: claims, "the 9-layer net, one row per seed": rows}
    if stuck_rows:
        tables["what does give the lecture's 11%: the same net, one setting changed"] = stuck_rows
    return Result("depth", "the lecture's 9-layer MLP over seeds: how often it stays on the plateau",
                  tables, [figure], notes, opts.quick, configs)


def _seed_claims(rows: list[dict], summary: dict, stuck_rows: list[dict], epochs: float,
                 grad_shallow: float) -> tuple[list[dict], list[str]]:
    """The lecture-vs-mnistlab rows and the notes of `run_seeds`."""
    n, stuck, at_chance, left = summary["seeds"], summary["stuck"], summary["at_chance"], summary["left"]
    chance = pct(summary["chance"])
    chance_images = f"{summary['chance_correct']:,}/{summary['test_size']:,}"
    setting = f"SGD lr 0.01 momentum 0.5, batch 64, {LECTURE_EPOCHS} epochs, default init, one run"
    ours = f"same, {epochs:g} epochs, seeds {', '.join(str(r['seed']) for r in rows)}"
    learnt = [r["test_acc"] for r in rows if r["left_plateau_epoch"] is not None]
    acc_text = f"{chance} ({chance_images}) for {len(at_chance)} of {n} seeds"
    if learnt:
        acc_text += f"; {pct(min(learnt))}-{pct(max(learnt))} for the {len(learnt)} that left the plateau"
    ratios = sorted(r["grad_ratio_last_to_first"] for r in rows)
    first = sorted(r["grad_first_layer"] for r in rows)
    median = ratios[len(ratios) // 2]
    claims = [
        lecture_row("9-layer MLP test accuracy", f"{100 * LECTURE_ACC[9]:.0f}%", setting, acc_text, ours),
        lecture_row(f"seeds still on the plateau after {epochs:g} epochs", "its one run", setting,
                    f"{len(stuck)} of {n} ({100 * len(stuck) / n:.0f}%){_seed_word(stuck)}; "
                    f"{len(at_chance)} of {n} at exactly {chance}{_seed_word(at_chance)}", ours),
        lecture_row("epoch at which the net left the plateau", f"not within {LECTURE_EPOCHS}", setting,
                    ", ".join(f"seed {s}: {e}" for s, e in left.items()) or f"none within {epochs:g}", ours),
        lecture_row("gradient at layer 1 vs layer 9 (weights, at initialisation)", "vanishing (not measured)", setting,
                    f"{_span(ratios[0], ratios[-1])} times smaller (median {median:.0f}); layer 1's is "
                    f"{_span(grad_shallow / first[-1], grad_shallow / first[0])} times smaller than the 3-layer net's "
                    f"(seed {rows[0]['seed']})",
                    f"mean L2 norm over {GRAD_BATCHES} batches of 64"),
    ]
    notes = [
        f"the lecture's 11% is one outcome of a seed-dependent race: at its settings, {len(stuck)} of {n} seeds "
        f"({100 * len(stuck) / n:.0f}%) were still on the plateau after {epochs:g} epochs and {len(left)} of {n} had left it. "
        "The settings are the same for every seed; only the random start and the order of the batches differ.",
        f"on the plateau: test accuracy below {100 * PLATEAU_BELOW:.0f}% (calling every image one class scores that "
        f"class's share of the test set, here at most {chance}); left_plateau_epoch: the first epoch whose test "
        f"accuracy is {100 * PLATEAU_BELOW:.0f}% or more ('-': never).",
        "no validation split: all the training images train, as in the lecture; the test split is evaluated after "
        "every epoch (test_acc_by_epoch, test_correct_by_epoch), which changes nothing in training.",
        f"gradients: mean L2 norm of each Linear layer's weight gradient over {GRAD_BATCHES} training batches at "
        "initialisation; grad_ratio_last_to_first = layer 9's / layer 1's.",
    ]
    if not stuck:
        notes.insert(1, f"no seed of {n} stayed on the plateau for {epochs:g} epochs"
                     + "".join(f"; {r['variant']} (seed {r['seed']}): "
                               + (f"still on it, {pct(r['test_acc'])}" if r["left_plateau_epoch"] is None
                                  else f"left it at epoch {r['left_plateau_epoch']}, {pct(r['test_acc'])}")
                               for r in stuck_rows) + " after the same epochs.")
    return claims, notes
