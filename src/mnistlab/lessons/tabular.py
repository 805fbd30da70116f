"""Tables (lecture 004's houses): linear regression or logistic/softmax regression on a CSV file.

Features are standardised with the training rows' mean and std, the model is fitted by full-batch
gradient descent in that space, and the weights are then mapped back to the original units, so that
`price = 3.1 * area + 45` reads in square metres and thousands. `mnistlab tabular` (mnistlab.cli.tabular)
is the command and does the printing.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.errors import ConfigError, DataError

TASKS = ("regression", "classification")
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLES = {
    "price": ("houses_price.csv", "price", "regression"),
    "quality": ("houses_quality.csv", "quality", "classification"),
    "lecture": ("houses_lecture.csv", "price", "regression"),
}
# Examples whose rows hold given predictions to score (no fit): example -> the predictions column.
EXAMPLE_PREDICTIONS = {"lecture": "predicted"}
DEFAULT_LR = {"regression": 0.1, "classification": 0.5}  # on standardised features
DEFAULT_EPOCHS = 3000  # full-batch steps; tables here are tiny, and this converges to ~1e-6
MIN_ROWS = 2  # training rows a fit needs: through one row, any line (and any class rule) fits perfectly


def _one_row(path: Path, task: str) -> DataError:
    return DataError(f"{path}: one data row cannot be fitted meaningfully: {task} needs at least {MIN_ROWS} rows")


@dataclass
class Table:
    """Numeric features (N, D), the target column, and (for classification) the class names."""

    path: Path
    features: list[str]
    target: str
    x: np.ndarray
    y: np.ndarray  # float targets (regression) or class indices (classification)
    classes: tuple[str, ...] | None = None


def _number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        shown = cell if cell.strip() else "an empty cell"
        raise DataError(f"{path}, row {line}, column {column!r}: {shown!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, row {line}, column {column!r}: {cell!r} is not a finite number")
    return value


def read_table(path: str | os.PathLike, target: str, task: str, features: list[str] | None = None) -> Table:
    """Read a CSV with a header row; '#' lines are comments. Errors name the file and the row."""
    path = Path(path)
    if task not in TASKS:
        raise ConfigError(f"--task must be {' or '.join(TASKS)}, got {task!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(text.splitlines())
    for cells in reader:
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        rows.append((reader.line_num, [c.strip() for c in cells]))
    if not rows:
        raise DataError(f"{path}: empty CSV (no header row)")
    (_, header), body = rows[0], rows[1:]
    if target not in header:
        raise DataError(f"{path}: no column {target!r} (columns: {', '.join(header)})")
    if len(set(header)) != len(header):
        raise DataError(f"{path}, row {rows[0][0]}: duplicate column names in the header")
    names = features if features is not None else [c for c in header if c != target]
    missing = [c for c in names if c not in header]
    if missing or target in names:
        raise DataError(f"{path}: no feature column {(missing or [target])[0]!r} (columns: {', '.join(header)})")
    if not names:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    if not body:
        raise DataError(f"{path}: the CSV has a header but no data rows")
    cols = [header.index(c) for c in names]
    t = header.index(target)
    x = np.empty((len(body), len(names)))
    labels: list[str] = []
    for r, (line, cells) in enumerate(body):
        if len(cells) != len(header):
            raise DataError(f"{path}, row {line}: expected {len(header)} cells, got {len(cells)}")
        x[r] = [_number(cells[c], path, line, header[c]) for c in cols]
        if task == "regression":
            labels.append(str(_number(cells[t], path, line, target)))
        elif not cells[t]:
            raise DataError(f"{path}, row {line}, column {target!r}: empty class label")
        else:
            labels.append(cells[t])
    if task == "regression":
        return Table(path, names, target, x, np.array(labels, dtype=np.float64))
    if len(body) < MIN_ROWS:
        raise _one_row(path, task)
    classes = tuple(sorted(set(labels), key=_class_key))
    if len(classes) < 2:
        raise DataError(f"{path}: column {target!r} holds one class only ({classes[0]!r}); classification needs two or more")
    index = {c: i for i, c in enumerate(classes)}
    return Table(path, names, target, x, np.array([index[v] for v in labels], dtype=np.int64), classes)


def _class_key(label: str) -> tuple:
    # Numeric labels sort as numbers (2 before 10); others alphabetically, after them.
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def split_rows(table: Table, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices; stratified by class for classification. test_size 0: no test rows."""
    n = len(table.y)
    if test_size <= 0:
        return np.arange(n), np.arange(0)
    num_test = max(1, round(test_size * n))
    if n - num_test < MIN_ROWS:
        raise DataError(f"{table.path}: {n} data row{'s are' if n > 1 else ' is'} too few for --test-size {test_size:g}: "
                        f"{num_test} test row{'s' if num_test > 1 else ''} would leave {n - num_test} to fit, and a fit "
                        f"needs {MIN_ROWS} (use --test-size 0 to fit all rows)")
    from mnistlab.data.loader import stratified_split

    labels = table.y if table.classes is not None else np.zeros(n, dtype=np.int64)
    return stratified_split(labels, num_test, seed)


