"""`mnistlab bench --against`: the ported peers are the published models, they learn, each run is measured as a
process, runs interleave, a failure is one line, and the table and JSON carry every measure."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mnistlab.bench import peers
from mnistlab.bench.ports import MNIST_MEAN, MNIST_STD, TorchvisionMNIST, lecture, num_params, pytorch_examples, tuomaso
from mnistlab.cli import main
from mnistlab.errors import ConfigError

TINY = {"train_size": 512, "test_size": 200}


@pytest.fixture(scope="module")
def peer_rows():
    """The two peer runs that tests below assert on, each a real `python -m mnistlab.bench.ports.NAME`
    process, started together when the module's first test that needs them runs (most of a short peer
    run is its process starting: importing torch): run_peer's rows, as futures."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            # lecture at a target it meets after epoch 1
            "lecture": pool.submit(peers.run_peer, "lecture", 0, target=0.05, max_epochs=3, **TINY, timeout=300),
            # pytorch-examples at a target it never meets: two epochs of 4 Adadelta steps (256 images, batch 64)
            "pytorch-examples": pool.submit(peers.run_peer, "pytorch-examples", 0, target=1.0, max_epochs=2,
                                            train_size=256, test_size=200, timeout=300),
        }


@pytest.mark.parametrize("net, params", [
    # conv1 1*24*25+24, conv2 24*32*9+32, fc1 800*256+256, fc2 256*10+10
    (tuomaso.Net, 624 + 6944 + 205056 + 2570),
    (pytorch_examples.Net, 1_199_882),  # as pytorch/examples' README gives it
    (lambda: lecture.lenet(10, (1, 28, 28)), 260 + 5020 + 3210),
])
def test_ported_models_have_the_published_sizes(net, params):
    model = net()
    assert num_params(model) == params
    out = model.eval()(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 10)


def test_log_softmax_outputs_are_log_probabilities():
    for model in (tuomaso.Net(), pytorch_examples.Net().eval()):
        torch.testing.assert_close(model(torch.randn(4, 1, 28, 28)).exp().sum(1), torch.ones(4))


