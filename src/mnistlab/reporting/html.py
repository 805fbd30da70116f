"""The one HTML writer and its stylesheet, and the run report built with it.

`render_page(title, sections)` makes one self-contained page (the stylesheet inline, figures as data
URIs, no external resources) from blocks made here: `heading`, `note`, `table` of `cell`s, `figure`,
`preformatted`, `details`. Every text a block is given is escaped with `html.escape` on the way in,
so nothing read from a run directory or a lesson's result can inject markup.

Two pages use it: `render_report` below (`mnistlab report RUN`: config, final numbers, per-class
table, confusion matrix and every figure of a run directory), and the lessons' report.html
(`mnistlab.lessons.experiments.common.render_html`).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from mnistlab.errors import MnistlabError
from mnistlab.fileio import atomic_write_text

STYLESHEET = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
td.text, th.text { text-align: left; } td.key, th.key { text-align: left; font-family: monospace; }
table.cm td { min-width: 2.5em; } table.cm td.diag { font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-family: monospace; color: #555; } .note { color: #555; } .rough { color: #b00; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
"""


# ----------------------------------------------------------------------------- the writer


def escape(value: Any) -> str:
    """Any value as text that is safe in HTML text and attribute context."""
    return html.escape(str(value), quote=True)


class Cell(NamedTuple):
    """One table cell: its text (escaped when rendered), CSS class, header flag and inline style."""

    text: Any
    cls: str | None = None
    header: bool = False
    style: str | None = None


def cell(text: Any, cls: str | None = None, *, header: bool = False, style: str | None = None) -> Cell:
    """A table cell; `header=True` makes it a <th>."""
    return Cell(text, cls, header, style)


def _cell_html(c: Cell | Any) -> str:
    if not isinstance(c, Cell):
        c = Cell(c)
    tag = "th" if c.header else "td"
    cls = f" class='{escape(c.cls)}'" if c.cls else ""
    style = f" style='{escape(c.style)}'" if c.style else ""
    return f"<{tag}{cls}{style}>{escape(c.text)}</{tag}>"


def table(rows: Iterable[Sequence[Cell | Any]], cls: str | None = None) -> str:
    """A table from rows of cells (a plain value is a <td> holding its text)."""
    attr = f" class='{escape(cls)}'" if cls else ""
    body = "".join("<tr>" + "".join(_cell_html(c) for c in row) + "</tr>" for row in rows)
    return f"<table{attr}>{body}</table>"


def heading(text: Any, level: int = 2) -> str:
    """A section heading (<h2> by default; the page title is the <h1>)."""
    return f"<h{level}>{escape(text)}</h{level}>"


def note(text: Any, cls: str = "note") -> str:
    """A paragraph of grey explanatory text (`cls='rough'` for a warning in red)."""
    return f"<p class='{escape(cls)}'>{escape(text)}</p>"


def preformatted(text: Any) -> str:
    """Text shown as is, in a monospace block."""
    return f"<pre>{escape(text)}</pre>"


def details(summary: Any, text: Any) -> str:
    """A folded block: `summary` shown, `text` preformatted inside."""
    return f"<details><summary>{escape(summary)}</summary>{preformatted(text)}</details>"


def figure(path: str | os.PathLike, caption: Any) -> str:
    """A PNG file embedded as a data URI, with its caption (also its alt text)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def render_page(title: Any, sections: Iterable[str]) -> str:
    """One self-contained page: the title as <title> and <h1>, then the blocks in order."""
    return "\n".join(["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
                      f"<title>{escape(title)}</title><style>{STYLESHEET}</style></head><body>",
                      f"<h1>{escape(title)}</h1>", *sections, "</body></html>\n"])


def write_page(path: str | os.PathLike, title: Any, sections: Iterable[str]) -> Path:
    """`render_page` written atomically to `path`; returns the path."""
    path = Path(path)
    atomic_write_text(path, render_page(title, sections))
    return path


# ----------------------------------------------------------------------------- the run report


def _num(value: Any, spec: str = ".4f") -> str:
    """A number as report text (floats to `spec`, ints as is, None as n/a); anything else as str."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec) if isinstance(value, float) else str(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MnistlabError(f"{path}: cannot read JSON ({exc})") from exc


