"""Draw several figures at once in forked processes: `render_all(jobs, workers=2)`.

Each job is `(function, args, kwargs)` whose arguments are plain numpy / Python data. On Linux the
jobs are shared out round-robin between up to `workers` forked children; the parent only waits.
Elsewhere (no fork, or macOS where forking a threaded process is unsafe), or with `workers <= 1`,
they are drawn one after another in this process. Either way every job runs, and a failure raises
one FigureError naming the job after all of them have finished.

The parent typically has PyTorch's OpenMP threads alive: a forked child must never call torch,
so tensors are refused here (convert them to numpy before calling), and the plotting code should be
imported before forking (import mnistlab.reporting.plots first) so the children share it.
Figures are written atomically by the plot functions themselves, so a failed or killed child
leaves no partial file.

A job's function may also be the name of a function in `mnistlab.reporting.plots` ("plot_bars"):
it is looked up in the process that draws it, so a caller that names its figures never imports
the plotting code itself. `start_drawers(n)`, called before the work (by `mnistlab train`, before it
imports torch), forks the drawing processes at once: they import it on an idle core while
the parent imports torch, then wait, blocked on a pipe, for one share of the next `render_all`.
Then the figures cost only their drawing at the end of a run, not also the forks and imports.
Drawers that are never used end with the parent (their pipe closes) or `stop_drawers`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mnistlab.errors import FigureError

PLOTS = "mnistlab.reporting.plots"  # where a job's function given by name is looked up
Job = tuple[Callable[..., Any] | str, tuple, dict]


def fork_available() -> bool:
    """Forking is used only on Linux (macOS: fork of a threaded process is unsafe; Windows: none)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _name(job: Job) -> str:
    """What the job draws, for messages: the function and the file it writes."""
    fn, args, kwargs = job
    paths = [a for a in (*args, *kwargs.values()) if isinstance(a, os.PathLike)
             or (isinstance(a, str) and a.lower().endswith(".png"))]
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
    return f"{name} ({os.fspath(paths[0])})" if paths else name


def _check(job: Job) -> None:
    fn, args, kwargs = job
    for a in (*args, *kwargs.values()):
        if type(a).__module__.startswith("torch"):
            raise TypeError(f"render_all: {_name(job)} was given a torch {type(a).__name__}; "
                            "pass numpy arrays (a forked child must not call torch)")


def _resolve(fn: Callable[..., Any] | str) -> Callable[..., Any]:
    """A job's function: itself, or the function of mnistlab.reporting.plots that it names."""
    return getattr(importlib.import_module(PLOTS), fn) if isinstance(fn, str) else fn


def _draw(jobs: Sequence[Job], report: Callable[[str], Any] = lambda line: None) -> list[tuple[str, Exception]]:
    """Run each job; return (one line, exception) per failure, passing each line to `report` as it happens."""
    failures = []
    for job in jobs:
        fn, args, kwargs = job
        try:
            _resolve(fn)(*args, **kwargs)
        except Exception as e:
            failures.append((f"drawing {_name(job)} failed: {type(e).__name__}: {e}".replace("\n", " "), e))
            report(failures[-1][0])
    return failures


def _raise(failures: list[str], cause: BaseException | None = None) -> None:
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise FigureError(failures[0] + more) from cause


def _child(jobs: Sequence[Job], write_fd: int) -> None:
    """In the forked child: draw, report failures through the pipe, and leave without any cleanup."""
    code = 1
    try:
        # SIGTERM from the parent (it was interrupted) unwinds through the atomic writers' cleanup.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        # Each failure goes up the pipe at once, so it is reported even if a later job kills the process.
        failures = _draw(jobs, lambda line: os.write(write_fd, (line + "\n").encode("utf-8", "replace")))
        code = 1 if failures else 0
    except BaseException:  # interrupted (or the pipe broke): the parent reports it by the exit status
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # the child's own output (warnings), not the parent's
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _read_all(fd: int) -> str:
    return _read_all_bytes(fd).decode("utf-8", "replace")


# ----------------------------------------------------------------------------- drawers started early


@dataclass
class _Drawer:
    """The parent's ends of one started drawer's pipes: its jobs go in, its report comes out."""

    jobs_fd: int
    report_fd: int


