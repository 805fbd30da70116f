"""`mnistlab export --format onnx`: every family exports and matches PyTorch at batch 1 and 37, the
metadata round-trips, predict through onnxruntime equals predict through torch, the .onnx path never
imports torch, and bad files get one clear line. (tests/test_export.py is `datasets export`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mnistlab.cli import main  # noqa: E402
from mnistlab.errors import CheckpointError, ExportError, MnistlabError  # noqa: E402
from mnistlab.evaluation.predict import Predictor  # noqa: E402
from mnistlab.export import onnx_export  # noqa: E402
from mnistlab.export.onnx_export import export_onnx, exported_model  # noqa: E402
from mnistlab.export.runtime import OnnxPredictor  # noqa: E402
from mnistlab.runs.checkpoint import load_checkpoint  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
SYN = ["--dataset", "synthetic", "--steps", "3", "--no-figures", "-q", "--threads", "1", "--val-size", "0"]
FAMILIES = {
    "softmax": ["--model", "softmax"],
    "logistic": ["--model", "logistic", "--positive", "3"],
    "mlp": ["--model", "mlp", "--dropout", "0.3", "--batch-norm"],
    "lenet": ["--model", "lenet"],
    "cnn": ["--model", "cnn"],
    "fastcnn": ["--model", "fastcnn"],
    "rnn": ["--model", "rnn"],
    "lstm": ["--model", "lstm"],
    "gru": ["--model", "gru"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("runs")
    try:
        for name, flags in FAMILIES.items():
            assert main(["train", *SYN, *flags, "--out-dir", str(out), "--name", name]) == 0, name
        assert main(["train", "--dataset", "multimnist", "--model", "mlp", "--loss", "bce", "--steps", "3",
                     "--train-size", "256", "--no-figures", "-q", "--threads", "1", "--val-size", "0",
                     "--out-dir", str(out), "--name", "multilabel"]) == 0
    finally:
        torch.set_num_threads(threads)
    return {name: out / name for name in [*FAMILIES, "multilabel"]}


@pytest.fixture(scope="module")
def exported(runs) -> dict[str, tuple[Path, dict]]:
    return {name: (run / "model.onnx", export_onnx(run)) for name, run in runs.items()}


@pytest.mark.parametrize("name", [*FAMILIES, "multilabel"])
def test_every_family_exports_and_matches_pytorch_at_batch_1_and_37(name, runs, exported):
    path, report = exported[name]
    assert path.is_file() and report["out"] == str(path)
    assert report["max_prob_diff"] <= 1e-4 and report["agreement"] >= 0.9999
    assert report["onnx_accuracy"] == pytest.approx(report["torch_accuracy"], abs=1e-4)
    ckpt = load_checkpoint(runs[name])
    model = exported_model(ckpt)  # with the run's test-time augmentation views (fastcnn's default)
    onnx = OnnxPredictor.from_file(path)
    rng = np.random.default_rng(0)
    for n in (1, 37):
        x = rng.random((n, *ckpt.in_shape), dtype=np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = onnx.logits(x)
        assert got.shape == want.shape == (n, max(2, len(ckpt.class_names)))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_metadata_round_trips(runs, exported):
    onnx = OnnxPredictor.from_file(exported["fastcnn"][0])
    ckpt = load_checkpoint(runs["fastcnn"])
    m = onnx.metadata
    assert onnx.missing == []
    assert onnx.class_names == ckpt.class_names and onnx.in_shape == ckpt.in_shape
    assert (m["model"], m["dataset"], m["multilabel"], m["probabilities"]) == ("fastcnn", "synthetic", "false", "softmax")
    assert float(m["test_accuracy"]) == pytest.approx(exported["fastcnn"][1]["onnx_accuracy"])
    assert json.loads(m["normalisation"])["mean"] == list(ckpt.norm[0])
    assert json.loads(m["preparation"])["size"] == 28 and m["version"]
    multi = OnnxPredictor.from_file(exported["multilabel"][0])
    assert multi.multilabel and multi.rule == "sigmoid" and multi.in_shape == (1, 28, 84)
    assert multi.threshold == 0.5
    # fastcnn runs test with 5 shifted views by default, and the graph holds them; an mlp run has none
    assert m["test_time_augmentation"].startswith("logits averaged over 5 shifted views")
    assert multi.metadata["test_time_augmentation"] == "none"
    run_accuracy = json.loads((runs["fastcnn"] / "evaluation.json").read_text())["accuracy"]
    assert float(m["test_accuracy"]) == pytest.approx(run_accuracy, abs=1e-9)


def test_the_graph_keeps_max_pool_nodes_and_slices_its_views(exported):
    """Inference in eager PyTorch computes fastcnn's max-pool and its test-time views its own way; the
    traced graph keeps onnxruntime's MaxPool, and builds the 5 views from slices, with no index table."""
    import onnx

    from onnx import numpy_helper

    graph = onnx.load(exported["fastcnn"][0]).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MaxPool") == 2 and "Max" not in ops
    assert ops.count("Slice") >= 5
    constants = [numpy_helper.to_array(t) for t in graph.initializer]
    constants += [numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.t.dims]
    assert not [c for c in constants if c.dtype.kind in "iu" and c.size > 64]  # no table of pixel indices


