"""Checkpoints: identical logits after a reload, config round trips, no pickles, clear errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from mnistlab.runs.checkpoint import load_checkpoint, save_checkpoint
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


# ----------------------------------------------------------------------------- one reader, every kind


def _save_kind(kind: str, path, pad: int = 0):
    """A small checkpoint of `kind` whose metadata carries `pad` extra characters; returns what it saved."""
    import numpy as np

    if kind == "image":
        model = create_model("softmax")
        save_checkpoint(path, model, Config(model="softmax", name="x" * pad or None), tuple("0123456789"), (1, 28, 28),
                        ((0.0,), (1.0,)))
        return model
    if kind == "lm":
        from mnistlab.lessons.lm.checkpoint import save_lm
        from mnistlab.lessons.lm.data import Vocab
        from mnistlab.lessons.lm.train import LMConfig, build_lm

        cfg = LMConfig(model="gru", hidden_size=8, embed_size=4, device="cpu")
        torch.manual_seed(0)
        model = build_lm(cfg, 5)
        save_lm(path, model, cfg, Vocab(tuple("ab c\n")), " ", {"note": "x" * pad})
        return model
    from mnistlab.lessons.scratch import MLP
    from mnistlab.lessons.scratch.train import save_numpy_model

    model = MLP(6, (5,), 3, seed=0)
    save_numpy_model(path, model, Config(model="mlp", engine="numpy", hidden=(5,), name="x" * pad or None), ("a", "b", "c"), (0.1, 0.3))
    return model


def _reload(kind: str, path):
    if kind == "image":
        return load_checkpoint(path).build_model()
    if kind == "lm":
        from mnistlab.lessons.lm.checkpoint import load_lm

        return load_lm(path)[0]
    from mnistlab.lessons.scratch.train import load_numpy_model

    return load_numpy_model(path)[0]


def _same(kind: str, a, b) -> bool:
    import numpy as np

    if kind == "numpy":
        return all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


KINDS = ["image", "lm", "numpy"]


@pytest.mark.parametrize("kind", KINDS)
def test_header_length_with_low_byte_0x80_loads_for_every_kind(tmp_path, kind):
    """The header length's low byte is the file's first byte: 0x80 (a pickle's PROTO opcode) must still load.

    On 6a3e47d the LM reader refused such a file as a pickle before parsing it (one LM in 32).
    """
    path = tmp_path / "c.safetensors"
    for pad in range(0, 300):
        model = _save_kind(kind, path, pad)
        data = path.read_bytes()
        if int.from_bytes(data[:8], "little") & 0xFF == 0x80:
            break
    else:
        pytest.fail("no padding produced a header length with low byte 0x80")
    assert data[:1] == b"\x80"
    assert _same(kind, model, _reload(kind, path))


@pytest.mark.parametrize("kind", KINDS)
def test_one_reader_names_the_kind_and_refuses_the_others(tmp_path, kind):
    from mnistlab.runs.checkpoint import read_checkpoint

    path = tmp_path / "c.safetensors"
    _save_kind(kind, path)
    ckpt = read_checkpoint(path)
    assert ckpt.kind == kind and ckpt.meta["format_version"] == 1
    for other in KINDS:
        if other != kind:
            with pytest.raises(CheckpointError, match=f"^{path}: an? .*, not an? "):
                _reload(other, path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_for_every_kind(tmp_path, kind, value):
    """A diverged model used to predict "8 (nan%)"; now the reader names the file and the tensor."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    _save_kind(kind, good)
    with safe_open(good, framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k).clone() for k in f.keys()}
    name = sorted(tensors)[-1]
    tensors[name].view(-1)[0] = value
    save_file(tensors, bad, metadata=header)
    _reload(kind, good)  # the control loads
    with pytest.raises(CheckpointError, match=f"^{bad}: tensor {name} holds NaN or infinite values"):
        _reload(kind, bad)


@pytest.mark.parametrize("kind", KINDS)
def test_run_folder_of_another_kind_is_named(tmp_path, kind):
    from mnistlab.runs.checkpoint import KINDS as FILES

    _save_kind(kind, tmp_path / FILES[kind][2][0])
    assert _same(kind, _reload(kind, tmp_path), _reload(kind, tmp_path / FILES[kind][2][0]))  # the folder works
    for other in KINDS:
        if other != kind:
            with pytest.raises(CheckpointError, match="this folder holds"):
                _reload(other, tmp_path)


def test_zero_std_in_the_metadata_is_refused(tmp_path):
    model = create_model("softmax")
    path = save_checkpoint(tmp_path / "c.safetensors", model, Config(model="softmax"), tuple("0123456789"), (1, 28, 28),
                           ((0.0,), (0.0,)))
    with pytest.raises(CheckpointError, match="normalisation is unusable"):
        load_checkpoint(path)
