"""`mnistlab serve RUN`: the draw-a-digit page and the JSON API under uvicorn (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from typing import Any

from mnistlab.cli._common import warn
from mnistlab.cpus import usable_cpus
from mnistlab.errors import ConfigError, MnistlabError

INSTALL_HINT = "mnistlab serve needs the serve extra: pip install 'mnistlab[serve]' (or pip install -e '.[serve]')"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CONNECTIONS = 128  # open connections at once; each may hold a body of up to --max-body while it waits
# --workers by default: one process per core up to this many. On the 2 cores here 2 processes served
# twice the requests of one at about half the p99 (BENCHMARKS.md, round 4); each holds its own model
# and runtime (about 250 MB with torch, 90 MB with an .onnx file), so more are for those who ask.
AUTO_WORKERS = 2


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if not 0 < value <= 1024:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1024 MB, got {text}")
    return value


READY_PREFIX = "mnistlab-serve-"
SWEEP_AFTER_S = 10.0  # a folder still being made (".mnistlab-serve-*", not yet locked) is left alone this long


def _ready_folder() -> tuple[str, int | None]:
    """A new readiness folder for the worker processes, and the descriptor of the lock this server holds
    on it while it runs (None where the OS has no flock).

    First, the folders left by servers that were killed (SIGKILL skips the cleanup; the workers of a
    killed parent remove its folder as they stop, but not when they are killed too) are removed: ours,
    whose lock nobody holds. A lock, unlike a pid, also tells a live server in another pid namespace
    that shares the temp folder, and does not mind a pid that was reused. A folder is made under a
    hidden name and renamed once its lock is held, so every "mnistlab-serve-*" folder without a held
    lock is a dead server's, whatever its age: the next start removes it at once.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS: no sweep, and the folder still works
        return tempfile.mkdtemp(prefix=READY_PREFIX), None
    tmp = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(tmp) if n.startswith((READY_PREFIX, "." + READY_PREFIX))]
    except OSError:
        names = []
    for name in names:
        path = os.path.join(tmp, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            if name.startswith(".") and time.time() - info.st_mtime < SWEEP_AFTER_S:
                continue  # perhaps a server between making its folder and taking the lock
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: its server is gone
        except OSError:
            continue  # held: that server is running
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
    while True:
        making = tempfile.mkdtemp(prefix="." + READY_PREFIX)
        fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until this process closes it or dies
        folder = os.path.join(tmp, os.path.basename(making)[1:])
        if not os.path.lexists(folder):
            try:
                os.rename(making, folder)  # the same inode: the lock goes with it
                return folder, fd
            except OSError:
                pass
        os.close(fd)
        os.rmdir(making)


def _announce_when_ready(ready: str, workers: int, line: str, timeout: float = 120.0) -> None:
    """Print `line` (the URL) once each of the `workers` processes has built its app (a file named by its pid).

    Announcing early would let a client load the processes that are ready while the others start,
    and keep-alive connections stay where they were accepted.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if sum(name.isdigit() for name in os.listdir(ready)) >= workers:
                break
        except OSError:  # removed: the server is stopping
            return
        time.sleep(0.05)
    print(line, flush=True)


def register(sub: Any) -> None:
    """Add the `serve` subcommand to the main parser's subparsers."""
    p = sub.add_parser(
        "serve", help="a draw-a-digit page and a JSON API on a trained run",
        description="Serve a trained image model: GET / is a page to draw digits on, POST /api/predict takes an "
                    "image (or JSON base64 / pixels, or a batch), GET /api/model is the model card, GET /healthz.",
    )
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a run folder (runs/NAME), a .safetensors checkpoint or an exported .onnx file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--max-body", type=_megabytes, default=4.0, metavar="MB",
                   help="largest request body in megabytes, answered 413 beyond (default: 4)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow cross-origin requests from ORIGIN (repeatable; '*' for any). Default: none")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"), help="where to run the model (default: cpu)")
    p.add_argument("--workers", type=int, default=None,
                   help="server processes sharing the port, each with its own copy of the model (default: one per "
                        f"CPU core, at most {AUTO_WORKERS}, with --device cpu; else 1)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="batches of waiting requests prepared and classified at once in each process, "
                        "each batch with one model call (default: 1: under load one batch at a time "
                        "served more requests, with a lower p99, than 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average over the test-time augmentation views (default: as the run was tested, e.g. 5 views "
                        "for fastcnn, about 0.95 ms of model time per image on one thread; --no-tta: one pass, 0.4 ms)")
    p.set_defaults(func=cmd_serve)


