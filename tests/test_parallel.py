"""reporting.parallel.render_all: forked and in-process drawing write the same files; a failure is one clear
FigureError after every other figure is written, and leaves no partial file; a run's write_artifacts draws
its four figures through it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab.errors import FigureError
from mnistlab.fileio import atomic_open
from mnistlab.reporting import parallel, plots

forking = pytest.mark.skipif(not parallel.fork_available(), reason="render_all forks only on Linux")


def _write_pid(path: Path) -> None:
    """A job that records which process ran it."""
    path.write_text(str(os.getpid()))


def _fail(path: Path) -> None:
    raise ValueError("bad data\nsecond line")


def _half_write(path: Path) -> None:
    """A writer that dies half way through its atomic write."""
    with atomic_open(path) as f:
        f.write(b"half a PNG")
        raise OSError("disk full (injected)")


def _jobs(folder: Path) -> list:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(9, 28, 28), dtype=np.uint8)
    return [
        (plots.plot_bars, (["a", "b"], [1.0, 2.0], folder / "bars.png", "t", "y"), {}),
        (plots.plot_prediction_grid, (images, np.arange(9) % 10, np.full(9, 0.7), folder / "grid.png"),
         {"labels": np.zeros(9, int)}),
        (plots.plot_confusion_matrix, (np.eye(3, dtype=int) * 5 + 1, None, folder / "cm.png"), {}),
        (plots.plot_series, ([1, 2, 3], {"x": [3.0, 2.0, 1.0]}, folder / "s.png", "t", "x", "y"), {}),
    ]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


@forking
def test_forked_and_sequential_drawing_write_the_same_files(tmp_path):
    forked, here = tmp_path / "forked", tmp_path / "here"
    parallel.render_all(_jobs(forked) + [(_write_pid, (forked / "a.pid",), {}), (_write_pid, (forked / "b.pid",), {})],
                        workers=2)
    parallel.render_all(_jobs(here) + [(_write_pid, (here / "a.pid",), {})], workers=1)
    assert set(_files(forked)) == {"bars.png", "grid.png", "cm.png", "s.png"}
    assert _files(forked) == _files(here)  # byte for byte
    pids = {int((forked / f"{k}.pid").read_text()) for k in "ab"}
    assert len(pids) == 2 and os.getpid() not in pids  # two children drew them
    assert int((here / "a.pid").read_text()) == os.getpid()


@pytest.mark.parametrize("workers", [pytest.param(2, marks=forking), 1])
def test_a_failing_figure_is_one_clear_error_after_the_others_are_written(tmp_path, workers):
    jobs = _jobs(tmp_path)
    jobs.insert(1, (_fail, (tmp_path / "broken.png",), {}))
    jobs.insert(3, (_half_write, (tmp_path / "half.png",), {}))
    with pytest.raises(FigureError) as info:
        parallel.render_all(jobs, workers=workers)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"drawing _fail ({tmp_path / 'broken.png'}) failed: ValueError: bad data second line")
    assert message.endswith("(and 1 more)")  # the half-written one
    assert set(_files(tmp_path)) == {"bars.png", "grid.png", "cm.png", "s.png"}  # the others are all there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "cm.png", "grid.png", "s.png"]  # no temp file


@forking
def test_a_drawing_process_that_dies_is_reported(tmp_path):
    kill = (os.kill, (0, 0), {})  # harmless: signal 0 to our own process group
    jobs = [(plots.plot_bars, (["a"], [1.0], tmp_path / "ok.png", "t", "y"), {}), kill,
            kill, (lambda: os.kill(os.getpid(), signal.SIGKILL), (), {})]
    with pytest.raises(FigureError, match=r"^the process drawing kill, <lambda> was killed by signal 9$"):
        parallel.render_all(jobs, workers=2)
    assert (tmp_path / "ok.png").is_file()


def test_tensors_are_refused_before_anything_is_drawn(tmp_path):
    with pytest.raises(TypeError, match="torch Tensor; pass numpy arrays"):
        parallel.render_all([(plots.plot_bars, (["a"], [1.0], tmp_path / "a.png", "t", "y"), {}),
                             (plots.plot_confusion_matrix, (torch.eye(2), None, tmp_path / "cm.png"), {})])
    assert list(tmp_path.iterdir()) == []
    parallel.render_all([], workers=2)  # nothing to draw: nothing happens


# ---------------------------------------------------------------------------- a run's figures


def _run_folder(tmp_path: Path, records: list[dict]):
    from mnistlab.runs.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def _logits(bundle) -> torch.Tensor:
    """Logits right for about 80% of the test images, so there are mistakes to show."""
    g = torch.Generator().manual_seed(0)
    y = bundle.test.y
    guess = torch.where(torch.rand(len(y), generator=g) < 0.8, y, torch.randint(0, 10, (len(y),), generator=g))
    return torch.nn.functional.one_hot(guess, 10).float() * 4 + torch.randn(len(y), 10, generator=g)


@pytest.mark.parametrize("workers", [2, 1])
def test_write_artifacts_writes_evaluation_and_the_four_figures(tmp_path, synthetic_bundle, workers, monkeypatch):
    from mnistlab.config import Config
    from mnistlab.runs import session

    monkeypatch.setattr(session, "FIGURE_WORKERS", workers)
    records = [{"kind": "step", "step": s, "epoch": s / 10, "loss": 2.0 / s, "acc": 1 - 1 / s} for s in range(1, 10)]
    records += [{"kind": "epoch", "epoch": 1, "step": 9, "val_loss": 0.5, "val_acc": 0.8},
                {"kind": "test", "step": 9, "test_loss": 0.6, "test_acc": 0.79}]
    run = _run_folder(tmp_path, records)
    session.write_artifacts(run, Config(dataset="synthetic"), synthetic_bundle, _logits(synthetic_bundle))
    report = json.loads((run.path / "evaluation.json").read_text())
    assert 0.6 < report["accuracy"] < 0.95
    for name in ("curves.png", "confusion.png", "predictions.png", "mistakes.png"):
        with Image.open(run.path / name) as im:
            assert im.format == "PNG" and min(im.size) > 150, name
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]


def test_write_artifacts_reports_a_broken_figure_after_writing_the_rest(tmp_path, synthetic_bundle):
    from mnistlab.config import Config
    from mnistlab.runs import session

    run = _run_folder(tmp_path, [{"kind": "test", "test_loss": 0.6, "test_acc": 0.79}])  # nothing to plot curves from
    with pytest.raises(FigureError, match=r"^drawing plot_training_curves \(.*curves\.png\) failed: ValueError: no"):
        session.write_artifacts(run, Config(dataset="synthetic"), synthetic_bundle, _logits(synthetic_bundle))
    assert sorted(p.name for p in run.path.iterdir()) == ["confusion.png", "evaluation.json", "metrics.jsonl",
                                                        "mistakes.png", "predictions.png"]


# ---------------------------------------------------------------------------- drawers started early


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _named_jobs(folder: Path) -> list:
    """_jobs with each plot function given by name, as a run names them."""
    return [(fn.__name__, args, kwargs) for fn, args, kwargs in _jobs(folder)]


@forking
def test_started_drawers_draw_named_jobs_as_this_process_would(tmp_path):
    early, here = tmp_path / "early", tmp_path / "here"
    assert parallel.start_drawers(2) == 2
    parallel.render_all(_named_jobs(early) + [(_write_pid, (early / "a.pid",), {}), (_write_pid, (early / "b.pid",), {})],
                        workers=2)
    parallel.render_all(_named_jobs(here), workers=1)
    assert _files(early) == _files(here) and len(_files(here)) == 4  # byte for byte
    pids = {int((early / f"{k}.pid").read_text()) for k in "ab"}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid in pids:  # both drawers have ended and been reaped (no zombie left behind)
        assert not Path(f"/proc/{pid}").exists()


@forking
def test_a_process_that_starts_drawers_never_imports_matplotlib(tmp_path):
    import subprocess
    import sys

    code = f"""
