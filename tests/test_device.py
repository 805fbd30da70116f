"""Devices honoured everywhere: one meaning of 'auto', the model follows the data, a cfg.device that
contradicts the data is refused, autocast is entered only when wanted, bench's classic loop feeds the
model's device. Tests marked `gpu` run on a CUDA machine and are skipped elsewhere (see conftest.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import mnistlab.device
from mnistlab import fit, load_dataset
from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.models import create_model
from mnistlab.training.trainer import Trainer, evaluate

FAST = dict(model="softmax", steps=3, batch_size=64, save_run=False, figures=False)


def test_load_dataset_and_config_mean_the_same_auto(monkeypatch):
    """load_dataset's default device is Config's, resolved by the same function the trainer uses."""
    import mnistlab.training.trainer

    assert mnistlab.training.trainer.resolve_device is mnistlab.device.resolve_device  # still importable from train
    seen = []

    def spy(name="auto"):
        seen.append(name)
        return torch.device("cpu")

    monkeypatch.setattr(mnistlab.device, "resolve_device", spy)
    data = load_dataset("synthetic", val_size=200)
    assert seen == [Config().device] == ["auto"]
    assert data.train.x.device == torch.device("cpu")
    assert inspect.signature(load_dataset).parameters["device"].default == Config().device


def test_resolve_device():
    assert mnistlab.device.resolve_device("cpu") == torch.device("cpu")
    assert mnistlab.device.resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda: no CUDA device is available"):
            mnistlab.device.resolve_device("cuda")
        assert mnistlab.device.resolve_device("auto").type in ("cpu", "mps")


def test_fit_moves_the_model_to_the_datas_device(synthetic_bundle, monkeypatch):
    """On one device the move is a no-op, so watch the call: fit asks for the data's device (GPU: see below)."""
    model = create_model("softmax", 10, synthetic_bundle.in_shape)
    calls = []
    original = model.to

    def to(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("device"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "to", to)
    fit(model, synthetic_bundle, Config(**FAST))
    assert synthetic_bundle.train.x.device in calls


def test_a_cfg_device_that_contradicts_the_data_is_refused(synthetic_bundle):
    """CPU data with cfg.device='cuda': today's fit trained on the CPU and said nothing."""
    model = create_model("softmax", 10, synthetic_bundle.in_shape)
    with pytest.raises(ConfigError) as info:
        fit(model, synthetic_bundle, Config(**FAST, device="cuda"))
    message = str(info.value)
    assert "\n" not in message and "cuda" in message
    if torch.cuda.is_available():
        assert "the data is on cpu" in message
    fit(model, synthetic_bundle, Config(**FAST, device="cpu"))  # the data's own device is fine


def test_autocast_is_only_entered_when_enabled(synthetic_bundle, monkeypatch):
    """torch < 2.5 raises on torch.autocast('mps', enabled=False): disabled autocast must never be built."""

    def unsupported(*args, **kwargs):
        raise RuntimeError("User specified an unsupported autocast device_type 'mps'")

    monkeypatch.setattr(torch, "autocast", unsupported)
    model = create_model("softmax", 10, synthetic_bundle.in_shape)
    history = fit(model, synthetic_bundle, Config(**FAST))
    assert history.test is not None
    assert evaluate(model, synthetic_bundle.test).acc == history.test.acc
    with mnistlab.device.autocast(torch.device("mps"), None):
        pass


def test_channels_last_choice():
    conv = create_model("cnn", 10, (1, 28, 28))
    assert mnistlab.device.use_channels_last(conv, torch.device("cpu"))
    assert not mnistlab.device.use_channels_last(conv, torch.device("mps"))
    assert not mnistlab.device.use_channels_last(create_model("mlp", 10, (1, 28, 28)), torch.device("cpu"))


# ----------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_load_dataset_defaults_to_cuda_and_fit_moves_a_cpu_model_there():
    data = load_dataset("synthetic", val_size=200)
    assert data.train.x.device.type == "cuda"
    torch.manual_seed(0)
    model = create_model("cnn", 10, data.in_shape)  # built on the CPU
    history = fit(model, data, Config(model="cnn", epochs=2, batch_size=64, save_run=False))
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert history.test.acc > 0.8


@pytest.mark.gpu
def test_cpu_cfg_with_cuda_data_is_refused():
    data = load_dataset("synthetic", val_size=200)
    with pytest.raises(ConfigError, match="'cpu' was asked for, but the data is on cuda"):
        Trainer(create_model("softmax", 10, data.in_shape), data, Config(**FAST, device="cpu"))


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_matches_fp32():
    data = load_dataset("synthetic", val_size=200, device="cuda")
    model = create_model("cnn", 10, data.in_shape).cuda()
    fp32 = evaluate(model, data.test)
    bf16 = evaluate(model, data.test, autocast_dtype=torch.bfloat16)
    assert torch.allclose(fp32.logits, bf16.logits, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_bench_classic_loop_feeds_cpu_batches_to_the_models_device(device):
    """The lectures' DataLoader yields CPU tensors: each batch must reach the model's device."""
    from mnistlab.bench import ClassicDataset, classic_test, classic_train
    from mnistlab.data.synthetic import synthetic
    from mnistlab.training.trainer import build_optimizer

    x, y = synthetic(512, num_classes=10, seed=0)
    ds = ClassicDataset(x, y, 0.1307, 0.3081)
    cfg = Config(model="softmax", batch_size=64, save_run=False)
    torch.manual_seed(0)
    model = create_model("softmax", 10, (1, 28, 28)).to(device)
    seconds = classic_train(model, build_optimizer(model, cfg), lambda e: torch.utils.data.DataLoader(ds, batch_size=64,
                            shuffle=True), 2, lambda s: cfg.peak_lr)
    assert seconds > 0
    assert classic_test(model, torch.utils.data.DataLoader(ds, batch_size=256)) > 0.5


@pytest.mark.gpu
def test_bench_classic_path_runs_on_cuda():
    from mnistlab.bench import run_one
    from mnistlab.config import preset_values

    cfg = Config.from_dict({**preset_values("speedrun"), "dataset": "synthetic", "epochs": 1, "batch_size": 64,
                            "device": "cuda", "save_run": False, "figures": False})
    result = run_one("classic", cfg, target=0.5)
    assert result["final_acc"] > 0.5 and np.isfinite(result["train_seconds"])
