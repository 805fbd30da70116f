"""What every experiment shares: options, the lectures' settings, training a variant, and the outputs.

An experiment returns a `Result` (tables as lists of dicts, figure file names, notes); it never
prints. `write_outputs` turns a Result into results.json and one self-contained report.html.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from mnistlab.config import Config
from mnistlab.data.loader import DataBundle, Split
from mnistlab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from mnistlab.reporting import html as page
from mnistlab.training.trainer import History, resolve_device

# The lectures' optimiser: plain SGD, lr 0.01, momentum 0.5, batch 64, constant lr, no weight decay,
# plain cross entropy. Every optimiser, schedule and loss setting is named (Adam's betas and the
# step schedule's too, for the lessons that switch to them), so that a change of Config's defaults,
# which are tuned for default `mnistlab train`, changes no lesson's numbers.
LECTURE: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "nesterov": False, "batch_size": 64,
    "schedule": "constant", "warmup": 0.0, "weight_decay": 0.0, "loss": "ce", "label_smoothing": 0.0,
    "betas": [0.9, 0.999], "grad_clip": 0.0, "step_every": 1.0, "gamma": 0.1,
}
QUICK_TRAIN_SIZE = 2000  # training images in --quick mode
QUICK_VAL_SIZE = 500  # validation images in --quick mode
QUICK_TEST_SIZE = 1000  # test images in --quick mode (the first ones of the test split)
LECTURE_TABLE = "lecture vs mnistlab"  # the table each lesson fills with lecture_row(); `experiment all` collects it
ROUGH_NOTE = "--quick: a subset of the data and few steps; the numbers are rough, rerun without --quick for the real ones"


@dataclass
class Options:
    """How to run an experiment: where its files go, how long it trains, on what."""

    out_dir: Path
    quick: bool = False  # seconds instead of minutes: a data subset and few steps
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads (None: torch's choice)
    epochs: float | None = None  # override the experiment's own number of epochs
    tensorboard: Path | None = None  # a folder for this lesson's TensorBoard logs, one run per arm (None: none)
    lecture: bool = False  # depth: only the lecture's 9-layer net, over `seeds` (the plateau race)
    seeds: tuple[int, ...] | None = None  # depth --lecture: the seeds to run (None: the lesson's own)
    progress: Any = None  # optional progress(line) for long lessons (the CLI prints it; lessons never print)

    def epochs_for(self, default: float, quick: float) -> float:
        """The epochs to train: --epochs when given, else the quick or the default count."""
        if self.epochs is not None:
            return self.epochs
        return quick if self.quick else default

    def arm_log(self, arm: str) -> Path | None:
        """The TensorBoard log folder of the arm (variant) called `arm`: <tensorboard>/<arm>, or
        <arm>-2, ... if that one holds a log already; None without --tensorboard."""
        if self.tensorboard is None:
            return None
        from mnistlab.reporting.tensorboard import fresh_log_dir, safe_run_name

        return fresh_log_dir(Path(self.tensorboard) / safe_run_name(arm))


@dataclass
class Result:
    """What an experiment found: named tables (lists of row dicts), figure files and notes."""

    name: str
    title: str
    tables: dict[str, list[dict[str, Any]]]
    figures: list[str] = field(default_factory=list)  # file names inside the output folder
    notes: list[str] = field(default_factory=list)
    quick: bool = False
    configs: dict[str, dict] = field(default_factory=dict)  # variant -> Config.to_dict(), to rerun it
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)  # every file written, figures included

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what results.json holds)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in results.json")


# ----------------------------------------------------------------------------- the lecture beside us


def lecture_row(quantity: str, lecture: str, lecture_setting: str, ours: str, our_setting: str) -> dict[str, str]:
    """One row of the LECTURE_TABLE: the lecture's number and setting beside ours (all already formatted)."""
    return {"quantity": quantity, "lecture": lecture, "lecture_setting": lecture_setting, "mnistlab": ours,
            "mnistlab_setting": our_setting}


