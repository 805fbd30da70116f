"""Shared fixtures: each test's share of the cores as torch threads, an isolated user cache and home,
seeded RNGs, a small synthetic data set, the real-data path."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from cores import THREADS, WORKERS  # before torch: OMP_NUM_THREADS must be set before it starts

if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)  # the processes the tests start take the same share

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lesson_helpers import record_lesson_configs  # noqa: E402

from mnistlab.cpus import usable_cpus  # noqa: E402

torch.set_num_threads(THREADS)
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where CUDA is available and are skipped, with the reason, elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """$XDG_CACHE_HOME and $HOME point at one temporary folder for the whole session.

    Nothing a test does reaches the real ~/.cache/mnistlab or ~; the decoded-MNIST and generated-set
    caches are built once per session in the temporary cache and shared by every test after that.
    Session-scoped and autouse, so it is set up before any other session fixture (mnist_raw, tiny_run).
    """
    root = tmp_path_factory.mktemp("user")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        (root / "home").mkdir()
        yield root


@pytest.fixture(autouse=True)
def _user_cache(_isolated_home, monkeypatch):
    """Each test starts with the session's temporary cache and home (a test may point them elsewhere)."""
    monkeypatch.setenv("HOME", str(_isolated_home / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_isolated_home / "cache"))
    return _isolated_home / "cache"


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most four (more workers mean more processes and servers
    started at once, and the timing windows of the signal and drain tests get tight)."""
    return max(1, min(4, usable_cpus()))


@pytest.fixture(autouse=True)
def _worker_threads():
    """Every test starts on its worker's thread count: a test whose code sets torch's thread count
    (--threads, Config.threads) must not change the numbers of the tests after it."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@pytest.fixture
def one_thread():
    """One torch thread for the test (recurrent nets run many tiny ops per step: one beats two on a busy
    2-core machine); _worker_threads puts the worker's count back afterwards."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def seeded():
    """Seed python, numpy and torch for a test that draws random numbers."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when it exists (our machines); tests that need it skip elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_bundle():
    """About 512 synthetic 28x28 images in a DataBundle on the CPU (train 384 / val 64 / test 128)."""
    from mnistlab.data.loader import build_bundle
    from mnistlab.data.synthetic import synthetic

    x, y = synthetic(512, num_classes=10, seed=0)
    tx, ty = synthetic(128, num_classes=10, seed=1)
    return build_bundle(x, y, tx, ty, tuple(str(i) for i in range(10)), name="synthetic", val_size=64, seed=0)


@pytest.fixture(scope="session")
def mnist_raw():
    """The embedded MNIST as uint8 arrays (cached decode after the first load)."""
    from mnistlab.data.raw import load_raw

    return load_raw("mnist")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny trained run (softmax on synthetic data, one thread) for tests that need a checkpoint."""
    from mnistlab.cli import main

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("runs")
    try:
        assert main(["train", "--dataset", "synthetic", "--model", "softmax", "--epochs", "1", "--val-size", "200",
                     "--no-figures", "-q", "--threads", "1", "--out-dir", str(out), "--name", "tiny"]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads 1 sets it for the whole process
    return out / "tiny"


@pytest.fixture(scope="session")
def lesson_configs(tmp_path_factory):
    """`lesson_configs(name, quick)`: the Configs of every training lesson `name` starts (record_lesson_configs),
    recorded once per session (once per xdist worker) and shared by tests/test_pinned_settings.py and
    tests/test_lecture_lessons.py where they run on the same worker."""
    cache: dict[tuple[str, bool], list[Any]] = {}
    threads = torch.get_num_threads()

    def get(name: str, quick: bool = False) -> list[Any]:
        if (name, quick) not in cache:
            try:
                out = tmp_path_factory.mktemp(f"lesson-{name}-{'quick' if quick else 'full'}")
                cache[name, quick] = record_lesson_configs(name, out, quick=quick)
            finally:
                torch.set_num_threads(threads)
        return list(cache[name, quick])

    return get
