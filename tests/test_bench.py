"""`mnistlab bench`: both paths run, the table and JSON carry every measure, fractional epochs stop alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mnistlab.bench import ClassicDataset, classic_train, format_table
from mnistlab.cli import main
from mnistlab.config import Config
from mnistlab.data.loader import epoch_permutation
from mnistlab.models import create_model
from mnistlab.training.trainer import Hooks, Trainer, build_optimizer, lr_at


def test_fractional_epochs_take_the_same_steps_and_losses(synthetic_bundle):
    """1.5 epochs of a one-cycle schedule: the classic loop stops where the fast path stops, on the same curve."""
    bundle = synthetic_bundle
    cfg = Config(model="fastcnn", epochs=1.5, batch_size=32, lr=0.3, momentum=0.85, label_smoothing=0.1, save_run=False)
    torch.manual_seed(0)
    fast_model = create_model("fastcnn", 10, bundle.in_shape)
    classic_model = create_model("fastcnn", 10, bundle.in_shape)
    classic_model.load_state_dict(fast_model.state_dict())
    classic_model.to(memory_format=torch.channels_last)
    fast_losses: list[float] = []
    trainer = Trainer(fast_model, bundle, cfg)
    trainer.fit(Hooks(on_step=lambda i: fast_losses.append(i["loss"].item())))

    images = np.round((bundle.train.x[:, 0].numpy() * bundle.std[0] + bundle.mean[0]) * 255).astype(np.uint8)
    ds = ClassicDataset(images, bundle.train.y.numpy(), bundle.mean[0], bundle.std[0])
    steps_per_epoch = math.ceil(len(ds) / 32)
    total = math.ceil(1.5 * steps_per_epoch)

    def loader(epoch):
        return torch.utils.data.DataLoader(ds, batch_size=32, sampler=epoch_permutation(len(ds), 0, epoch, "cpu").tolist())

    classic_losses: list[float] = []
    classic_train(classic_model, build_optimizer(classic_model, cfg), loader, 2,
                  lambda s: lr_at(s, total, cfg.peak_lr, cfg.schedule, cfg.warmup), on_step=classic_losses.append,
                  max_steps=total, label_smoothing=cfg.label_smoothing)
    assert len(fast_losses) == len(classic_losses) == total == trainer.total_steps
    np.testing.assert_allclose(fast_losses, classic_losses, rtol=2e-3, atol=2e-4)


@pytest.mark.slow
def test_bench_command_runs_both_paths_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--dataset", "synthetic", "--seeds", "0", "--baseline-seeds", "0", "--epochs", "1", "--batch-size", "64",
            "--target", "0.5", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    for path in ("classic", "mnistlab"):
        (run,) = report["runs"][path]
        assert run["final_acc"] > 0.5 and run["time_to_target_s"] is not None
        assert run["train_plus_test_s"] > run["train_seconds"] > 0
        assert run["infer_images_per_s"] > 0 and run["single_image_ms"] > 0 and run["peak_rss_mb"] > 100
    assert report["config"]["model"] == "fastcnn"
    assert set(report["ratios_b_over_a"]) >= {"train_seconds", "train_plus_test_s", "infer_images_per_s", "peak_rss_mb"}
    table = format_table(report)
    assert "training + test evaluation (s)" in table and table in capsys.readouterr().out
