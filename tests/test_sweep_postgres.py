"""`mnistlab sweep` with several worker processes on one study: a real PostgreSQL server (started here
in a temporary folder, password-authenticated) and the journal file. A worker SIGKILLed mid-trial
leaves no trial RUNNING: its trial is failed (heartbeat on PostgreSQL, process id on a journal file)
and run again once with the same parameters, and the study ends with exactly the trials asked for.
Connection faults (wrong password, unknown database, closed port, unknown host) are one line, exit 1."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra (pip install optuna) is not installed")

from mnistlab.cli import main  # noqa: E402

USER, PASSWORD, DB = "mnistlab", "s3cret-pw", "sweeps"
# Trials of about a second on a free core (60 epochs of 1,800 synthetic images): long enough to be
# killed mid-trial, short enough for 5 of them in a few seconds.
SLOW = ["--dataset", "synthetic", "--model", "softmax", "--epochs", "30", "--train-size", "1800", "--threads", "1"]


def _server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1 (a free port; its socket in a temporary folder) with a password user.

    PostgreSQL refuses to run as root: under root (CI) the server runs as the `postgres` user that
    Debian's package creates, in a folder that user owns.
    """
    psycopg = pytest.importorskip("psycopg", reason="the sweep extra's PostgreSQL driver (psycopg) is not installed")
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    preexec, owner = None, None
    if os.geteuid() == 0:
        import pwd

        try:
            server = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run the server as")
        owner = (server.pw_uid, server.pw_gid)

        def preexec():
            os.setgid(owner[1])
            os.setuid(owner[0])

    folder = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))
    data, pwfile, log = folder / "data", folder / "pw", folder / "server.log"
    pwfile.write_text(PASSWORD)
    if owner:
        for path in (folder, pwfile):
            os.chown(path, *owner)
    port = _free_port()

    def run(*cmd):
        return subprocess.run([str(c) for c in cmd], preexec_fn=preexec, cwd=folder, capture_output=True, text=True,
                              timeout=60)

    try:
        done = run(bindir / "initdb", "-D", data, "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                   "--no-sync")
        assert done.returncode == 0, done.stderr
        for _ in range(3):  # the free port found may be taken by another test worker before the server binds it
            logged = log.stat().st_size if log.exists() else 0
            done = run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "30", "-o",
                       f"-p {port} -k {folder} -h 127.0.0.1 -c fsync=off -c max_connections=60", "start")
            this_try = log.read_bytes()[logged:] if log.exists() else b""  # pg_ctl -l appends
            if done.returncode == 0 or b"already in use" not in this_try:
                break
            port = _free_port()
        assert done.returncode == 0, done.stderr + (log.read_text() if log.exists() else "")
        with psycopg.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        yield {"host": "127.0.0.1", "port": port, "url": f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DB}"}
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1", **extra)
    env.pop("MNISTLAB_DATA", None)
    return env


@functools.lru_cache(maxsize=None)
def _database(url: str):
    """One storage (one connection pool) per database for the polling loops: a new RDBStorage per poll keeps
    its pool's connections until it is collected, and the test server's max_connections runs out."""
    return optuna.storages.RDBStorage(url)


def _load(study: str, storage: str):
    """The study as another process sees it (no heartbeat of our own), or None before it exists."""
    from mnistlab.sweep.study import database_url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in storage:
        store = _database(database_url(storage))
    elif not Path(storage).exists():
        return None
    else:
        store = JournalStorage(JournalFileBackend(storage))
    try:
        return optuna.load_study(study_name=study, storage=store)
    except KeyError:
        return None


