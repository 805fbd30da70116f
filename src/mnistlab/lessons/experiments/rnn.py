"""RNN vs LSTM vs GRU reading an image row by row: 28 time steps of 28 pixels.

The lecture's recurrent net (128 hidden units, Adam lr 0.001, batch 128, 10 epochs) reaches 97.2%.
The default trains that plain RNN at exactly those settings, then the gated cells (LSTM, GRU) at the
same settings for 3 epochs each, which keeps the lesson within a few minutes on 2 CPU cores
(`--epochs 10` trains every cell 10 epochs).
"""

from __future__ import annotations

from mnistlab.models import count_parameters
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import LECTURE_TABLE, Options, lecture_row, pct, Result, load, make_config, plot_step_curves, train

CELLS = ("rnn", "lstm", "gru")
HIDDEN_SIZE = 128
LECTURE_ACC = 0.972  # after 10 epochs
LECTURE_EPOCHS = 10
LECTURE_BATCH = 128
GATED_EPOCHS = 3  # LSTM and GRU, for comparison: each epoch costs 2-3x the plain RNN's
SETTING = "RNN, 128 hidden units, Adam lr 0.001, batch 128, 10 epochs"


@register_experiment("rnn", "RNN vs LSTM vs GRU over image rows, against the lecture's 97.2% after 10 epochs")
def run(opts: Options) -> Result:
    """Train the three recurrent cells with Adam on the same data; compare with the lecture's number."""
    rows, runs, configs = [], {}, {}
    data = None
    claims = []
    for cell in CELLS:
        epochs = opts.epochs_for(default=float(LECTURE_EPOCHS if cell == "rnn" else GATED_EPOCHS), quick=3.0)
        cfg = make_config(opts, model=cell, hidden_size=HIDDEN_SIZE, optimizer="adam", lr=1e-3, epochs=epochs,
                          batch_size=LECTURE_BATCH)
        data = data or load(opts, cfg)
        trained = train(cfg, data, tensorboard=opts.arm_log(cell))
        last = trained.epochs[-1]
        rows.append({
            "model": cell.upper(), "params": count_parameters(trained.model), "epochs": epochs,
            "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": trained.history.test.acc,
            "lecture_acc": LECTURE_ACC, "lecture_epochs": LECTURE_EPOCHS, "train_s": trained.history.train_seconds,
        })
        runs[cell.upper()] = trained
        configs[cell] = cfg.to_dict()
        claims.append(lecture_row(f"{cell.upper()} test accuracy", pct(LECTURE_ACC, 1) if cell == "rnn" else "-",
                                  SETTING, pct(trained.history.test.acc),
                                  f"{cell.upper()}, same, {epochs:g} epochs, {trained.history.train_seconds:.0f} s of training"))
    figures = [plot_step_curves(runs, opts.out_dir / "rnn_curves.png", "recurrent nets reading image rows").name]
    notes = [
        f"one layer of {HIDDEN_SIZE} hidden units, Adam lr 0.001, batch {LECTURE_BATCH}; the classifier reads the "
        f"last time step. The plain RNN trains the lecture's {LECTURE_EPOCHS} epochs (the lecture: "
        f"{100 * LECTURE_ACC:.1f}%); LSTM and GRU train {rows[1]['epochs']:g} epoch(s) each, for comparison "
        f"(--epochs {LECTURE_EPOCHS} trains all three like the lecture's).",
    ]
    return Result("rnn", "RNN, LSTM and GRU over image rows", {LECTURE_TABLE: claims, "recurrent nets": rows}, figures, notes, opts.quick, configs)