import sys
from pathlib import Path
from mnistlab.reporting import parallel
assert parallel.start_drawers(2) == 2
parallel.render_all([("plot_bars", (["a", "b"], [1.0, 2.0], Path({str(tmp_path)!r}) / "bars.png", "t", "y"), {{}}),
                     ("plot_series", ([1, 2], {{"x": [2.0, 1.0]}}, Path({str(tmp_path)!r}) / "s.png", "t", "x", "y"), {{}})])
assert "matplotlib" not in sys.modules, "the parent imported matplotlib"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "s.png"]


@forking
def test_started_drawers_report_a_failure_and_a_death_after_the_rest_is_drawn(tmp_path):
    parallel.start_drawers(2)
    jobs = _named_jobs(tmp_path)
    jobs.insert(1, (_fail, (tmp_path / "broken.png",), {}))  # the second drawer's first job
    jobs.insert(4, (_die, (), {}))  # the first drawer's last job (of 6, it draws 0, 2 and 4)
    with pytest.raises(FigureError) as info:
        parallel.render_all(jobs, workers=2)
    message = str(info.value)
    # (and 1 more): the ValueError, from the other drawer
    assert re.fullmatch(r"the process drawing plot_bars \(\S+bars\.png\), plot_prediction_grid \(\S+grid\.png\), _die "
                        r"ended before it finished \(and 1 more\)", message), message
    assert set(_files(tmp_path)) == {"bars.png", "grid.png", "cm.png", "s.png"}


