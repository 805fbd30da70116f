"""Several server processes on one port, each with a listening socket of its own.

uvicorn's `--workers` hands every process the same listening socket. When a burst of connections
arrives (16 keep-alive clients at once, say), the process that wakes first may accept all of them,
and keep-alive connections never move: on the 2 cores here one run in four ended with every client on
one process, half the requests per second of an even split and a p99 of 60-70 ms instead of 45
(BENCHMARKS.md). With SO_REUSEPORT each process listens on a socket of its own, bound to the same
port, and the kernel spreads new connections across them. Linux only (elsewhere SO_REUSEPORT does
not balance, and `mnistlab serve` uses uvicorn's supervisor).

The parent keeps the port reserved with a bound socket that never listens (so no connection is
queued where nobody accepts), starts the processes (which stop if the parent dies, even by SIGKILL),
restarts one that dies after it started, and on Ctrl-C or SIGTERM stops them all and reaps them.
Processes stopped by the parent's death remove its readiness folder as they go.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import warnings
from typing import Any

from mnistlab.errors import MnistlabError

STARTUP_FAILURE = 3  # uvicorn's exit status for a process that could not start serving
STOP_SECONDS = 5.0  # how long stopped processes get to finish their requests before they are killed
ORPHAN_WAIT = 1.0  # how long a stopped process waits for a dying parent to be gone (_remove_orphaned)


def run_server(server: Any, sockets: list[socket.socket]) -> None:
    """`server.run(sockets=...)` (a uvicorn Server) until it stops; the Ctrl-C that stopped it (uvicorn
    re-raises it after shutting down) ends it quietly. A Ctrl-C that lands before the event loop starts
    leaves the `Server.serve` coroutine unstarted, and Python would print a RuntimeWarning about it
    when it is collected, at the end of the except clause here: the server stopped as asked."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"coroutine 'Server\.serve' was never awaited", category=RuntimeWarning)
        try:
            server.run(sockets=sockets)
        except KeyboardInterrupt:
            pass


def http_protocol() -> Any:
    """uvicorn's `http` setting: httptools with a lingering close (`mnistlab.serve.protocol`: a client
    still sending when it is answered gets the answer, not a reset), or without httptools "auto" (h11)."""
    try:
        from mnistlab.serve.protocol import LingeringHttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in the serve extra
        return "auto"
    return LingeringHttpToolsProtocol


def balanced_sockets_supported() -> bool:
    """Whether the kernel spreads connections across sockets sharing a port (Linux's SO_REUSEPORT)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def shared_port_socket(address: Any, family: int, kind: int, proto: int, listen: bool) -> socket.socket:
    """A socket bound to `address` with SO_REUSEPORT: the parent's reservation (listen=False) or a worker's.

    For the reservation of a given port, a plain bind comes first: SO_REUSEPORT alone would let this
    server share a port that another server of the same user already listens on (each getting half
    the connections), where a busy port must be an error.
    """
    if not listen and address[1] != 0:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own sockets
            probe.bind(address)  # EADDRINUSE when anyone listens there, SO_REUSEPORT or not
        finally:
            probe.close()
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _die_with_parent(ready: str) -> None:
    """Have the kernel stop this process when the parent dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG).

    The signal is SIGINT, a Ctrl-C: uvicorn stops serving as it does on SIGTERM, and then re-raises
    the signal, which for SIGINT is a KeyboardInterrupt that `_worker` gets back from (SIGTERM's
    default action would end the process there, before it removes the dead parent's folder).
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if _orphaned():  # it died before the call above
        _remove_orphaned(ready)
        os._exit(0)


def _orphaned() -> bool:
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


def _remove_orphaned(ready: str, wait: float = 0.0) -> None:
    """Remove the readiness folder of a parent that died without its cleanup (SIGKILL); the other
    processes may be doing the same.

    `wait`: how long to wait for the parent to be gone, after a stop that its death may have caused.
    The kernel sends PR_SET_PDEATHSIG when the thread that started us dies, and a SIGKILLed parent's
    threads die one by one: the signal may come before the last one has gone and the pipe that
    `parent_process().is_alive()` watches is closed (seen about once in four runs of the SIGKILL test
    with many servers starting). A stop by Ctrl-C waits too, until the parent's SIGTERM ends it.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and wait > 0:
        parent.join(wait)
    if _orphaned():
        shutil.rmtree(ready, ignore_errors=True)


def _worker(settings: dict[str, Any], address: Any, family: int, kind: int, proto: int, ready: str) -> None:
    """One server process: the app from the environment built first, then its own listening socket on
    the shared port (a process listening before it can answer would be handed connections to stall)."""
    import uvicorn

    _die_with_parent(ready)
    config = uvicorn.Config("mnistlab.serve.app:app_from_env", factory=True, **settings)
    try:
        config.load()  # builds the app (app_from_env); uvicorn's run() then skips loading
    except KeyboardInterrupt:  # Ctrl-C while starting: the parent is stopping too (or died)
        _remove_orphaned(ready, wait=ORPHAN_WAIT)
        os._exit(0)
    except Exception as e:  # the parent reports it in one line, instead of a traceback per process
        _write_failure(ready, str(e) if isinstance(e, MnistlabError) else f"{type(e).__name__}: {e}")
        os._exit(STARTUP_FAILURE)
    try:
        sock = shared_port_socket(address, family, kind, proto, listen=True)
        run_server(uvicorn.Server(config), [sock])
    except KeyboardInterrupt:  # the parent's death (or a Ctrl-C) before uvicorn took over the signal
        pass
    _remove_orphaned(ready, wait=ORPHAN_WAIT)


def _write_failure(ready: str, message: str) -> None:
    try:
        with open(os.path.join(ready, f"{os.getpid()}.error"), "w", encoding="utf-8") as f:
            f.write(" ".join(message.split())[:500])
    except OSError:
        pass


def _failure(ready: str, pid: int | None) -> str | None:
    try:
        with open(os.path.join(ready, f"{pid}.error"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def serve_processes(settings: dict[str, Any], reserved: socket.socket, workers: int, ready: str) -> None:
    """Run `workers` server processes on the port `reserved` holds, until Ctrl-C or SIGTERM.

    `settings` are uvicorn.Config's keyword arguments (picklable: the processes are spawned). A process
    has started once its app is built, which `app_from_env` marks with a file named by its pid in the
    folder `ready`: one that dies before that stops them all (a MnistlabError), since its successors
    would fail the same way; one that dies later is replaced.
    """
    context = multiprocessing.get_context("spawn")
    address = reserved.getsockname()
    args = (settings, address, reserved.family, reserved.type, reserved.proto, ready)
    stop = threading.Event()

    def start() -> Any:
        process = context.Process(target=_worker, args=args, daemon=True)
        process.start()
        return process

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    processes = []
    try:
        processes = [start() for _ in range(workers)]
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive() or stop.is_set():
                    continue
                process.join()
                marker = os.path.join(ready, str(process.pid))
                if process.exitcode == STARTUP_FAILURE or not os.path.exists(marker):
                    raise MnistlabError(_failure(ready, process.pid)
                                        or f"a server process could not start (exit status {process.exitcode})")
                os.remove(marker)  # its pid may come back: only a live process's start counts
                processes[i] = start()  # died while serving: replaced, as uvicorn's supervisor does
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