def test_torchvision_like_item_is_totensor_then_normalize():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5, dtype=np.int64)
    x, y = TorchvisionMNIST(images, labels)[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 3 and isinstance(y, int)
    torch.testing.assert_close(x[0], torch.from_numpy((images[3] / 255 - MNIST_MEAN) / MNIST_STD).float())


def test_tuomaso_data_is_normalised_and_shuffled_once():
    torch.manual_seed(0)
    images = np.arange(6 * 28 * 28, dtype=np.int64).reshape(6, 28, 28).__mod__(256).astype(np.uint8)
    labels = np.arange(6, dtype=np.int64)
    x, y = tuomaso.saved_split(images, labels)
    assert sorted(y.tolist()) == list(range(6)) and y.tolist() != list(range(6))
    for i, label in enumerate(y.tolist()):
        torch.testing.assert_close(x[i, 0], torch.from_numpy((images[label] / 255 - MNIST_MEAN) / MNIST_STD).float())


def test_tuomaso_port_learns_in_one_epoch(peer_rows):  # in process, while the peer runs start
    result = tuomaso.run({"seed": 0, "target": 0.99, "train_size": 4096, "test_size": 1000})
    ((epoch, seconds, acc),) = result["curve"]
    assert epoch == 1 and seconds > 0 and result["train_images"] == 4096
    assert acc > 0.7  # chance is 0.1; 16 steps of the published recipe


def test_peer_stops_at_the_target_and_reports_time_to_it(peer_rows):
    """lecture at a target it meets after epoch 1: one epoch trained, time to target = that epoch's seconds."""
    row = peer_rows["lecture"].result()
    assert row["error"] is None and row["epochs_run"] == 1 and row["epochs_to_target"] == 1
    assert row["time_to_target_s"] == row["curve"][0][1] > 0
    assert row["wall_s"] > row["train_seconds"] and row["peak_rss_mb"] > 100 and row["params"] == 8490


def test_peer_that_never_reaches_the_target_is_reported_as_such(peer_rows):
    row = peer_rows["pytorch-examples"].result()
    assert row["error"] is None and row["epochs_run"] == 2 and row["time_to_target_s"] is None
    assert row["final_acc"] > 0.3  # it learns: two epochs of 4 Adadelta steps, well above chance
    report = _report({"pytorch-examples": [row]}, target=1.0)
    assert f"not reached, best {100 * row['best_acc']:.2f}%" in peers.format_table(report)


def test_run_process_measures_the_childs_wall_and_peak_rss():
    code = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"
    proc = peers.run_process([sys.executable, "-c", code], "", timeout=60)
    assert proc["rc"] == 0 and not proc["timed_out"]
    assert proc["wall_s"] >= 0.3 and proc["peak_rss_mb"] > 300


def test_a_hung_or_crashing_peer_is_one_line_in_the_table(monkeypatch, peer_rows):
    peer_rows["lecture"].result()  # the real lecture run has looked its port up: PEERS["lecture"] may change now
    monkeypatch.setitem(peers.PEERS, "lecture", peers.Peer("mnistlab.bench.ports.no_such_port", 9, "", ""))
    with ThreadPoolExecutor(max_workers=1) as pool:  # the hung child meanwhile
        hung = pool.submit(peers.run_process, [sys.executable, "-c", "import time; time.sleep(30)"], "", timeout=0.5)
        crashed = peers.run_peer("lecture", 0, 0.99, timeout=300)
        hung = hung.result()
    assert crashed["error"].startswith("exit 1: ") and "no_such_port" in crashed["error"]
    assert hung["timed_out"] and hung["wall_s"] < 10
    table = peers.format_table(_report({"lecture": [crashed]}))
    lecture_lines = [line for line in table.splitlines() if "lecture" in line]
    assert lecture_lines[0].startswith("| lecture | 0/1 | failed |")
    assert lecture_lines[1].startswith("| lecture failed | seed 0: exit 1: ") and "Traceback" not in table


def test_runs_interleave_and_ratios_use_the_paired_runs(monkeypatch):
    order = []

    def fake_mnistlab(preset, seed, target, settings, timeout):
        order.append(("mnistlab", seed))
        return {"who": "mnistlab", "seed": seed, "error": None, "final_acc": 0.991, "best_acc": 0.991,
                "train_seconds": 2.0, "time_to_target_s": 2.0, "wall_s": 8.0 if len(order) < 3 else 4.0,
                "peak_rss_mb": 400.0}

    def fake_peer(name, seed, target, *rest):
        order.append((name, seed))
        return {"who": name, "seed": seed, "error": None, "final_acc": 0.985, "best_acc": 0.985, "train_seconds": 10.0,
                "time_to_target_s": None, "wall_s": 16.0, "peak_rss_mb": 800.0, "epochs_run": 1}

    monkeypatch.setattr(peers, "run_mnistlab", fake_mnistlab)
    monkeypatch.setattr(peers, "run_peer", fake_peer)
    report = peers.compare(["tuomaso", "lecture"], [0, 1], 0.99)
    assert order == [("mnistlab", 0), ("tuomaso", 0), ("mnistlab", 0), ("lecture", 0),
                     ("mnistlab", 1), ("tuomaso", 1), ("mnistlab", 1), ("lecture", 1)]
    # mnistlab's walls: 8 s in its first run, 4 s after; tuomaso's pairs are runs 1 and 3 (median 6), lecture's 2 and 4
    assert report["ratios_mnistlab_over_peer"]["tuomaso"] == {"time_to_target_s": None, "wall_s": 6.0 / 16,
                                                              "peak_rss_mb": 0.5}
    assert report["ratios_mnistlab_over_peer"]["lecture"]["wall_s"] == 4.0 / 16
    assert report["summary"]["tuomaso"]["time_to_target_s"] is None


def test_unknown_or_repeated_peer_is_one_error_line(capsys):
    assert main(["bench", "--against", "tuomaso,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mnistlab: error: --against: unknown peer 'nope' (choose from tuomaso, pytorch-examples, lecture)"]
    with pytest.raises(ConfigError, match="twice"):
        peers.parse_names("lecture,lecture")
    assert main(["bench", "--against", "lecture", "--peer-train-size", "0"]) == 2


def test_bench_against_runs_both_sides_and_writes_the_measures(tmp_path, capsys):
    out = tmp_path / "peers.json"
    # --no-tta: a training flag for mnistlab's command (and its 10,000 test images seen once, not three times)
    argv = ["bench", "--against", "tuomaso", "--seeds", "0", "--peer-train-size", "512", "--peer-test-size", "200",
            "--no-tta", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    ours, theirs = report["runs"]
    assert ours["who"] == "mnistlab" and theirs["who"] == "tuomaso" and theirs["train_images"] == 512
    for row in (ours, theirs):
        assert row["error"] is None and 0 < row["train_seconds"] < row["wall_s"] and row["peak_rss_mb"] > 100
        assert 0 <= row["final_acc"] <= 1
    assert report["settings"] == {"tta": False, "train_size": 512}
    assert set(report["ratios_mnistlab_over_peer"]["tuomaso"]) == {"time_to_target_s", "wall_s", "peak_rss_mb"}
    assert report["ratios_mnistlab_over_peer"]["tuomaso"]["wall_s"] == pytest.approx(ours["wall_s"] / theirs["wall_s"])
    printed = capsys.readouterr().out
    table = peers.format_table(report)
    assert table in printed and "| mnistlab train --preset speedrun --no-tta --train-size 512 | 1/1 |" in table
    assert "| tuomaso | 1/1 |" in table


def _report(rows: dict[str, list[dict]], target: float = 0.99) -> dict:
    """A report as compare builds it, around given peer rows (no mnistlab runs)."""
    return {"target": target, "against": list(rows), "mnistlab_command": "mnistlab train --preset speedrun",
            "summary": {"mnistlab": peers.summarize([]), **{n: peers.summarize(r) for n, r in rows.items()}},
            "ratios_mnistlab_over_peer": {n: dict.fromkeys(peers.RATIO_KEYS) for n in rows}}


def test_ctrl_c_during_a_run_kills_and_reaps_the_child_at_once():
    import os
    import signal
    import sys
    import threading
    import time

    started = time.monotonic()
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        peers.run_process([sys.executable, "-c", "import time; time.sleep(60)"], "", timeout=600)
    assert time.monotonic() - started < 10  # not the 60 s child, nor the 600 s timer
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for t in timers:
        t.join(2)  # a cancelled timer's thread ends at once
    assert not [t for t in timers if t.is_alive()]