@forking
def test_unpicklable_jobs_and_unused_drawers_fall_back_to_forking(tmp_path):
    parallel.start_drawers(2)
    parallel.render_all([(lambda path: path.write_text("x"), (tmp_path / "a.txt",), {}),
                         (_write_pid, (tmp_path / "b.pid",), {})], workers=2)  # a lambda cannot be pickled
    assert (tmp_path / "a.txt").read_text() == "x" and int((tmp_path / "b.pid").read_text()) != os.getpid()
    parallel.start_drawers(2)
    parallel.stop_drawers()  # never used: they end at once
    assert not parallel._drawers and parallel._lead_pid is None


@forking
def test_unused_drawers_are_stopped_without_waiting_for_their_warm_up(monkeypatch):
    """A flag error (or --no-figures found late) stops the drawers `train` started: at once, not after they
    have imported and warmed up the plotting code."""
    monkeypatch.setattr(plots, "warm_up", lambda: time.sleep(30))  # the forked drawers inherit it
    assert parallel.start_drawers(2) == 2
    lead = parallel._lead_pid
    time.sleep(0.2)  # the lead is in its warm-up now
    started = time.monotonic()
    parallel.stop_drawers()
    assert time.monotonic() - started < 5
    assert parallel._lead_pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(lead, os.WNOHANG)  # reaped: no zombie left


def test_warm_up_draws_in_memory_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plots.warm_up()  # the drawers call it while they wait and ignore its failure: it must work on its own
    assert list(tmp_path.iterdir()) == []


def _drawer_script(body: str) -> subprocess.CompletedProcess:
    import sys

    code = "import os, signal, sys, threading, time\nfrom pathlib import Path\nfrom mnistlab.reporting import parallel\n" + body
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@forking
def test_fewer_jobs_than_started_drawers_do_not_wait_for_the_unused_ones(tmp_path):
    proc = _drawer_script(f"""
assert parallel.start_drawers(2) == 2
parallel.render_all([("plot_bars", (["a"], [1.0], Path({str(tmp_path)!r}) / "one.png", "t", "y"), {{}})], workers=2)
assert parallel.start_drawers(3) == 3
parallel.render_all([("plot_bars", (["a"], [1.0], Path({str(tmp_path)!r}) / "two.png", "t", "y"), {{}})] * 2, workers=2)
print("done")
""")
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]


@forking
def test_ctrl_c_while_the_drawers_draw_stops_every_one_of_them(tmp_path):
    proc = _drawer_script(f"""
def nap(path):
    path.write_text(str(os.getpid()))
    time.sleep(30)

parallel.start_drawers(2)
def interrupt_once_both_draw():
    # a fixed delay is too short on a busy machine, where the drawers take longer to take their jobs
    deadline = time.monotonic() + 30
    while sum(p.stat().st_size > 0 for p in Path({str(tmp_path)!r}).glob("*.pid")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt_once_both_draw, daemon=True).start()
try:
    parallel.render_all([(nap, (Path({str(tmp_path)!r}) / "a.pid",), {{}}), (nap, (Path({str(tmp_path)!r}) / "b.pid",), {{}})])
except KeyboardInterrupt:
    print("interrupted")
""")
    assert proc.stdout.strip() == "interrupted", proc.stderr
    pids = [int(p.read_text()) for p in sorted(tmp_path.glob("*.pid"))]
    assert len(pids) == 2
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]  # neither drawer is left drawing


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