@pytest.mark.slow  # real multi-process jobs: CI runs them
@pytest.mark.parametrize("kind", ["postgres", "journal"])
def test_a_worker_killed_mid_trial_is_retried_and_the_study_ends_with_the_trials_asked_for(tmp_path, kind, request):
    if kind == "postgres":
        storage, extra = request.getfixturevalue("postgres")["url"], ["--heartbeat", "1", "--grace", "2"]
    else:
        storage, extra = str(tmp_path / "journal.log"), []
    study = f"kill-{kind}"
    cmd = [sys.executable, "-m", "mnistlab", "sweep", *SLOW, "--trials", "4", "--workers", "2", "--study", study,
           "--storage", storage, *extra, "--out-dir", str(tmp_path / "out"), "--no-retrain"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        deadline, victim = time.monotonic() + 60, None
        while victim is None:  # the first trial that runs: kill its worker in the middle of it
            assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
            s = _load(study, storage)
            running = [t for t in s.get_trials(states=(optuna.trial.TrialState.RUNNING,))] if s else []
            victim = next((t for t in running if "process" in t.user_attrs and "config" in t.user_attrs), None)
            time.sleep(0.05)
        pid = int(victim.user_attrs["process"].split(":")[-2])
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"mnistlab: warning: worker {victim.user_attrs['worker']} was killed by SIGKILL" in err
    assert "Traceback" not in err
    assert PASSWORD not in out + err  # the URL is printed with *** for its password

    trials = _load(study, storage).trials
    states = [t.state.name for t in trials]
    killed = trials[victim.number]
    assert killed.state.name == "FAIL" and killed.params == victim.params
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1 and retries[0].system_attrs["failed_trial"] == victim.number
    assert retries[0].params == victim.params  # re-run with the killed trial's parameters
    # ... from the start, and the same training: each epoch the killed trial reported is reported again alike.
    assert {e: v for e, v in retries[0].intermediate_values.items() if e in killed.intermediate_values} == \
        killed.intermediate_values
    assert retries[0].state.name == "COMPLETE"
    assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1 and len(trials) == 5, states
    assert "RUNNING" not in states and "WAITING" not in states
    assert len({t.user_attrs["sweep_run"] for t in trials}) == 1  # all of this command's run
    table = out[out.index("\ntrial  state"):]
    assert f"its worker died or stalled; retried as trial {retries[0].number}" in table
    assert re.search(rf"^ *{retries[0].number}  complete .* retry of trial {victim.number}$", table, re.M), table
    assert "4 trials in " in out and "(1 run again: its worker died or stalled); study" in out


@pytest.mark.slow  # real multi-process jobs: CI runs them
def test_two_commands_on_one_postgres_study_each_add_their_trials(tmp_path, postgres):
    """Two machines: the same command twice at once, the password from PGPASSWORD (not on the command line).

    Three workers (2 + 1) race for trials of a few milliseconds: each command still ends with exactly its 3.
    """
    url = f"postgresql://{USER}@{postgres['host']}:{postgres['port']}/{DB}"
    cmd = [sys.executable, "-m", "mnistlab", "sweep", "--dataset", "synthetic", "--model", "softmax", "--epochs", "2",
           "--train-size", "400", "--threads", "1", "--trials", "3", "--study", "two", "--storage", url, "--no-retrain"]
    procs = [subprocess.Popen([*cmd, "--out-dir", str(tmp_path / f"m{i}"), "--workers", str(2 - i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(tmp_path, PGPASSWORD=PASSWORD)) for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    trials = _load("two", url.replace(f"{USER}@", f"{USER}:{PASSWORD}@")).trials
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # the median pruner may stop the sixth
    runs = [t.user_attrs["sweep_run"] for t in trials]
    assert sorted(runs.count(r) for r in set(runs)) == [3, 3]  # each command ran exactly its 3, not one more
    for out, _ in results:
        assert "3 trials in " in out
    assert sorted(t.number for t in trials) == list(range(6))


@pytest.mark.parametrize("fault, reason", [
    ("password", 'password authentication failed for user "mnistlab"'),
    ("database", 'database "nosuchdb" does not exist'),
    ("port", "Connection refused"),
    ("host", "failed to resolve host 'no-such-host.invalid'"),
])
def test_a_database_that_cannot_be_reached_is_one_line_and_exit_1(tmp_path, capsys, postgres, fault, reason):
    host, port = postgres["host"], postgres["port"]
    url = {"password": f"postgresql://{USER}:wrong-pw@{host}:{port}/{DB}",
           "database": f"postgresql://{USER}:{PASSWORD}@{host}:{port}/nosuchdb",
           "port": f"postgresql://{USER}:{PASSWORD}@{host}:{_free_port()}/{DB}",
           "host": f"postgresql://{USER}:{PASSWORD}@no-such-host.invalid/{DB}"}[fault]
    out_dir = tmp_path / "out"
    code = main(["sweep", *SLOW, "--trials", "1", "--storage", url, "--out-dir", str(out_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    shown = url.replace(":wrong-pw@", ":***@").replace(f":{PASSWORD}@", ":***@")
    assert err.splitlines() == [f"mnistlab: error: --storage {shown}: cannot connect: {err.split('cannot connect: ')[1]}"]
    assert reason in err and "pw" not in err.replace("--storage", "")
    assert not out_dir.exists()  # nothing written


def test_without_psycopg_one_line_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    code = main(["sweep", *SLOW, "--storage", "postgresql://u:p@127.0.0.1/db", "--out-dir", str(tmp_path / "o")])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        "mnistlab: error: --storage postgresql://u:***@127.0.0.1/db: PostgreSQL needs the psycopg driver: "
        "pip install 'mnistlab[sweep]' (or: pip install 'psycopg[binary]')")


@pytest.mark.parametrize("args, message", [
    (["--storage", "postgresql://u:p@127.0.0.1:notaport/db"], "--storage postgresql://u:***@127.0.0.1:notaport/db: not a database URL"),
    (["--storage", "nosuchdb://x/y"], "--storage nosuchdb://x/y: not a database URL SQLAlchemy knows"),
    (["--heartbeat", "1"], "--heartbeat: a journal file has no heartbeat"),
    (["--storage", "postgresql://u:p@h/db", "--heartbeat", "5", "--grace", "9"], "--grace 9: give at least twice --heartbeat (10 s)"),
    (["--storage", "postgresql://u:p@h/db", "--heartbeat", "0"], "--heartbeat must be positive"),
])
def test_bad_storage_options_are_one_line(tmp_path, capsys, args, message):
    code = main(["sweep", *SLOW, *args, "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_help_states_the_heartbeat_defaults_the_code_uses(capsys):
    from mnistlab.cli import sweep as cli_sweep
    from mnistlab.sweep import study

    assert (cli_sweep.HEARTBEAT, cli_sweep.GRACE) == (study.HEARTBEAT, study.GRACE)
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"every S seconds (default {study.HEARTBEAT})" in text and f"(default {study.GRACE} or 2 x --heartbeat" in text


@pytest.mark.parametrize("kind", ["postgres", "journal"])
def test_the_claim_lock_lets_one_worker_at_a_time_count_and_start_a_trial(tmp_path, kind, request):
    """What keeps two workers from both starting the N-th trial: the second waits until the first let go."""
    import threading

    from mnistlab.sweep.study import ClaimLock, open_storage

    storage = request.getfixturevalue("postgres")["url"] if kind == "postgres" else str(tmp_path / "journal.log")
    store = open_storage(storage)
    first, second = ClaimLock(store, storage, "lock"), ClaimLock(store, storage, "lock")
    first.acquire()
    waiter = threading.Thread(target=second.acquire)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # blocked while the first holds it
    first.release()
    waiter.join(10)
    assert not waiter.is_alive() and second.held
    second.release()
    other = ClaimLock(store, storage, "another study")  # studies do not wait for each other
    other.acquire()
    assert other.held
    other.release()