_drawers: list[_Drawer] = []  # started by start_drawers, waiting for the next render_all
_lead_pid: int | None = None  # the first drawer: it forked the others and reaps them


def start_drawers(workers: int = 2) -> int:
    """Fork `workers` drawing processes now; they import the plots and wait for the next render_all.

    Call it before heavy imports (torch): the first drawer imports them while this process
    goes on, then forks the others (which share its pages), so the import costs this process
    nothing. Returns how many were started (0 where forking is not used). Starting again first
    stops the drawers that are still waiting.
    """
    stop_drawers()
    if workers < 1 or not fork_available():
        return 0
    pipes = [(os.pipe(), os.pipe()) for _ in range(workers)]  # ((jobs r, jobs w), (report r, report w))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        for (a, b), (c, d) in pipes:
            for fd in (a, b, c, d):
                os.close(fd)
        return 0
    if pid == 0:  # never returns
        for (_, jobs_w), (report_r, _) in pipes:
            os.close(jobs_w)
            os.close(report_r)
        _lead([(jobs_r, report_w) for (jobs_r, _), (_, report_w) in pipes])
    global _lead_pid
    _lead_pid = pid
    for (jobs_r, jobs_w), (report_r, report_w) in pipes:
        os.close(jobs_r)
        os.close(report_w)
        _drawers.append(_Drawer(jobs_w, report_r))
    return workers