def _listen(host: str, port: int, balanced: bool = False) -> socket.socket:
    """The server's socket: listening, or (`balanced`) only reserving the port for processes that each
    listen on a socket of their own (mnistlab.serve.workers)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        if balanced:
            from mnistlab.serve.workers import shared_port_socket

            return shared_port_socket(address, family, kind, proto, listen=False)
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise MnistlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def default_workers(device: str) -> int:
    """--workers when not given: one per usable CPU core up to AUTO_WORKERS for a CPU model, else 1."""
    return max(1, min(AUTO_WORKERS, usable_cpus())) if device == "cpu" else 1


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers is None:
        args.workers = default_workers(args.device)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
    for flag, value in (("--workers", args.workers), ("--concurrency", args.concurrency), ("--threads", args.threads)):
        if value < 1:
            raise ConfigError(f"{flag} must be positive, got {value}")
    try:
        import uvicorn

        from mnistlab.serve.app import create_app
    except ImportError:
        raise MnistlabError(INSTALL_HINT) from None
    from mnistlab.export.runtime import is_onnx_path

    if not is_onnx_path(args.run):  # an .onnx file runs on onnxruntime (one thread per session), without torch
        import torch

        torch.set_num_threads(args.threads)
    options = dict(checkpoint=os.path.abspath(args.run), device=args.device, max_body=int(args.max_body * 1024 * 1024),
                   concurrency=args.concurrency, cors_origins=list(args.cors), tta=args.tta)
    app = create_app(**options)  # here too with --workers: a bad run fails once, before any process starts
    card = app.state.service.card
    if app.state.service.predictor.assumptions():  # an .onnx file from elsewhere
        warn(app.state.service.predictor.assumptions())
    from mnistlab.serve.workers import balanced_sockets_supported, http_protocol, run_server, serve_processes

    balanced = args.workers > 1 and balanced_sockets_supported()
    sock = _listen(args.host, args.port, balanced)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.host not in LOCAL_HOSTS:
        print(f"mnistlab: warning: listening on {args.host}: anyone who can reach this machine can use the model "
              "(the default, 127.0.0.1, is this machine only)", file=sys.stderr, flush=True)
    accuracy = f", test accuracy {100 * card['test_accuracy']:.2f}%" if card["test_accuracy"] is not None else ""
    print(f"serving {card['model']} on {card['dataset']} ({card['parameters']:,} parameters{accuracy})", flush=True)
    announce = f"open http://{shown}:{port}/  (API: POST /api/predict; Ctrl-C stops)"
    if args.workers == 1:
        print(announce, flush=True)  # this process's app is built: it answers from the first connection
    # A cap on open connections (503 beyond) bounds the memory that bodies waiting for a worker can hold.
    # No proxy-header rewriting: nothing here reads the client's address, and the wrapper costs every request.
    # A connection closed while its request still arrives (a 413 before the body is read) lingers, so
    # that a client that writes everything before it reads gets the answer, not a reset (http_protocol).
    settings = dict(log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                    limit_concurrency=MAX_CONNECTIONS, proxy_headers=False, http=http_protocol())
    cleanup: list = []
    try:
        if args.workers == 1:
            run_server(uvicorn.Server(uvicorn.Config(app, **settings)), [sock])
        else:
            from uvicorn.supervisors import Multiprocess

            from mnistlab.serve.app import OPTIONS_ENV, READY_ENV

            del app  # each process builds its own (uvicorn spawns them; an app does not pickle)
            os.environ[OPTIONS_ENV] = json.dumps({**options, "threads": args.threads})
            ready, lock = _ready_folder()
            cleanup.append(lambda: shutil.rmtree(ready, ignore_errors=True))
            if lock is not None:
                cleanup.insert(0, lambda: os.close(lock))
            os.environ[READY_ENV] = ready
            threading.Thread(target=_announce_when_ready, args=(ready, args.workers, announce), daemon=True).start()
            if balanced:  # a listening socket per process: the kernel spreads the connections across them
                serve_processes(settings, sock, args.workers, ready)
            else:
                config = uvicorn.Config("mnistlab.serve.app:app_from_env", factory=True, workers=args.workers, **settings)
                Multiprocess(config, sockets=[sock]).run()  # restarts a process that dies; Ctrl-C stops them all
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after shutting down cleanly
        pass  # (the supervisors'; run_server ends a single process's quietly itself)
    finally:
        sock.close()
        for undo in cleanup:
            undo()
    print("stopped", flush=True)
    return 0