def pct(fraction: float, digits: int = 2) -> str:
    """0.9644 -> '96.44%'."""
    return f"{100 * fraction:.{digits}f}%"


# ----------------------------------------------------------------------------- configs, data, training


def make_config(opts: Options, **fields: Any) -> Config:
    """A Config with the lectures' SGD, this run's seed/device/threads, and no run directory."""
    base = {**LECTURE, "seed": opts.seed, "device": opts.device, "threads": opts.threads,
            "save_run": False, "figures": False}
    if opts.quick:
        base.update(train_size=QUICK_TRAIN_SIZE, val_size=QUICK_VAL_SIZE, log_every=5)
    if fields.get("optimizer", "sgd") != "sgd":  # momentum is SGD's: another optimiser would ignore it (refused)
        base = {k: v for k, v in base.items() if k not in ("momentum", "nesterov")}
    return Config.from_dict({**base, **fields})


def load(opts: Options, cfg: Config) -> DataBundle:
    """The data a config names, on its device; --quick keeps only the first test images."""
    from mnistlab.runs.session import check_names, load_data

    check_names(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_data(cfg, resolve_device(cfg.device))
    return first_test_images(data, QUICK_TEST_SIZE) if opts.quick else data


def first_test_images(data: DataBundle, n: int) -> DataBundle:
    """The same bundle with only the first `n` test images (for fast, rough evaluations)."""
    test = Split(data.test.x[:n], data.test.y[:n])
    images = None if data.test_images is None else data.test_images[:n]
    return dataclasses.replace(data, test=test, test_images=images)


@dataclass
class Trained:
    """One trained variant: its config, model, history and the logged step and epoch records."""

    cfg: Config
    model: torch.nn.Module
    history: History
    steps: list[dict]
    epochs: list[dict]
    session: Any

    @property
    def test_preds(self) -> torch.Tensor:
        from mnistlab.training.losses import as_class_logits

        return as_class_logits(self.history.test.logits).argmax(1)


def train(cfg: Config, data: DataBundle, prepare: Any = None, tensorboard: Path | None = None,
          test_every_epoch: bool = False) -> Trained:
    """Train `cfg` on `data` (no run directory), recording every logged step and epoch.

    Args:
        prepare: optional `prepare(model)` called before training (e.g. a deliberately poor init).
        tensorboard: the arm's TensorBoard log folder (Options.arm_log), or None.
        test_every_epoch: also evaluate the test split at the end of every epoch: each epoch record
            gains "test_acc" and "test_correct" (images right). Evaluation draws no random numbers,
            so the training run is the same with or without it.
    """
    from mnistlab.runs.session import TrainSession

    session = TrainSession.start(cfg, data=data)
    if prepare is not None:
        prepare(session.model)
    steps: list[dict] = []
    epochs: list[dict] = []

    def epoch_end(record: dict) -> None:
        if test_every_epoch:
            test = session.trainer.evaluate(data.test)
            record = {**record, "test_acc": test.acc, "test_correct": round(test.acc * len(data.test))}
        epochs.append(record)

    history = session.fit(on_log=steps.append, on_epoch_end=epoch_end, tensorboard=tensorboard)
    return Trained(cfg, session.model, history, steps, epochs, session)


def predicted_class_share(preds: torch.Tensor) -> tuple[float, int]:
    """(share of the most frequent predicted class, number of distinct predicted classes)."""
    counts = torch.bincount(preds)
    return float(counts.max()) / max(1, len(preds)), int((counts > 0).sum())


# ----------------------------------------------------------------------------- figures


def save_figure(fig: Any, path: Path) -> Path:
    """Render a matplotlib Figure to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_step_curves(runs: dict[str, Trained], path: Path, title: str) -> Path:
    """Training loss and accuracy against iterations for several variants, validation as markers."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(12, 4.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (name, run) in enumerate(runs.items()):
        color = f"C{i % 10}"
        if run.steps:
            xs = [r["step"] for r in run.steps]
            ax_loss.plot(xs, [r["loss"] for r in run.steps], lw=1, color=color, label=f"{name} (training)")
            ax_acc.plot(xs, [r["acc"] for r in run.steps], lw=1, color=color, label=f"{name} (training)")
        val = [(r["step"], r["val_acc"]) for r in run.epochs if r.get("val_acc") is not None]
        if val:
            ax_acc.plot(*zip(*val), "o--", ms=5, color=color, label=f"{name} (validation)")
    ax_loss.set_title("training loss")
    ax_loss.set_xlabel("iteration (optimizer steps)")
    ax_loss.set_ylabel(f"loss ({_loss_name(runs)})")
    ax_acc.set_title("accuracy")
    ax_acc.set_xlabel("iteration (optimizer steps)")
    ax_acc.set_ylabel("accuracy (% of images)")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def _loss_name(runs: dict[str, Trained]) -> str:
    losses = {run.cfg.loss for run in runs.values()}
    names = {"ce": "cross-entropy, nats", "nll": "NLL, nats", "mse": "MSE", "bce": "binary cross-entropy, nats"}
    return ", ".join(names[n] for n in sorted(losses)) if len(losses) > 1 else names[losses.pop()]


# ----------------------------------------------------------------------------- tables


def format_value(key: str, value: Any) -> str:
    """One cell: accuracies (keys with 'acc' or 'share') as percentages, floats to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if "acc" in key or "share" in key:
            return f"{100 * value:.2f}%"
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(key, v) for v in value) + "]"
    return str(value)


def columns(rows: Sequence[dict]) -> list[str]:
    """Every key of every row, in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return keys


def format_table(rows: Sequence[dict]) -> list[str]:
    """A fixed-width text table (header, rule, rows); text columns left-aligned, numbers right-aligned."""
    if not rows:
        return ["(no rows)"]
    keys = columns(rows)
    cells = [[format_value(k, row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    numeric = [all(isinstance(row.get(k), (int, float)) or row.get(k) is None for row in rows) for k in keys]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return [line(keys), "  ".join("-" * w for w in widths), *(line(c) for c in cells)]


# ----------------------------------------------------------------------------- outputs


def table_html(rows: Sequence[dict]) -> str:
    """An escaped HTML table of row dicts, cells formatted as in the terminal."""
    if not rows:
        return page.note("(no rows)")
    keys = columns(rows)
    cls = {k: "num" if all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows) else "text"
           for k in keys}
    return page.table([[page.cell(k, cls[k], header=True) for k in keys],
                       *([page.cell(format_value(k, r.get(k)), cls[k]) for k in keys] for r in rows)])


def render_html(result: Result, out_dir: Path) -> str:
    """One self-contained page: notes, every table, every figure (as a data URI) and the configs."""
    return page.render_page(f"mnistlab experiment {result.name}: {result.title}", result_sections(result, out_dir))


def result_sections(result: Result, out_dir: Path, level: int = 2) -> list[str]:
    """The blocks of one experiment's page (headings at `level`), for its own page or the `all` page."""
    sections = [page.note(ROUGH_NOTE, "rough")] if result.quick else []
    sections += [page.note(n) for n in result.notes]
    sections.append(page.note(f"finished in {result.seconds:.1f} s"))
    for name, rows in result.tables.items():
        sections += [page.heading(name, level), table_html(rows)]
    if result.figures:
        sections.append(page.heading("Figures", level))
    sections += [page.figure(out_dir / name, name) for name in result.figures if (out_dir / name).is_file()]
    if result.configs:
        sections.append(page.heading("Configurations", level))
        sections += [page.details(name, json.dumps(cfg, indent=2)) for name, cfg in result.configs.items()]
    return sections


def write_outputs(result: Result, out_dir: Path) -> None:
    """results.json and report.html in `out_dir`; `result.files` lists everything written."""
    result.files = [*result.figures, "results.json", "report.html"]
    atomic_write_json(out_dir / "results.json", result.to_dict())
    atomic_write_text(out_dir / "report.html", render_html(result, out_dir))
