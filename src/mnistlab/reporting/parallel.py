"""Draw several figures at once in forked processes: `render_all(jobs, workers=2)`.

Each job is `(function, args, kwargs)` whose arguments are plain numpy / Python data. On Linux the
jobs are shared out round-robin between up to `workers` forked children; the parent only waits.
Elsewhere (no fork, or macOS where forking a threaded process is unsafe), or with `workers <= 1`,
they are drawn one after another in this process. Either way every job runs, and a failure raises
one FigureError naming the job after all of them have finished.

The parent typically has PyTorch's OpenMP threads alive: a forked child must never call torch,
so tensors are refused here (convert them to numpy before calling), and matplotlib should be
imported before forking (import mnistlab.reporting.plots first) so the children share it.
Figures are written atomically by the plot functions themselves, so a failed or killed child
leaves no partial file.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Any, Callable, Sequence

from mnistlab.errors import FigureError

Job = tuple[Callable[..., Any], tuple, dict]


def fork_available() -> bool:
    """Forking is used only on Linux (macOS: fork of a threaded process is unsafe; Windows: none)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _name(job: Job) -> str:
    """What the job draws, for messages: the function and the file it writes."""
    fn, args, kwargs = job
    paths = [a for a in (*args, *kwargs.values()) if isinstance(a, os.PathLike)
             or (isinstance(a, str) and a.lower().endswith(".png"))]
    name = getattr(fn, "__name__", repr(fn))
    return f"{name} ({os.fspath(paths[0])})" if paths else name


def _check(job: Job) -> None:
    fn, args, kwargs = job
    for a in (*args, *kwargs.values()):
        if type(a).__module__.startswith("torch"):
            raise TypeError(f"render_all: {_name(job)} was given a torch {type(a).__name__}; "
                            "pass numpy arrays (a forked child must not call torch)")


def _draw(jobs: Sequence[Job], report: Callable[[str], Any] = lambda line: None) -> list[tuple[str, Exception]]:
    """Run each job; return (one line, exception) per failure, passing each line to `report` as it happens."""
    failures = []
    for job in jobs:
        fn, args, kwargs = job
        try:
            fn(*args, **kwargs)
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
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def render_all(jobs: Sequence[Job], workers: int = 2) -> None:
    """Run every (function, args, kwargs) job, in up to `workers` forked processes where that is safe.

    Raises:
        FigureError: a job raised (after every other job has finished), or a drawing process died.
        TypeError: a job was given a torch tensor.
    """
    jobs = [(fn, tuple(args), dict(kwargs)) for fn, args, kwargs in jobs]
    for job in jobs:
        _check(job)
    workers = min(workers, len(jobs))
    if workers <= 1 or not fork_available():
        failures = _draw(jobs)
        _raise([line for line, _ in failures], failures[0][1] if failures else None)
        return
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
