"""Checkpoints: identical logits after a reload, config round trips, no pickles, clear errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from mnistlab.checkpoint import load_checkpoint, save_checkpoint
from mnistlab.config import Config
from mnistlab.errors import CheckpointError, ConfigError
from mnistlab.models import create_model


def _save(tmp_path, model_name="cnn", **cfg_kw):
    cfg = Config(model=model_name, **cfg_kw)
    torch.manual_seed(0)
    model = create_model(model_name, 10, (1, 28, 28), **cfg.model_overrides())
    path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, tuple("0123456789"), (1, 28, 28), ((0.1,), (0.3,)))
    return path, model, cfg


@pytest.mark.parametrize("name", ["softmax", "mlp", "cnn", "fastcnn", "lenet", "lstm"])
def test_reload_gives_identical_logits(tmp_path, name):
    path, model, _ = _save(tmp_path, name)
    model.eval()
    x = torch.randn(8, 1, 28, 28)
    again = load_checkpoint(path).build_model()
    assert torch.equal(model(x), again(x))


def test_config_survives_json(tmp_path):
    cfg = Config(model="mlp", hidden=(64, 32), lr=0.05, classes=(3, 8), betas=(0.8, 0.9))
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg
    path, _, saved = _save(tmp_path, "mlp", hidden=(64, 32))
    assert load_checkpoint(path).cfg == saved


def test_optimizer_state_round_trip(tmp_path):
    cfg = Config(model="softmax", optimizer="adam")
    model = create_model("softmax")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "o.safetensors", model, cfg, tuple("0123456789"), (1, 28, 28), ((0.0,), (1.0,)), optimizer=opt)
    restored = load_checkpoint(path).optimizer_state()
    fresh = torch.optim.Adam(create_model("softmax").parameters(), lr=1e-3)
    fresh.load_state_dict(restored)
    a, b = opt.state_dict()["state"][0], fresh.state_dict()["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"]) and float(a["step"]) == float(b["step"])


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/mnistlab-pwned", "w"))


def test_planted_pickle_executes_nothing(tmp_path):
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(pickle.dumps(_Boom()))
    torch.save({"x": _Boom()}, tmp_path / "evil.pt")
    import os

    if os.path.exists("/tmp/mnistlab-pwned"):
        os.unlink("/tmp/mnistlab-pwned")
    for path in (bad, tmp_path / "evil.pt", tmp_path):
        with pytest.raises(CheckpointError, match="pickle|not an mnistlab|not a valid"):
            load_checkpoint(path)
    assert not os.path.exists("/tmp/mnistlab-pwned")


def test_config_not_matching_weights(tmp_path):
    path, _, _ = _save(tmp_path, "mlp", hidden=(64,))
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(8 + int.from_bytes(open(path, "rb").read(8), "little"))[8:])
    meta = json.loads(header["__metadata__"]["mnistlab"])
    meta["config"]["hidden"] = [128]
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"mnistlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "bad.safetensors").build_model()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\xff" * 100])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    p = tmp_path / "c.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(p.name)):
        load_checkpoint(p)


def test_truncated_checkpoint(tmp_path):
    path, _, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)


def test_unknown_config_key_and_wrong_type():
    with pytest.raises(ConfigError, match="unknown config key"):
        Config.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="must be float"):
        Config.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="must be int"):
        Config.from_dict({"hidden": [1.5]})


def test_header_length_starting_like_a_pickle_still_loads(tmp_path):
    """A safetensors header length whose low byte is 0x80 (a pickle's first byte) is a valid checkpoint."""
    model = create_model("softmax")
    for n in range(1, 300):
        cfg = Config(model="softmax", name="x" * n)
        path = save_checkpoint(tmp_path / "c.safetensors", model, cfg, tuple("0123456789"), (1, 28, 28), ((0.0,), (1.0,)))
        data = path.read_bytes()
        if data[:1] == b"\x80":
            break
    else:
        pytest.fail("no name length produced a header length with low byte 0x80")
    assert load_checkpoint(path).cfg.name == "x" * n


def test_config_of_an_earlier_version_still_loads():
    """A config.json written before --space-to-depth, --convs-per-stage and --aug-flip existed."""
    old = Config(model="cnn").to_dict()
    for key in ("space_to_depth", "convs_per_stage", "aug_flip"):
        del old[key]
    cfg = Config.from_dict(old)
    assert cfg.model == "cnn" and cfg.space_to_depth is None and not cfg.aug_flip
    assert sum(p.numel() for p in create_model(cfg.model, 10, (1, 28, 28), **cfg.model_overrides()).parameters()) == 12_002