def stop_drawers() -> None:
    """End the started drawers that were not used (closing their pipes ends them) and reap the first."""
    global _lead_pid
    unused = bool(_drawers)
    while _drawers:
        d = _drawers.pop()
        os.close(d.jobs_fd)
        os.close(d.report_fd)
    if _lead_pid is not None:
        if unused:  # none of it is needed: do not wait for its imports and warm-up (a flag error would pay them)
            try:
                os.kill(_lead_pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            os.waitpid(_lead_pid, 0)
        except ChildProcessError:
            pass
        _lead_pid = None


def _lead(ends: list[tuple[int, int]]) -> None:
    """The first drawer: import the plots, fork the other drawers, serve its own share, reap them."""
    code = 0
    kids: list[int] = []
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        # Lowest priority: the parent's own import (torch) is the critical path, and on the 2-core
        # machines here a second process importing beside it slowed it (matplotlib's import: by
        # about 0.3 s, 0.15 s niced).
        # When the figures are wanted the parent only waits, so the niced drawers then have the CPUs.
        try:
            os.nice(19)
        except OSError:
            pass
        try:
            from mnistlab.reporting import plots

            plots.warm_up()
        except Exception:
            pass  # drawing will report the failure for each figure
        for i in range(1, len(ends)):
            pid = os.fork()
            if pid == 0:
                for j, (jobs_r, report_w) in enumerate(ends):
                    if j != i:
                        os.close(jobs_r)
                        os.close(report_w)
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwinds the atomic writers' cleanup
                os._exit(_serve(*ends[i]))
            kids.append(pid)
            os.close(ends[i][0])
            os.close(ends[i][1])

        def stop(*_: Any) -> None:
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            sys.exit(1)

        signal.signal(signal.SIGTERM, stop)  # the parent stops the lead; the lead stops the others
        code = _serve(*ends[0])
        os.close(ends[0][1])  # our report is complete: the parent need not wait for the others through us
        for pid in kids:
            os.waitpid(pid, 0)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _serve(jobs_fd: int, report_fd: int) -> int:
    """In a drawer: read one pickled share of jobs (none: the parent did not need us), draw, report.

    The report is one line per failure, then DONE: a report without DONE means the drawer died.
    """
    payload = _read_all_bytes(jobs_fd)
    os.close(jobs_fd)
    if not payload:
        return 0
    # The pickle comes from the parent that forked us, over a pipe only the two ends hold.
    jobs = pickle.loads(payload)
    failures = _draw(jobs, lambda line: os.write(report_fd, (line + "\n").encode("utf-8", "replace")))
    os.write(report_fd, b"DONE\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return 1 if failures else 0


def _read_all_bytes(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _render_with_drawers(jobs: list[Job], workers: int) -> list[str] | None:
    """Hand the jobs to up to `workers` started drawers and collect their reports (the failures).

    None when they cannot take them (a job that cannot be pickled, or the first drawer already
    gone): render_all then forks as usual. Every started drawer is used or stopped here.
    """
    drawers = _drawers[:max(1, min(workers, len(jobs)))]
    del _drawers[:len(drawers)]
    for unused in _drawers:  # ended now (their pipes close), not after the others' reports: the lead waits for them
        os.close(unused.jobs_fd)
        os.close(unused.report_fd)
    _drawers.clear()
    shares = [jobs[w::len(drawers)] for w in range(len(drawers))]
    try:
        payloads = [pickle.dumps(share) for share in shares]
    except Exception:
        payloads = None
    sent: list[tuple[_Drawer, list[Job]]] = []
    try:
        for d, share, payload in zip(drawers, shares, payloads or []):
            try:
                _write_all(d.jobs_fd, payload)
            except OSError:  # this drawer is gone
                if sent:
                    raise FigureError(f"the process that was to draw {', '.join(_name(j) for j in share)} had ended")
                payloads = None
                break
            finally:
                os.close(d.jobs_fd)
                d.jobs_fd = -1
            sent.append((d, share))
        if payloads is None:
            return None
        failures: list[str] = []
        for d, share in sent:
            lines = _read_all(d.report_fd).splitlines()
            if lines[-1:] == ["DONE"]:
                failures += lines[:-1]
            else:
                failures += lines + [f"the process drawing {', '.join(_name(j) for j in share)} ended before it finished"]
        return failures
    except BaseException:
        if _lead_pid is not None:  # interrupted while they draw: the first drawer stops the others
            try:
                os.kill(_lead_pid, signal.SIGTERM)
            except OSError:
                pass
        raise
    finally:
        for d in drawers:
            for fd in (d.jobs_fd, d.report_fd):
                if fd >= 0:
                    os.close(fd)
        stop_drawers()  # the unused ones, and reap the first


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ----------------------------------------------------------------------------- render_all


def render_all(jobs: Sequence[Job], workers: int = 2) -> None:
    """Run every (function, args, kwargs) job, in up to `workers` forked processes where that is safe.

    Raises:
        FigureError: a job raised (after every other job has finished), or a drawing process died.
        TypeError: a job was given a torch tensor.
    """
    jobs = [(fn, tuple(args), dict(kwargs)) for fn, args, kwargs in jobs]
    for job in jobs:
        _check(job)
    if _drawers:
        failures = _render_with_drawers(jobs, workers) if workers > 1 and jobs else None
        stop_drawers()
        if failures is not None:
            _raise(failures)
            return
    workers = min(workers, len(jobs))
    if workers <= 1 or not fork_available():
        failures = _draw(jobs)
        _raise([line for line, _ in failures], failures[0][1] if failures else None)
        return
    jobs = [(_resolve(fn), args, kwargs) for fn, args, kwargs in jobs]  # the plots imported once, here
    for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice by a child
        stream.flush()
    pending: list[tuple[int, int, list[Job]]] = []  # (pid, read end of its pipe, its jobs)
    failures: list[str] = []
    here: list[Job] = []  # shares no process could be forked for: drawn by this one
    try:
        for w in range(workers):
            share = jobs[w::workers]
            read_fd, write_fd = os.pipe()
            try:
                with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
            except OSError:  # out of processes or memory
                os.close(read_fd)
                os.close(write_fd)
                here += share
                continue
            if pid == 0:  # the child never returns from here
                os.close(read_fd)
                _child(share, write_fd)
            os.close(write_fd)
            pending.append((pid, read_fd, share))
        failures += [line for line, _ in _draw(here)]
        while pending:
            pid, read_fd, share = pending[0]
            message = _read_all(read_fd)  # until the child exits (or closes its end)
            _, status = os.waitpid(pid, 0)
            os.close(read_fd)
            pending.pop(0)
            lines = message.splitlines()
            failures += lines
            code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
            if code != (1 if lines else 0):  # not the child's own os._exit(1 if it reported failures else 0)
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                failures.append(f"the process drawing {', '.join(_name(j) for j in share)} {how}")
    except BaseException:
        for pid, read_fd, _ in pending:  # interrupted while they draw: stop them and reap them
            for stop in (lambda: os.kill(pid, signal.SIGTERM), lambda: os.waitpid(pid, 0), lambda: os.close(read_fd)):
                try:
                    stop()
                except OSError:
                    pass
        raise
    _raise(failures)
