"""RNN vs LSTM vs GRU reading an image row by row: 28 time steps of 28 pixels.

The lecture's recurrent net reaches 97.2% after 10 epochs. Ten epochs of three recurrent nets take
far longer than a few minutes on 2 CPU cores, so the default here is one epoch each (pass
`--epochs 10` to compare like with like); the gated cells (LSTM, GRU) pull ahead of the plain RNN.
"""

from __future__ import annotations

from mnistlab.models import count_parameters
from mnistlab.lessons.experiments.registry import register_experiment
from mnistlab.lessons.experiments.common import Options, Result, load, make_config, plot_step_curves, train

CELLS = ("rnn", "lstm", "gru")
HIDDEN_SIZE = 128
LECTURE_ACC = 0.972  # after 10 epochs
LECTURE_EPOCHS = 10


@register_experiment("rnn", "RNN vs LSTM vs GRU over image rows, against the lecture's 97.2% after 10 epochs")
def run(opts: Options) -> Result:
    """Train the three recurrent cells with Adam on the same data; compare with the lecture's number."""
    epochs = opts.epochs_for(default=1.0, quick=1.0)
    rows, runs, configs = [], {}, {}
    data = None
    for cell in CELLS:
        cfg = make_config(opts, model=cell, hidden_size=HIDDEN_SIZE, optimizer="adam", lr=1e-3, epochs=epochs)
        data = data or load(opts, cfg)
        trained = train(cfg, data)
        last = trained.epochs[-1]
        rows.append({
            "model": cell.upper(), "params": count_parameters(trained.model), "epochs": epochs,
            "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": trained.history.test.acc,
            "lecture_acc": LECTURE_ACC, "lecture_epochs": LECTURE_EPOCHS, "train_s": trained.history.train_seconds,
        })
        runs[cell.upper()] = trained
        configs[cell] = cfg.to_dict()
    figures = [plot_step_curves(runs, opts.out_dir / "rnn_curves.png", "recurrent nets reading image rows").name]
    notes = [
        f"one layer of {HIDDEN_SIZE} hidden units, Adam lr 0.001, batch 64, {epochs:g} epoch(s) each; the "
        f"classifier reads the last time step. The lecture's {100 * LECTURE_ACC:.1f}% is after {LECTURE_EPOCHS} "
        "epochs: the default trains fewer because 10 epochs of three recurrent nets take tens of minutes on "
        f"2 CPU cores (run with --epochs {LECTURE_EPOCHS} to compare directly).",
    ]
    return Result("rnn", "RNN, LSTM and GRU over image rows", {"recurrent nets": rows}, figures, notes, opts.quick, configs)
