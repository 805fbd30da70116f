"""mnistlab's SGD computes what torch.optim.SGD computes, bit for bit, and shares its state layout."""

from __future__ import annotations

import pytest
import torch

from mnistlab.models import create_model
from mnistlab.training.optim import SGD


def _train(make_opt, steps=6, freeze_at=None):
    torch.manual_seed(0)
    model = create_model("fastcnn", 10, (1, 12, 12))
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(16, 1, 12, 12, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        for group in opt.param_groups:
            group["lr"] = 0.1 / (step + 1)
        # A parameter without a gradient for a while: its momentum buffer starts late.
        model.head[-1].bias.requires_grad_(freeze_at is None or step >= freeze_at)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("momentum, nesterov, weight_decay, dampening", [
    (0.9, True, 5e-4, 0.0), (0.9, True, 0.0, 0.0), (0.85, False, 1e-3, 0.1), (0.0, False, 0.0, 0.0),
])
@pytest.mark.parametrize("freeze_at", [None, 3])
def test_same_weights_and_state_as_torch(momentum, nesterov, weight_decay, dampening, freeze_at):
    kw = dict(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, dampening=dampening)
    ours, our_opt = _train(lambda p: SGD(p, **kw), freeze_at=freeze_at)
    theirs, their_opt = _train(lambda p: torch.optim.SGD(p, **kw), freeze_at=freeze_at)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    mine, torchs = our_opt.state_dict(), their_opt.state_dict()
    assert mine["state"].keys() == torchs["state"].keys()
    for i in mine["state"]:
        torch.testing.assert_close(mine["state"][i]["momentum_buffer"], torchs["state"][i]["momentum_buffer"], rtol=0, atol=0)


def test_state_moves_between_torch_and_ours():
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model, torch_opt = _train(lambda p: torch.optim.SGD(p, **kw), steps=3)
    ours = SGD(model.parameters(), **kw)
    ours.load_state_dict(torch_opt.state_dict())
    back = torch.optim.SGD(model.parameters(), **kw)
    back.load_state_dict(ours.state_dict())
    assert back.state_dict()["param_groups"][0]["lr"] == torch_opt.state_dict()["param_groups"][0]["lr"]
    for i, entry in torch_opt.state_dict()["state"].items():
        assert torch.equal(back.state_dict()["state"][i]["momentum_buffer"], entry["momentum_buffer"])


def test_mismatched_state_is_refused():
    opt = SGD(create_model("mlp").parameters(), lr=0.1, momentum=0.9)
    other = SGD(create_model("softmax").parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict(other.state_dict())


def test_bad_settings_are_refused():
    params = create_model("softmax").parameters()
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)


def test_no_dynamo_import_for_the_default_optimiser():
    """The reason this class exists: creating and stepping it must not import torch._dynamo."""
    import subprocess
    import sys

    code = ("import sys, torch; from mnistlab.training.optim import SGD; m = torch.nn.Linear(3, 2); "
            "o = SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True); m(torch.ones(1, 3)).sum().backward(); "
            "o.step(); o.zero_grad(); print(any(k.startswith('torch._dynamo') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
