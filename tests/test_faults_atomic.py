"""Fault battery, atomic writes: a crash mid-write leaves the old file whole and no temporary file.

Every artefact of a run (config.json, checkpoints, evaluation.json, PNGs, report.html) is written
through mnistlab.fileio (checked by spying on a real run); each writer then gets a failing rename,
a failing fsync (a full disk) and a Ctrl-C mid-write. metrics.jsonl is append-only: a torn last
line is skipped by its readers. Two runs with the same --name never overwrite each other:
tests/test_cli.py::test_same_name_never_overwrites (and the early check in test_faults_flags.py).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mnistlab.fileio
from mnistlab.cli import main
from mnistlab.config import Config


OLD = b"old content, must survive\n"


@pytest.fixture(scope="module")
def run_and_writes(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A tiny run with figures and a report, and every path written through fileio.atomic_open."""
    out = tmp_path_factory.mktemp("runs")
    # The figures are drawn in forked processes (reporting.parallel): the spy appends each path to a file,
    # so the children's writes are seen here too.
    log = tmp_path_factory.mktemp("spy") / "written.txt"
    real = mnistlab.fileio.atomic_open
    mp = pytest.MonkeyPatch()

    def spy(path, mode="wb"):
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{Path(path)}\n")
        return real(path, mode)

    mp.setattr(mnistlab.fileio, "atomic_open", spy)
    try:
        assert main(["train", "--dataset", "synthetic", "--model", "softmax", "--epochs", "1", "--val-size", "200",
                     "-q", "--threads", "1", "--out-dir", str(out), "--name", "r"]) == 0
        assert main(["report", str(out / "r")]) == 0
    finally:
        mp.undo()
    return out / "r", [Path(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_every_run_artefact_goes_through_fileio(run_and_writes):
    run, written = run_and_writes
    files = sorted(p.name for p in run.iterdir())
    for name in ("config.json", "last.safetensors", "best.safetensors", "evaluation.json", "curves.png",
                 "confusion.png", "predictions.png", "mistakes.png", "report.html"):
        assert name in files, files
    atomic = {p.name for p in written if p.parent == run}
    assert set(files) - atomic == {"metrics.jsonl"}  # the one append-only file, see below
    assert not [f for f in files if f.startswith(".")]  # no temporary file left


def _writers(tmp_path: Path, run: Path) -> dict:
    """name -> (target path, write()) for each kind of artefact."""
    from mnistlab.reporting import plots
    from mnistlab.runs.checkpoint import save_checkpoint
    from mnistlab.data.idx import write_idx
    from mnistlab.models import create_model
    from mnistlab.reporting.html import render_report
    from mnistlab.runs.rundir import RunDir

    model = create_model("softmax", 10, (1, 28, 28))
    run_copy = tmp_path / "runcopy"
    run_copy.mkdir()
    for name in ("config.json", "metrics.jsonl", "evaluation.json"):
        (run_copy / name).write_bytes((run / name).read_bytes())
    return {
        "config.json": (tmp_path / "config.json", lambda p: Config().save(p)),
        "checkpoint": (tmp_path / "last.safetensors", lambda p: save_checkpoint(
            p, model, Config(model="softmax"), tuple("0123456789"), (1, 28, 28), ((0.1,), (0.3,)))),
        "evaluation.json": (tmp_path / "evaluation.json", lambda p: mnistlab.fileio.atomic_write_json(p, {"accuracy": 1})),
        "figure PNG": (tmp_path / "bars.png", lambda p: plots.plot_bars(["a", "b"], [1.0, 2.0], p, "t", "y")),
        "report.html": (run_copy / "report.html", lambda p: render_report(run_copy, p)),
        "metrics.jsonl rewrite (resume)": (run_copy / "metrics.jsonl", lambda p: RunDir(run_copy).truncate_records(3)),
        "IDX file": (tmp_path / "x.gz", lambda p: write_idx(p, np.zeros((2, 2), np.uint8))),
        "predictions CSV": (tmp_path / "pred.csv", lambda p: mnistlab.fileio.atomic_write_text(p, "ImageId,Label\n")),
    }


def _fail_rename(*args, **kwargs):
    raise OSError(errno.EIO, "Input/output error (injected)")


def _disk_full(fd):
    raise OSError(errno.ENOSPC, "No space left on device (injected)")


def _ctrl_c(fd):
    raise KeyboardInterrupt


FAULTS = {"rename fails": ("replace", _fail_rename, OSError), "disk full at fsync": ("fsync", _disk_full, OSError),
          "Ctrl-C mid-write": ("fsync", _ctrl_c, KeyboardInterrupt)}
WRITERS = ["config.json", "checkpoint", "evaluation.json", "figure PNG", "report.html", "metrics.jsonl rewrite (resume)",
           "IDX file", "predictions CSV"]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("writer", WRITERS)
def test_crash_mid_write_keeps_the_old_file(run_and_writes, tmp_path, monkeypatch, writer, fault):
    run, _ = run_and_writes
    target, write = _writers(tmp_path, run)[writer]
    old = target.read_bytes() if target.exists() else OLD
    target.write_bytes(old)
    before = sorted(p.name for p in target.parent.iterdir())
    name, fake, error = FAULTS[fault]
    monkeypatch.setattr(mnistlab.fileio.os, name, fake)
    with pytest.raises(error):
        write(target)
    monkeypatch.undo()
    assert target.read_bytes() == old  # the old file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == before  # no temporary file left
    write(target)  # and once the fault is gone, the write goes through
    assert target.read_bytes() != old


def test_torn_last_metrics_line_is_skipped_by_every_reader(run_and_writes, tmp_path, capsys):
    from mnistlab.runs.rundir import RunDir

    run, _ = run_and_writes
    copy = tmp_path / "r"
    copy.mkdir()
    for p in run.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    good = RunDir(copy).records()
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "step": 99, "lo')  # a crash in the middle of an append
    assert RunDir(copy).records() == good
    assert main(["report", str(copy)]) == 0
    assert "1 unreadable line(s) in metrics.jsonl were skipped" in (copy / "report.html").read_text()
    RunDir(copy).truncate_records(10**9)  # what --resume does: the torn line goes, the rest stays
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [r for r in good if r["kind"] in ("step", "epoch")]


def test_checkpoint_written_during_interrupt_is_whole_or_absent(tmp_path, monkeypatch):
    """Ctrl-C while the very first checkpoint is written: no file at all rather than half of one."""
    from mnistlab.runs.checkpoint import save_checkpoint
    from mnistlab.models import create_model

    target = tmp_path / "last.safetensors"
    monkeypatch.setattr(mnistlab.fileio.os, "fsync", _ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, create_model("softmax"), Config(model="softmax"), tuple("0123456789"), (1, 28, 28),
                        ((0.1,), (0.3,)), optimizer=torch.optim.SGD(create_model("softmax").parameters(), lr=0.1))
    assert list(tmp_path.iterdir()) == []


NUM_WRITE_FAULTS = len(WRITERS) * len(FAULTS) + 2  # + torn metrics line, interrupted first checkpoint
