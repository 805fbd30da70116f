"""`mnistlab train --engine numpy`: print the NumPy run the way the torch trainer's runs are printed."""

from __future__ import annotations

from mnistlab.cli._common import out as _out
from mnistlab.config import Config


def _pct(x: float | None) -> str:
    return "   -   " if x is None else f"{100 * x:6.2f}%"


def _loss(x: float | None) -> str:
    return "   -   " if x is None else f"{x:7.4f}"


def run_numpy(cfg: Config, quiet: bool = False) -> int:
    """Train cfg.model with the NumPy engine, one line per epoch, then the test result."""
    from mnistlab.errors import ConfigError
    from mnistlab.lessons.scratch.train import MODELS, train_numpy

    if cfg.model not in MODELS:  # before the header line, so the error is the only output
        raise ConfigError(f"--engine numpy supports --model {' or '.join(MODELS)}, not {cfg.model!r}")

    def on_epoch_end(record: dict) -> None:
        if not quiet:
            _out(f"epoch {record['epoch']:>3}  train loss {_loss(record['train_loss'])} acc {_pct(record['train_acc'])}"
                 f"  | val loss {_loss(record['val_loss'])} acc {_pct(record['val_acc'])}  | {record['time_s']:6.2f} s")

    if not quiet:
        from mnistlab.config import optimiser_summary, schedule_summary
        from mnistlab.lessons.scratch.train import DEFAULT_LR

        lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.model]
        length = (f"{cfg.steps:,} steps" if cfg.steps else f"{cfg.epochs:g} epochs" if cfg.epochs is not None
                  else f"2 epochs, at least {cfg.min_steps:,} steps (--min-steps)")
        _out(f"{cfg.model} (NumPy, hand-written backprop) on {cfg.dataset}: mini-batch {optimiser_summary(cfg, lr)}, "
             f"{schedule_summary(cfg)}, batch {cfg.batch_size}, {length}")
    result = train_numpy(cfg, on_epoch_end=on_epoch_end)
    test, n = result["test"], result["num_test"]
    _out(
        f"{result['model']!r}, lr {result['lr']:g}: {result['num_train']:,} train, {result['num_val']:,} val, {n:,} test images",
        f"Test set: Average loss: {test['test_loss']:.4f}, Accuracy: {round(test['test_acc'] * n)}/{n} "
        f"({100 * test['test_acc']:.2f}%)",
        f"Training time {result['train_seconds']:.2f} s, testing time {result['test_seconds']:.2f} s",
    )
    if result["run_dir"]:
        _out(f"saved run {result['run_dir']}")
    return 0
