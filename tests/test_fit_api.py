"""The public `fit(model, data, cfg)`: it trains with the settings it uses and refuses the ones it cannot."""

from __future__ import annotations

import pytest
import torch

from mnistlab import Config, create_model, fit
from mnistlab.errors import ConfigError


@pytest.mark.parametrize("setting, named", [
    (dict(name="demo"), "name (only a saved run uses it"),
    (dict(out_dir="elsewhere", figures=False), "out_dir"),
    (dict(val_size=0.2), "val_size (load_dataset(...) takes it)"),
    (dict(normalize="unit"), "normalize"),
    (dict(engine="numpy"), "engine"),
    (dict(dataset="fashion-mnist"), "dataset='fashion-mnist'"),
])
def test_fit_refuses_settings_it_would_ignore(synthetic_bundle, setting, named):
    model = create_model("softmax", synthetic_bundle.num_classes, synthetic_bundle.in_shape)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match="fit\\(\\) does not use") as caught:
        fit(model, synthetic_bundle, Config(epochs=1, **setting))
    assert named in str(caught.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before any step


def test_fit_trains_with_the_default_config_and_honours_threads(synthetic_bundle):
    old = torch.get_num_threads()
    try:
        model = create_model("softmax", synthetic_bundle.num_classes, synthetic_bundle.in_shape)
        chance = 1 / synthetic_bundle.num_classes
        history = fit(model, synthetic_bundle, Config(epochs=2, lr=0.1, threads=1, dataset=synthetic_bundle.name))
        assert torch.get_num_threads() == 1
        assert history.test.acc > chance + 0.3
    finally:
        torch.set_num_threads(old)
