"""benchmarks/gpu_speedrun.py: the GPU benchmark's own path, run on the CPU (CI has no GPU), and on a GPU when there is one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_speedrun.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_the_script_runs_the_speedrun_path_on_the_cpu_and_writes_its_measures(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run(tmp_path, "--device", "cpu", "--runs", "1", "--train-size", "1024", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["seed"] for r in report["runs"]] == [0] and report["train_size"] == 1024
    assert report["bf16"] is False  # autocast is for CUDA only
    for r in report["runs"] + [report["warmup_run"]]:
        assert r["train_plus_test_s"] == pytest.approx(r["train_s"] + r["test_s"])
        assert 0 < r["train_plus_test_s"] <= r["fit_wall_s"] + 1e-6
        assert r["test_acc"] > 0.3  # 4 steps of the speedrun's recipe already learn (chance: 0.1)
    assert "median training + test" in proc.stdout


def test_without_a_gpu_asking_for_cuda_is_one_error_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = _run(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["gpu_speedrun: error: --device cuda: no CUDA device is available "
                                                "(use --device auto or cpu)"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_a_gpu_the_speedrun_reaches_99_percent(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run(tmp_path, "--runs", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["min_test_acc"] >= 0.985
