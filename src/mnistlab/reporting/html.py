"""One self-contained HTML page per run: config, final numbers, per-class table, confusion matrix
and every figure, with images embedded as data URIs and no external resources.

Everything read from the run directory is escaped with `html.escape` before it reaches the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.fileio import atomic_write_text

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.key, th.key { text-align: left; font-family: monospace; }
table.cm td { min-width: 2.5em; } table.cm td.diag { font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-family: monospace; color: #555; }
.note { color: #777; }
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape(str(value), quote=True)


def _num(value: Any, spec: str = ".4f") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e("n/a" if value is None else value)
    if isinstance(value, float) and not math.isfinite(value):
        return _e(value)
    return _e(format(value, spec) if isinstance(value, float) else value)


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


def _table(rows: list[tuple[str, str]], header: tuple[str, str] | None = None) -> str:
    """Two-column key/value table; both cells must already be escaped."""
    head = f"<tr><th class='key'>{header[0]}</th><th>{header[1]}</th></tr>" if header else ""
    body = "".join(f"<tr><td class='key'>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{head}{body}</table>"


def _config_section(config: Any) -> str:
    if not isinstance(config, dict):
        return f"<pre>{_e(json.dumps(config, indent=2))}</pre>"
    rows = [(_e(k), _e(v if isinstance(v, str) else json.dumps(v))) for k, v in config.items()]
    return _table(rows, ("field", "value"))


def _final_numbers(records: list[dict], evaluation: dict | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if epochs:
        last = epochs[-1]
        for key in ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc"):
            if key in last:
                rows.append((_e(f"last epoch: {key}"), _num(last[key])))
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
                    rows.append((_e(key), _num(r[key])))
    if evaluation:
        for key in ("num_samples", "accuracy", "loss", "nll", "perplexity", "uniform_perplexity"):
            if key in evaluation:
                rows.append((_e(f"evaluation: {key}"), _num(evaluation[key])))
        for key, value in (evaluation.get("topk") or {}).items():
            rows.append((_e(f"evaluation: {key} accuracy"), _num(value)))
    return rows


def _per_class_section(evaluation: dict) -> str:
    rows = evaluation.get("per_class") or []
    if not rows:
        return ""
    out = ["<table><tr><th class='key'>class</th><th>precision</th><th>recall</th><th>F1</th>"
           "<th>support</th></tr>"]
    for row in rows:
        out.append(f"<tr><td class='key'>{_e(row.get('name'))}</td><td>{_num(row.get('precision'))}</td>"
                   f"<td>{_num(row.get('recall'))}</td><td>{_num(row.get('f1'))}</td>"
                   f"<td>{_num(row.get('support'))}</td></tr>")
    macro = evaluation.get("macro")
    if isinstance(macro, dict):
        out.append(f"<tr><th class='key'>macro avg</th><th>{_num(macro.get('precision'))}</th>"
                   f"<th>{_num(macro.get('recall'))}</th><th>{_num(macro.get('f1'))}</th><th></th></tr>")
    out.append("</table>")
    return "".join(out)


def _confusion_section(evaluation: dict) -> str:
    cm = evaluation.get("confusion_matrix")
    if not cm:
        return ""
    names = evaluation.get("class_names") or [str(i) for i in range(len(cm))]
    out = ["<p class='note'>rows: true class, columns: predicted class; shading is the fraction of "
           "the row.</p><table class='cm'><tr><th class='key'>true \\ pred</th>"]
    out += [f"<th>{_e(n)}</th>" for n in names]
    out.append("</tr>")
    for i, counts in enumerate(cm):
        total = sum(counts) or 1
        out.append(f"<tr><th class='key'>{_e(names[i] if i < len(names) else i)}</th>")
        for j, count in enumerate(counts):
            alpha = float(count) / total
            style = f"background: rgba(31, 119, 180, {alpha:.3f});" + (" color: white;" if alpha > 0.6 else "")
            cls = " class='diag'" if i == j else ""
            out.append(f"<td{cls} style='{style}'>{_num(count)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _figures(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("*.png")) + sorted((run_dir / "figures").glob("*.png"))


def _figure_html(path: Path, run_dir: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = path.relative_to(run_dir).as_posix()
    return (f"<figure><img alt='{_e(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(name)}</figcaption></figure>")


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

    title = f"mnistlab run: {run_dir.resolve().name}"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>"]

    parts.append("<h2>Results</h2>")
    numbers = _final_numbers(records, evaluation)
    if numbers:
        parts.append(_table(numbers, ("metric", "value")))
    else:
        parts.append("<p class='note'>no metrics recorded (metrics.jsonl missing or empty).</p>")
    if skipped:
        parts.append(f"<p class='note'>{skipped} unreadable line(s) in metrics.jsonl were skipped.</p>")

    if evaluation:
        parts += ["<h2>Per-class results</h2>", _per_class_section(evaluation),
                  "<h2>Confusion matrix</h2>", _confusion_section(evaluation)]

    figures = _figures(run_dir)
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure_html(p, run_dir) for p in figures]

    parts += ["<h2>Configuration</h2>", _config_section(config), "</body></html>\n"]

    out = Path(out_path) if out_path is not None else run_dir / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out