@dataclass
class Fit:
    """A fitted linear model in original units: scores = x @ coef + intercept."""

    task: str
    features: list[str]
    target: str
    coef: np.ndarray  # (D,) regression or binary; (D, K) softmax
    intercept: np.ndarray  # () or (K,)
    classes: tuple[str, ...] | None = None
    losses: list[float] = field(default_factory=list)  # training loss per epoch (standardised space)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Predictions (regression) or logits: (N,) for regression and binary, (N, K) for softmax."""
        return x @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Values (regression) or class indices (classification)."""
        s = self.scores(x)
        if self.task == "regression":
            return s
        return (s > 0).astype(np.int64) if s.ndim == 1 else s.argmax(axis=1)

    def equations(self) -> list[str]:
        """The fitted model written out in the original units, one line per output."""

        def line(lhs: str, coef: np.ndarray, intercept: float) -> str:
            terms = " ".join(f"{'-' if w < 0 else '+'} {abs(w):.4g} * {name}" for w, name in zip(coef, self.features))
            terms = terms[2:] if terms.startswith("+ ") else "-" + terms[1:]
            return f"{lhs} = {terms} {'-' if intercept < 0 else '+'} {abs(intercept):.4g}"

        if self.task == "regression":
            return [line(self.target, self.coef, float(self.intercept))]
        if self.coef.ndim == 1:
            return [line(f"logit P({self.target}={self.classes[1]})", self.coef, float(self.intercept))]
        return [line(f"score[{c}]", self.coef[:, k], float(self.intercept[k])) for k, c in enumerate(self.classes)]


def fit_table(x: np.ndarray, y: np.ndarray, task: str, classes: tuple[str, ...] | None = None,
              features: list[str] | None = None, target: str = "y",
              epochs: int = DEFAULT_EPOCHS, lr: float | None = None) -> Fit:
    """Standardise, fit by full-batch gradient descent, and return the weights in original units."""
    lr = DEFAULT_LR[task] if lr is None else lr
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant column stays as it is (its weight stays 0)
    z = (x - mean) / std
    n, d = z.shape
    losses: list[float] = []
    if task == "regression":
        # Standardise the target too: the same lr then works whatever the units of y.
        y_mean, y_std = y.mean(), (y.std() or 1.0)
        t = (y - y_mean) / y_std
        w, b = np.zeros(d), 0.0
        for _ in range(epochs):
            err = z @ w + b - t  # loss = mean(err^2) / 2, so d/dw = z^T err / n
            losses.append(float((err**2).mean() / 2))
            w -= lr * (z.T @ err) / n
            b -= lr * err.mean()
        coef = w * y_std / std  # undo both standardisations: y = y_mean + y_std * (w . (x - mean) / std + b)
        intercept = y_mean + y_std * b - coef @ mean
        return Fit(task, features or [f"x{i}" for i in range(d)], target, coef, np.asarray(intercept), None, losses)
    num_classes = len(classes) if classes else int(y.max()) + 1
    if num_classes == 2:
        w, b = np.zeros(d), 0.0
        for _ in range(epochs):
            s = z @ w + b
            p = 1.0 / (1.0 + np.exp(-s))
            losses.append(float(np.mean(np.logaddexp(0.0, s) - y * s)))  # binary cross entropy, stably
            dz = (p - y) / n  # sigmoid + BCE: d/ds = p - y
            w -= lr * (z.T @ dz)
            b -= lr * dz.sum()
    else:
        w, b = np.zeros((d, num_classes)), np.zeros(num_classes)
        onehot = np.eye(num_classes)[y]
        for _ in range(epochs):
            s = z @ w + b
            s = s - s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            losses.append(float(-np.log(p[np.arange(n), y] + 1e-300).mean()))
            dz = (p - onehot) / n  # softmax + CE: d/ds = p - onehot
            w -= lr * (z.T @ dz)
            b -= lr * dz.sum(axis=0)
    # scores = w . (x - mean) / std + b  ->  coef = w / std, intercept = b - (mean / std) . w
    coef = w / std[:, None] if w.ndim == 2 else w / std
    intercept = b - (mean / std) @ w
    return Fit(task, features or [f"x{i}" for i in range(d)], target, coef, np.asarray(intercept), classes, losses)


def score(fit: Fit, x: np.ndarray, y: np.ndarray, baseline: float | int) -> dict[str, float]:
    """MSE and R^2 (regression) or accuracy (classification), with the trivial baseline beside them."""
    if len(y) == 0:
        return {}
    pred = fit.predict(x)
    if fit.task == "regression":
        mse = float(((pred - y) ** 2).mean())
        total = float(((y - y.mean()) ** 2).mean())
        # R^2 compares the errors with the targets' own spread; rows that all hold one value have none,
        # so R^2 is undefined there (None, never NaN): `r2_undefined` says why.
        scores = {"mse": mse, "r2": 1 - mse / total if total > 0 else None,
                  "baseline_mse": float(((baseline - y) ** 2).mean())}
        if total <= 0:
            scores["r2_undefined"] = "a single row" if len(y) == 1 else f"all {len(y)} rows are {float(y[0]):.4g}"
        return scores
    return {"accuracy": float((pred == y).mean()), "baseline_accuracy": float((y == baseline).mean())}


def run_tabular(path: str | os.PathLike, target: str, task: str, test_size: float = 0.25, seed: int = 0,
                epochs: int = DEFAULT_EPOCHS, lr: float | None = None, features: list[str] | None = None) -> dict:
    """Read, split, fit and score: the whole `mnistlab tabular` computation, without printing."""
    if not 0 <= test_size < 1:
        raise ConfigError(f"--test-size is a fraction in [0, 1), got {test_size}")
    if epochs < 1 or (lr is not None and lr <= 0):
        raise ConfigError("--epochs and --lr must be positive")
    table = read_table(path, target, task, features)
    if len(table.y) < MIN_ROWS:
        raise _one_row(table.path, task)
    if task == "regression" and np.all(table.y == table.y[0]):
        raise DataError(f"{table.path}: column {target!r} holds the same value ({table.y[0]:.4g}) in all {len(table.y)} "
                        "rows: there is nothing to fit, and R^2 is undefined")
    train, test = split_rows(table, test_size, seed)
    if table.classes is not None:
        absent = [c for k, c in enumerate(table.classes) if not np.any(table.y[train] == k)]
        if absent:
            count = int(np.sum(table.y == table.classes.index(absent[0])))
            raise DataError(f"{table.path}: class {absent[0]!r} of column {target!r} has {count} row"
                            f"{'s' if count > 1 else ''}, and --test-size {test_size:g} puts {'them all' if count > 1 else 'it'} "
                            "in the test rows: the fit would never see it (add rows of it, or use --test-size 0)")
    fit = fit_table(table.x[train], table.y[train], task, table.classes, table.features, target, epochs, lr)
    # Baseline: the training mean (regression) or the most common training class.
    baseline = table.y[train].mean() if task == "regression" else int(np.bincount(table.y[train]).argmax())
    return {
        "table": table, "fit": fit, "train_idx": train, "test_idx": test,
        "train": score(fit, table.x[train], table.y[train], baseline),
        "test": score(fit, table.x[test], table.y[test], baseline),
    }


def score_predictions(path: str | os.PathLike, target: str, predicted: str) -> dict:
    """Score a column of given predictions against the target column: per-row error and squared error, and the MSE.

    Nothing is fitted; this is the lecture's table of predictions against prices, recomputed.
    """
    if predicted == target:
        raise ConfigError(f"--predicted {predicted!r} is the target column itself")
    table = read_table(path, target, "regression", [predicted])
    pred, y = table.x[:, 0], table.y
    errors = pred - y
    squared = errors ** 2
    rows = [{"row": i + 1, "actual": float(a), "predicted": float(b), "error": float(e), "squared_error": float(q)}
            for i, (a, b, e, q) in enumerate(zip(y, pred, errors, squared))]
    return {"table": table, "rows": rows, "mse": float(squared.mean()), "sum_squared": float(squared.sum())}


def plot_tabular(result: dict, path: str | os.PathLike) -> Path | None:
    """The fit line (one feature, regression), the decision boundary (two features, classification),
    the class probability (one feature, classification), or predicted vs actual; None if nothing fits."""
    from matplotlib.figure import Figure

    table, fit = result["table"], result["fit"]
    train, test = result["train_idx"], result["test_idx"]
    x, y = table.x, table.y
    d = x.shape[1]
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    if fit.task == "regression":
        if d == 1:
            ax.scatter(x[train, 0], y[train], label="train", color="tab:blue")
            ax.scatter(x[test, 0], y[test], label="test", color="tab:orange", marker="s")
            xs = np.linspace(x[:, 0].min(), x[:, 0].max(), 100)
            ax.plot(xs, fit.predict(xs[:, None]), color="black", label=fit.equations()[0])
            ax.set_xlabel(table.features[0])
            ax.set_ylabel(table.target)
        else:
            pred = fit.predict(x)
            ax.scatter(y[train], pred[train], label="train", color="tab:blue")
            ax.scatter(y[test], pred[test], label="test", color="tab:orange", marker="s")
            lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="perfect")
            ax.set_xlabel(f"actual {table.target}")
            ax.set_ylabel(f"predicted {table.target}")
    elif d == 2:
        pad = 0.08 * (x.max(axis=0) - x.min(axis=0) + 1e-12)
        g0 = np.linspace(x[:, 0].min() - pad[0], x[:, 0].max() + pad[0], 300)
        g1 = np.linspace(x[:, 1].min() - pad[1], x[:, 1].max() + pad[1], 300)
        mesh = np.stack(np.meshgrid(g0, g1), axis=-1).reshape(-1, 2)  # (300*300, 2)
        regions = fit.predict(mesh).reshape(len(g1), len(g0))
        k = len(fit.classes)
        ax.contourf(g0, g1, regions, levels=np.arange(k + 1) - 0.5, cmap="coolwarm", alpha=0.25)
        ax.contour(g0, g1, regions, levels=np.arange(k) + 0.5, colors="black", linewidths=1)
        for c, name in enumerate(fit.classes):
            for rows, marker, kind in ((train, "o", "train"), (test, "s", "test")):
                sel = rows[y[rows] == c]
                ax.scatter(x[sel, 0], x[sel, 1], marker=marker, color=f"C{c}", edgecolor="black",
                           label=f"{name} ({kind})" if len(sel) else None)
        ax.set_xlabel(table.features[0])
        ax.set_ylabel(table.features[1])
    elif d == 1 and fit.coef.ndim == 1:
        xs = np.linspace(x[:, 0].min(), x[:, 0].max(), 200)
        ax.plot(xs, 1 / (1 + np.exp(-fit.scores(xs[:, None]))), color="black", label=f"P({fit.classes[1]})")
        ax.scatter(x[train, 0], y[train], label="train", color="tab:blue")
        ax.scatter(x[test, 0], y[test], label="test", color="tab:orange", marker="s")
        ax.set_xlabel(table.features[0])
        ax.set_ylabel(f"{table.target} = {fit.classes[1]}")
    else:
        return None
    ax.set_title(f"{table.path.name}: {fit.task}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    from mnistlab.fileio import atomic_write_bytes

    out = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix[1:].lower() or "png", dpi=110)  # the format the name asks for, as before
    atomic_write_bytes(out, buf.getvalue())  # never a half-written plot (atomic_write_bytes makes the folder)
    return out
