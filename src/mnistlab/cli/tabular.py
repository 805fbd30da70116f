"""`mnistlab tabular`: fit a linear model to a CSV table and print the equations and scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistlab.cli._common import out
from mnistlab.errors import ConfigError
from mnistlab.lessons.tabular import (DEFAULT_EPOCHS, DEFAULT_LR, EXAMPLE_PREDICTIONS, EXAMPLES, EXAMPLES_DIR, TASKS,
                                     plot_tabular, run_tabular, score_predictions)


def cmd_tabular(args: argparse.Namespace) -> int:
    """Fit the table, then print the equations, the scores beside their baselines, and the plot written."""
    if args.example:
        name, target, task = EXAMPLES[args.example]
        csv_path, target, task = EXAMPLES_DIR / name, args.target or target, args.task or task
    elif args.csv and args.target and args.task:
        csv_path, target, task = Path(args.csv), args.target, args.task
    else:
        raise ConfigError("give --csv FILE --target COLUMN --task regression|classification, or --example price|quality|lecture")
    predicted = args.predicted or (EXAMPLE_PREDICTIONS.get(args.example) if args.example else None)
    if predicted:
        return _score_predictions(csv_path, target, task, predicted)
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    result = run_tabular(csv_path, target, task, args.test_size, args.seed, args.epochs, args.lr, features)
    table, fit = result["table"], result["fit"]
    lines = [f"{table.path}: {len(table.y)} rows ({len(result['train_idx'])} train, {len(result['test_idx'])} test); "
             f"features {', '.join(table.features)}; target {target} ({task})"]
    if fit.classes:
        lines.append(f"classes: {', '.join(f'{i}={c}' for i, c in enumerate(fit.classes))}")
    lines.append("fitted model (original units):")
    lines += [f"  {eq}" for eq in fit.equations()]
    for split in ("train", "test"):
        m = result[split]
        if not m:
            continue
        if task == "regression":
            r2 = f"R^2 {m['r2']:.4f}" if m["r2"] is not None else f"R^2 undefined ({m['r2_undefined']}: no spread to explain)"
            lines.append(f"{split:<5}  MSE {m['mse']:.4g}  {r2}  (predicting the training mean: MSE {m['baseline_mse']:.4g})")
        else:
            lines.append(f"{split:<5}  accuracy {100 * m['accuracy']:.2f}%  (most common class: {100 * m['baseline_accuracy']:.2f}%)")
    params = len(table.features) + 1
    if task == "regression" and len(result["train_idx"]) <= params:
        lines.append(f"note: {len(result['train_idx'])} training rows for {params} parameters (a weight per feature and the "
                     "intercept): the fit can pass through every training row, so its train R^2 says nothing")
    if args.plot:
        where = plot_tabular(result, args.plot)
        lines.append(f"wrote {where}" if where else "no plot: it needs one feature, or two for a decision boundary")
    out(*lines)
    return 0


def _score_predictions(csv_path: Path, target: str, task: str, predicted: str) -> int:
    """Print each row's squared error and their mean for a column of given predictions."""
    if task != "regression":
        raise ConfigError("--predicted scores regression predictions: use --task regression")
    result = score_predictions(csv_path, target, predicted)
    rows = result["rows"]
    lines = [f"{result['table'].path}: {len(rows)} rows; {predicted} scored against {target} (no fit)",
             f"{'row':>3}  {'actual':>9}  {'predicted':>9}  {'error':>8}  {'squared error':>13}"]
    lines += [f"{r['row']:>3}  {r['actual']:>9.4g}  {r['predicted']:>9.4g}  {r['error']:>8.4g}  {r['squared_error']:>13.2f}"
              for r in rows]
    lines.append(f"sum of squared errors {result['sum_squared']:.2f}; mean (MSE) {result['mse']:.2f}")
    out(*lines)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mnistlab tabular` to the CLI."""
    p = subparsers.add_parser(
        "tabular", help="linear / logistic / softmax regression on a CSV table (lecture 004's houses)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Fit a linear model to numeric CSV columns: standardised, split, weights printed in original units.",
    )
    p.add_argument("--csv", metavar="FILE", help="CSV file with a header row ('#' lines are comments)")
    p.add_argument("--example", choices=sorted(EXAMPLES), help="a shipped example table instead of --csv")
    p.add_argument("--target", metavar="COLUMN", help="the column to predict")
    p.add_argument("--task", choices=TASKS, help="regression (squared error) or classification (logistic/softmax)")
    p.add_argument("--predicted", metavar="COLUMN",
                   help="score this column's values as the predictions of --target (nothing is fitted); "
                        "--example lecture does this with its 'predicted' column")
    p.add_argument("--features", metavar="A,B", help="feature columns (default: every column but the target)")
    p.add_argument("--test-size", type=float, default=0.25, help="fraction of rows held out (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="full-batch gradient-descent steps")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate on standardised features (default: {DEFAULT_LR['regression']} regression, "
                        f"{DEFAULT_LR['classification']} classification)")
    p.add_argument("--plot", metavar="PATH", help="write the fit line / decision boundary figure here (PNG)")
    p.set_defaults(func=cmd_tabular)
