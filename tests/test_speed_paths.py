"""Issue 17's process-level speed-ups: the allocator thresholds, the fast exit, the 3-view TTA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mnistlab import allocator
from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.training.trainer import shift_images, tta_shifts, tta_views


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_allocator_thresholds_set_on_glibc_and_left_alone_when_the_user_chose(monkeypatch):
    for name in allocator._ENV + ("MNISTLAB_MALLOC",):
        monkeypatch.delenv(name, raising=False)
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert allocator.keep_freed_blocks() is True
    monkeypatch.setenv("MNISTLAB_MALLOC", "default")
    assert allocator.keep_freed_blocks() is False
    monkeypatch.delenv("MNISTLAB_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert allocator.keep_freed_blocks() is False


def test_allocator_does_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_blocks() is False


def test_three_view_tta_is_the_image_and_its_diagonal_shifts():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    views = tta_views(x, count=3)
    assert tta_shifts(3) == ((0, 0), (1, 1), (-1, -1)) and len(views) == 3
    assert torch.equal(views[0], x)
    # shifted right and down by one: the pixel at (r, c) moves to (r + 1, c + 1); the new border is each image's minimum
    assert torch.equal(views[1][..., 1:, 1:], x[..., :-1, :-1])
    for i in range(2):
        assert torch.equal(views[1][i, 0, 0, :], x[i].amin().expand(6)) and torch.equal(views[1][i, 0, :, 0], x[i].amin().expand(6))
    assert torch.equal(views[2], shift_images(x, -1, -1))
    with pytest.raises(ValueError, match="3 or 5"):
        tta_shifts(4)


def test_tta_views_needs_tta_and_is_3_or_5():
    from mnistlab.config import ignored_options

    assert "test-time augmentation is off" in ignored_options(Config(tta=False, tta_views=3))["tta_views"]
    assert "test-time augmentation is off" in ignored_options(Config(model="mlp", tta_views=3))["tta_views"]
    assert "tta_views" not in ignored_options(Config(tta_views=3))  # fastcnn's default: on
    assert "tta_views" not in ignored_options(Config(model="mlp", tta=True, tta_views=3))
    with pytest.raises(ConfigError, match="tta"):
        Config(tta=True, tta_views=4).validate()
    Config(tta=True, tta_views=3).validate()


def _entry(argv: list[str]) -> subprocess.CompletedProcess:
    """Run `mnistlab.cli.entry` with os._exit and sys.exit reporting which one ended the process."""
    code = (
        "import os, sys\n"
        "from mnistlab import cli\n"
        "os._exit = lambda c: (print('os._exit', c, flush=True), os.kill(os.getpid(), 9))\n"
        f"sys.argv = ['mnistlab'] + {argv!r}\n"
        "try:\n    cli.entry()\nexcept SystemExit as e:\n    print('sys.exit', e.code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_entry_exits_at_once_after_fast_commands_only(tmp_path):
    bad = _entry(["evaluate", str(tmp_path / "missing")])
    assert "os._exit 1" in bad.stdout and "no such run" in bad.stderr  # the error line is flushed first
    other = _entry(["models"])
    assert "sys.exit 0" in other.stdout and "fastcnn" in other.stdout


def test_shift_equals_padding_each_image_with_its_own_background():
    import torch.nn.functional as F

    def padded(x, dx, dy):  # the reference: pad each image's channel with its minimum, then crop
        pad, (h, w) = max(abs(dx), abs(dy)), x.shape[-2:]
        return torch.stack([torch.stack([F.pad(c, (pad,) * 4, value=float(c.amin()))[pad - dy:pad - dy + h, pad - dx:pad - dx + w]
                                         for c in img]) for img in x])

    x = torch.randn(4, 2, 7, 9)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (2, -1)):
        assert torch.equal(shift_images(x, dx, dy), padded(x, dx, dy)), (dx, dy)
    # one image's result does not depend on the batch it is in
    assert torch.equal(shift_images(x[1:2], 1, 1), shift_images(x, 1, 1)[1:2])


@pytest.mark.parametrize("flags, views", [([], 5), (["--tta-views", "3"], 3), (["--no-tta"], 0)])
def test_predict_and_evaluate_use_the_views_the_run_was_tested_with(tmp_path, flags, views):
    import json

    from mnistlab import cli
    from mnistlab.data.raw import load_raw
    from mnistlab.evaluation.predict import Predictor
    from mnistlab.models.tta import TTAModel

    assert cli.main(["train", "--dataset", "synthetic", "--steps", "20", "--no-figures", "-q", "--threads", "1",
                     "--out-dir", str(tmp_path), "--name", "r", *flags]) == 0
    run = tmp_path / "r"
    predictor = Predictor.from_checkpoint(run)
    assert isinstance(predictor.model, TTAModel) == bool(views)
    if views:
        assert predictor.model.views == views
    test = load_raw("synthetic").test_x
    probs = predictor.probabilities(test)
    from_run = json.loads((run / "evaluation.json").read_text())["accuracy"]
    labels = load_raw("synthetic").test_y
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(from_run, abs=1e-9)


def test_tta_can_be_turned_off_for_a_checkpoint_and_not_for_an_onnx_graph(tmp_path):
    from mnistlab import cli
    from mnistlab.export.runtime import load_predictor
    from mnistlab.models.tta import TTAModel

    assert cli.main(["train", "--dataset", "synthetic", "--steps", "3", "--no-figures", "-q", "--threads", "1",
                     "--out-dir", str(tmp_path), "--name", "r"]) == 0
    assert isinstance(load_predictor(tmp_path / "r").model, TTAModel)
    assert not isinstance(load_predictor(tmp_path / "r", tta=False).model, TTAModel)
    with pytest.raises(ConfigError, match="--no-tta: .*ONNX graph, which holds its own"):
        load_predictor(tmp_path / "model.onnx", tta=False)
    pytest.importorskip("starlette")
    from mnistlab.serve.app import create_app

    assert not isinstance(create_app(tmp_path / "r", tta=False).state.service.predictor.model, TTAModel)


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("count", [3, 5])
def test_stacked_views_equal_the_shifts_they_stand_for(count, mirror):
    """TTAModel slices a small batch's views from one framed copy: bit for bit the views shift_images
    defines, image-major, and the same logits as a call per view."""
    from mnistlab.models.registry import create_model
    from mnistlab.models.tta import SMALL_BATCH, TTAModel, _StackedViews

    torch.manual_seed(0)
    for in_shape in ((1, 28, 28), (3, 11, 9), (1, 1, 2)):
        x = torch.randn(7, *in_shape)
        expected = [shift_images(x, dx, dy) for dx, dy in tta_shifts(count)]
        expected += [v.flip(-1) for v in expected] if mirror else []
        got = tta_views(x, mirror=mirror, count=count)
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))
        stacked = _StackedViews(count, mirror).stacked(x)
        assert torch.equal(stacked, torch.stack(expected, 1).reshape(-1, *in_shape))
        if in_shape[1] < 3:
            continue  # (fastcnn needs a map it can pool twice)
        model = create_model("fastcnn", num_classes=4, in_shape=in_shape).eval()
        for n in (1, SMALL_BATCH // len(expected) + 1):  # one call over all views, then a call per view
            batch = torch.randn(n, *in_shape)
            views = [shift_images(batch, dx, dy) for dx, dy in tta_shifts(count)]
            views += [v.flip(-1) for v in views] if mirror else []
            with torch.inference_mode():
                plain = torch.stack([model(v) for v in views]).mean(0)
                torch.testing.assert_close(TTAModel(model, count, mirror)(batch), plain, rtol=1e-5, atol=1e-6)
