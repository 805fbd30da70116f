"""render_report on a fake run directory: numbers present, images embedded, text escaped, no links."""

from __future__ import annotations

import base64
import json
import re

import pytest
import torch

from mnistlab.evaluation import metrics

from mnistlab.reporting import plots
from mnistlab.errors import MnistlabError
from mnistlab.reporting.html import render_report

EVIL = "<script>alert('x')</script>"


@pytest.fixture
def run_dir(tmp_path, seeded):
    run = tmp_path / "run-001"
    run.mkdir()
    config = {"model": "cnn", "lr": 0.003, "epochs": 2, "note": EVIL,
              "mirror": "https://example.invalid/mnist"}
    (run / "config.json").write_text(json.dumps(config))
    lines = [
        {"kind": "step", "step": 10, "epoch": 0.5, "loss": 1.2, "acc": 0.61, "lr": 0.003},
        {"kind": "epoch", "epoch": 1, "step": 20, "train_loss": 0.9, "train_acc": 0.7,
         "val_loss": 0.8123, "val_acc": 0.7345, "time_s": 3.25},
        {"kind": "epoch", "epoch": 2, "step": 40, "train_loss": 0.5, "train_acc": 0.85,
         "val_loss": 0.4567, "val_acc": 0.8765, "time_s": 3.0},
        {"kind": "test", "test_loss": 0.4321, "test_acc": 0.9012},
    ]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n{\"kind\": \"st")
    plots.plot_training_curves(lines, run / "curves.png")
    plots.plot_bars(["a", "b"], [1, 2], run / "figures" / "bars.png", "bars", "value")
    logits = torch.randn(50, 3)
    y = torch.randint(0, 3, (50,))
    report = metrics.classification_report(logits, y, ["cat", "dog", EVIL], loss=0.75)
    (run / "evaluation.json").write_text(json.dumps(report))
    return run, report


def test_report_is_self_contained_with_numbers(run_dir):
    run, report = run_dir
    path = render_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for number in ("0.8765", "0.4567", "0.9012", "0.4321"):  # last validation and test numbers
        assert f"<td>{number}</td>" in page
    assert "<td class='key'>training time (s, sum of epochs)</td><td>6.25</td>" in page
    assert f"{report['accuracy']:.4f}" in page
    for row in report["per_class"]:
        assert f"{row['f1']:.4f}" in page
    for count in {v for r in report["confusion_matrix"] for v in r}:
        assert f">{count}</td>" in page
    assert "1 unreadable line" in page  # the half-written last line of metrics.jsonl

    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2  # curves.png and figures/bars.png
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page.lower()


def test_text_from_files_is_escaped(run_dir):
    run, _ = run_dir
    page = render_report(run, run / "out" / "r.html").read_text(encoding="utf-8")
    assert EVIL not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not (run / "report.html").exists()


def test_minimal_run_dir_and_not_a_run_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "linear"}))
    page = render_report(tmp_path).read_text(encoding="utf-8")
    assert "no metrics recorded" in page and "linear" in page

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MnistlabError, match=r"empty: not a run directory \(no config.json\)"):
        render_report(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(MnistlabError, match="config.json: cannot read JSON"):
        render_report(empty)


# ---------------------------------------------------------------------------- the one HTML writer


def test_writer_blocks_escape_every_text(tmp_path):
    from mnistlab.reporting import html as page

    png = b"\x89PNG fake"
    (tmp_path / "a.png").write_bytes(png)
    text = page.render_page(EVIL, [
        page.heading(EVIL), page.note(EVIL), page.note(EVIL, "rough"), page.details(EVIL, EVIL),
        page.table([[page.cell(EVIL, "key", header=True), EVIL],
                    [page.cell(1.5, "num", style="color: red"), page.cell(EVIL, "diag")]], "cm"),
        page.figure(tmp_path / "a.png", EVIL),
    ])
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</body></html>\n")
    assert EVIL not in text and "<script" not in text.lower()
    assert text.count("&lt;script&gt;") == 12  # title, h1, h2, 2 notes, summary, pre, 3 cells, alt, caption
    assert f"<style>{page.STYLESHEET}</style>" in text and text.count("<style>") == 1
    assert ("<table class='cm'><tr><th class='key'>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</th>"
            "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</td></tr>"
            "<tr><td class='num' style='color: red'>1.5</td>") in text
    assert f"src='data:image/png;base64,{base64.b64encode(png).decode()}'" in text


def test_run_report_and_lesson_page_share_the_writer(run_dir, tmp_path):
    from mnistlab.lessons.experiments.common import Result, render_html
    from mnistlab.reporting import html as page

    run, _ = run_dir
    report = render_report(run).read_text(encoding="utf-8")
    lesson = render_html(Result("demo", "a lesson", {"t": [{"name": EVIL, "test_acc": 0.5}]}, notes=[EVIL]), tmp_path)
    for text in (report, lesson):
        assert f"<style>{page.STYLESHEET}</style>" in text and EVIL not in text
    assert "<td class='text'>&lt;script&gt;" in lesson and "<td class='num'>50.00%</td>" in lesson


def test_reporting_does_not_import_the_lessons():
    import ast
    from pathlib import Path

    import mnistlab.reporting

    for path in Path(mnistlab.reporting.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith(("mnistlab.lessons", "mnistlab.cli", "mnistlab.runs")) for n in names), path