def test_predict_through_onnxruntime_equals_predict_through_torch(runs, exported, tmp_path, mnist_raw):
    files = []
    for i in range(6):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(255 - mnist_raw.test_x[i]).save(files[-1])  # dark ink on white paper
    files.append(tmp_path / "blank.png")
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(files[-1])
    for name in ("fastcnn", "lstm"):
        want = Predictor.from_checkpoint(runs[name]).predict_files(files, top_k=3)
        got = OnnxPredictor.from_file(exported[name][0]).predict_files(files, top_k=3)
        assert [r.get("label") for r in got] == [r.get("label") for r in want]
        assert [r["blank"] for r in got] == [False] * 6 + [True]
        for g, w in zip(got[:6], want[:6]):
            assert [c["class"] for c in g["top"]] == [c["class"] for c in w["top"]]
            assert g["prob"] == pytest.approx(w["prob"], abs=1e-5)


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch was imported on the ONNX path")
sys.meta_path.insert(0, Block())
from mnistlab.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(rc)
"""


def test_predict_on_an_onnx_file_never_imports_torch(exported, tmp_path, mnist_raw):
    png = tmp_path / "seven.png"
    Image.fromarray(mnist_raw.test_x[0]).save(png)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "predict", str(exported["fastcnn"][0]), str(png), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result[0]["blank"] is False and result[0]["label"] in [str(i) for i in range(10)]


def test_serve_app_on_an_onnx_file_never_imports_torch(exported):
    pytest.importorskip("starlette")
    code = BLOCK_TORCH.split("from mnistlab.cli")[0] + (
        "from mnistlab.serve.app import create_app\n"
        "from starlette.testclient import TestClient\n"
        "import io, numpy as np\nfrom PIL import Image\n"
        "app = create_app(sys.argv[1])\nc = TestClient(app)\n"
        "buf = io.BytesIO(); a = np.zeros((28, 28), np.uint8); a[6:22, 12:16] = 255; Image.fromarray(a).save(buf, 'PNG')\n"
        "r = c.post('/api/predict', content=buf.getvalue(), headers={'content-type': 'image/png'})\n"
        "assert r.status_code == 200, r.text\nassert c.get('/api/model').json()['model'] == 'fastcnn'\n"
        "print(r.json()['label'])\nassert 'torch' not in sys.modules\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code, str(exported["fastcnn"][0])], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in [str(i) for i in range(10)]


# ----------------------------------------------------------------------------- bad input


def test_a_truncated_or_corrupt_onnx_file_is_one_clear_line(exported, tmp_path, capsys):
    data = exported["softmax"][0].read_bytes()
    for name, content in (("cut.onnx", data[: len(data) // 2]), ("junk.onnx", b"not an onnx model" * 10),
                          ("empty.onnx", b"")):
        (tmp_path / name).write_bytes(content)
        assert main(["predict", str(tmp_path / name), str(tmp_path / "x.png")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mnistlab: error: ") and name in err[0], err
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        OnnxPredictor.from_file(tmp_path / "missing.onnx")


def test_an_onnx_file_without_mnistlab_metadata_runs_on_plain_unit_input(exported, tmp_path, mnist_raw, capsys):
    import onnx

    proto = onnx.load(exported["fastcnn"][0])
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, foreign)
    plain = OnnxPredictor.from_file(foreign)
    assert plain.missing == ["class_names", "in_shape", "probabilities"]
    assert plain.in_shape == (1, 28, 28) and plain.class_names == tuple(str(i) for i in range(10))
    ours = OnnxPredictor.from_file(exported["fastcnn"][0])
    images = mnist_raw.test_x[:20]
    np.testing.assert_allclose(plain.probabilities(images), ours.probabilities(images), atol=1e-6)
    # predict says what it lacked and what it assumed instead, in one warning line, and still answers.
    assert ours.assumptions() is None
    Image.fromarray(255 - mnist_raw.test_x[0]).save(tmp_path / "digit.png")
    assert main(["predict", str(foreign), str(tmp_path / "digit.png")]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == f"mnistlab: warning: {plain.assumptions()}"
    assert "no class_names, in_shape, probabilities in its metadata" in captured.err
    assert "plain [0, 1] images of 1x28x28" in captured.err and "classes named 0..9" in captured.err
    assert main(["predict", str(exported["fastcnn"][0]), str(tmp_path / "digit.png")]) == 0
    assert capsys.readouterr().out == captured.out  # the same graph on the same prepared image: the same answer
    # serve says it too, once, before it starts serving.
    pytest.importorskip("uvicorn")
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(foreign), "--port", "0", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(SRC)}, cwd=tmp_path)
    try:
        assert "serving onnx" in proc.stdout.readline()
        url = proc.stdout.readline().split()[1]
        _wait_until_answering(url)  # a Ctrl-C while it still starts is "interrupted", not a clean stop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert err.strip() == f"mnistlab: warning: {OnnxPredictor.from_file(foreign).assumptions()}"
    # ... but a graph whose input is not one image tensor says what is missing.
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["v"], ["y"])], "g",
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "vector.onnx")
    with pytest.raises(CheckpointError, match=r"no mnistlab metadata: class_names, in_shape, probabilities"):
        OnnxPredictor.from_file(tmp_path / "vector.onnx")


def test_a_model_that_cannot_be_exported_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = tmp_path / "m.onnx"
    assert main(["export", str(runs["softmax"]), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be exported to ONNX" in err[0] and "frobnicate" in err[0]
    assert not out.exists()


def test_an_export_that_does_not_match_pytorch_fails_and_writes_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "MAX_PROB_DIFF", -1.0)  # no graph can pass
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="does not match PyTorch.*nothing written") as info:
        export_onnx(runs["softmax"], out=out)
    assert str(info.value).startswith(f"{runs['softmax'] / 'last.safetensors'}: the ONNX graph does not match")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_without_the_extra_one_line_says_what_to_install(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MnistlabError, match=r"pip install 'mnistlab\[onnx\]'"):
        export_onnx(runs["softmax"], out=tmp_path / "m.onnx")
    with pytest.raises(MnistlabError, match=r"pip install 'mnistlab\[onnx\]'"):
        OnnxPredictor.from_file(tmp_path / "whatever.onnx")


def test_int8_quantization_keeps_accuracy_and_reports_speed(runs, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["export", str(runs["fastcnn"]), "--quantize", "int8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "int8: test accuracy" in text and "images/s" in text and "points vs fp32" in text
    q = OnnxPredictor.from_file(out)
    assert q.metadata["quantized"] == "int8"
    assert any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger")
               for n in __import__("onnx").load(out).graph.node)


def test_no_tta_exports_the_plain_model_and_says_so(runs, tmp_path):
    out = tmp_path / "plain.onnx"
    report = export_onnx(runs["fastcnn"], out=out, tta=False)
    onnx = OnnxPredictor.from_file(out)
    assert onnx.metadata["test_time_augmentation"] == "none"
    assert float(onnx.metadata["test_accuracy"]) == pytest.approx(report["onnx_accuracy"])
    ckpt = load_checkpoint(runs["fastcnn"])
    plain, with_views = exported_model(ckpt, tta=False), exported_model(ckpt)
    x = np.random.default_rng(1).random((5, *ckpt.in_shape), dtype=np.float32)
    with torch.inference_mode():
        want, views = plain(torch.from_numpy(x)).numpy(), with_views(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx.logits(x), want, atol=1e-4, rtol=1e-4)
    assert np.abs(views - want).max() > 1e-3  # the default file does hold the views


def test_an_unwritable_out_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch):
    import errno

    import mnistlab.export.onnx_export as onnx_export
    from mnistlab.errors import ExportError

    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(runs["softmax"], out=tmp_path / "missing" / "m.onnx")

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_export, "atomic_write_bytes", full_disk)  # as a full disk or read-only folder fails
    with pytest.raises(ExportError, match="cannot write the file \\(No space left on device\\); nothing written"):
        export_onnx(runs["softmax"], out=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def _wait_until_answering(url: str, limit: float = 30.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + limit
    while True:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)