def _read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The JSON object lines of `path` and the count of lines skipped (e.g. a half-written last line)."""
    records, skipped = [], 0
    if not path.is_file():
        return records, skipped
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def _key_value_table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    """Two-column table: keys left-aligned in monospace, values right-aligned."""
    return table([(cell(header[0], "key", header=True), cell(header[1], header=True)),
                  *((cell(k, "key"), cell(v)) for k, v in rows)])


def _config_section(config: Any) -> str:
    if not isinstance(config, dict):
        return preformatted(json.dumps(config, indent=2))
    rows = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()]
    return _key_value_table(rows, ("field", "value"))


def _final_numbers(records: list[dict], evaluation: dict | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if epochs:
        last = epochs[-1]
        for key in ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc"):
            if key in last:
                rows.append((f"last epoch: {key}", _num(last[key])))
        val_accs = [r["val_acc"] for r in epochs if isinstance(r.get("val_acc"), (int, float))]
        if val_accs:
            rows.append(("best val_acc", _num(max(val_accs))))
        times = [r["time_s"] for r in epochs if isinstance(r.get("time_s"), (int, float))]
        if times:
            rows.append(("training time (s, sum of epochs)", _num(sum(times), ".2f")))
    for r in records:
        if r.get("kind") == "test":
            for key in ("test_loss", "test_acc"):
                if key in r:
                    rows.append((key, _num(r[key])))
    if evaluation:
        for key in ("num_samples", "accuracy", "loss", "nll", "perplexity", "uniform_perplexity"):
            if key in evaluation:
                rows.append((f"evaluation: {key}", _num(evaluation[key])))
        for key, value in (evaluation.get("topk") or {}).items():
            rows.append((f"evaluation: {key} accuracy", _num(value)))
    return rows


def _per_class_section(evaluation: dict) -> str:
    per_class = evaluation.get("per_class") or []
    if not per_class:
        return ""
    rows = [[cell("class", "key", header=True), *(cell(h, header=True) for h in ("precision", "recall", "F1", "support"))]]
    for row in per_class:
        rows.append([cell(row.get("name"), "key"),
                     *(cell(_num(row.get(k))) for k in ("precision", "recall", "f1", "support"))])
    macro = evaluation.get("macro")
    if isinstance(macro, dict):
        rows.append([cell("macro avg", "key", header=True),
                     *(cell(_num(macro.get(k)), header=True) for k in ("precision", "recall", "f1")), cell("", header=True)])
    return table(rows)


def _confusion_section(evaluation: dict) -> str:
    cm = evaluation.get("confusion_matrix")
    if not cm:
        return ""
    names = evaluation.get("class_names") or [str(i) for i in range(len(cm))]
    rows = [[cell("true \\ pred", "key", header=True), *(cell(n, header=True) for n in names)]]
    for i, counts in enumerate(cm):
        total = sum(counts) or 1
        row = [cell(names[i] if i < len(names) else i, "key", header=True)]
        for j, count in enumerate(counts):
            alpha = float(count) / total
            style = f"background: rgba(31, 119, 180, {alpha:.3f});" + (" color: white;" if alpha > 0.6 else "")
            row.append(cell(_num(count), "diag" if i == j else None, style=style))
        rows.append(row)
    return (note("rows: true class, columns: predicted class; shading is the fraction of the row.")
            + table(rows, "cm"))


def _figures(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("*.png")) + sorted((run_dir / "figures").glob("*.png"))


def render_report(run_dir: str | os.PathLike, out_path: str | os.PathLike | None = None) -> Path:
    """Write one self-contained HTML page for a run directory and return its path.

    Reads config.json (required), metrics.jsonl, evaluation.json (the dict from
    `metrics.classification_report`) and every *.png in the run directory and its figures/ folder.

    Args:
        out_path: where to write; default run_dir/report.html.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise MnistlabError(f"{run_dir}: not a run directory (no config.json)")
    config = _read_json(run_dir / "config.json")
    records, skipped = _read_jsonl(run_dir / "metrics.jsonl")
    evaluation = _read_json(run_dir / "evaluation.json") if (run_dir / "evaluation.json").is_file() else None
    if evaluation is not None and not isinstance(evaluation, dict):
        raise MnistlabError(f"{run_dir / 'evaluation.json'}: expected a JSON object")

    sections = [heading("Results")]
    numbers = _final_numbers(records, evaluation)
    if numbers:
        sections.append(_key_value_table(numbers, ("metric", "value")))
    else:
        sections.append(note("no metrics recorded (metrics.jsonl missing or empty)."))
    if skipped:
        sections.append(note(f"{skipped} unreadable line(s) in metrics.jsonl were skipped."))

    if evaluation:
        sections += [heading("Per-class results"), _per_class_section(evaluation),
                     heading("Confusion matrix"), _confusion_section(evaluation)]

    figures = _figures(run_dir)
    if figures:
        sections.append(heading("Figures"))
        sections += [figure(p, p.relative_to(run_dir).as_posix()) for p in figures]

    sections += [heading("Configuration"), _config_section(config)]
    out = Path(out_path) if out_path is not None else run_dir / "report.html"
    return write_page(out, f"mnistlab run: {run_dir.resolve().name}", sections)
