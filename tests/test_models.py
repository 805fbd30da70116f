"""Every registered model: shapes, finite outputs, gradients everywhere, and it can overfit a batch."""

from __future__ import annotations

import warnings

import pytest
import torch

from mnistlab.config import Config
from mnistlab.errors import ConfigError
from mnistlab.training.losses import compute_loss, predict_classes
from mnistlab.models import count_parameters, create_model, list_models, register_model
from mnistlab.models.summary import check_head, layer_shapes, summarize


def _num_classes(name: str) -> int:
    return 2 if name == "logistic" else 10


@pytest.mark.parametrize("name", list_models())
def test_output_shape_finite_and_gradients(name, seeded):
    k = _num_classes(name)
    model = create_model(name, k, (1, 28, 28))
    x = torch.randn(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 1 if name == "logistic" else k)
    assert torch.isfinite(logits).all()
    y = torch.randint(0, k, (4,))
    compute_loss(logits, y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}.{pname} got no gradient"


@pytest.mark.parametrize("name", list_models())
def test_overfits_one_batch(name, seeded):
    k = _num_classes(name)
    torch.manual_seed(0)
    x = torch.randn(32, 1, 28, 28)
    y = torch.randint(0, k, (32,))
    model = create_model(name, k, (1, 28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3 if name in ("rnn", "lstm", "gru") else 1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = compute_loss(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    acc = (predict_classes(model(x)) == y).float().mean().item()
    assert acc == 1.0, f"{name} reached only {acc:.0%} on one batch of 32"


@pytest.mark.parametrize("name", ["softmax", "mlp", "lenet", "cnn", "fastcnn", "gru"])
def test_sizes_come_from_input_shape(name):
    model = create_model(name, 5, (3, 32, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 29, 27), (3, 9, 8)])
def test_fastcnn_takes_odd_and_small_images(shape):
    model = create_model("fastcnn", 4, shape)
    assert model(torch.randn(3, *shape)).shape == (3, 4)


def test_space_to_depth_moves_pixels_into_channels_losslessly():
    from mnistlab.models.cnn import SpaceToDepth

    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    y = SpaceToDepth(2)(x)
    assert y.shape == (2, 12, 2, 3)
    assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())
    assert torch.equal(torch.nn.functional.pixel_shuffle(y, 2), x)
    # Channel 1 of the first input channel holds the right-hand pixel of each 2x2 block.
    assert torch.equal(y[:, 1], x[:, 0, 0::2, 1::2])
    odd = SpaceToDepth(2)(torch.ones(1, 1, 5, 5))
    assert odd.shape == (1, 4, 3, 3) and torch.equal(odd, torch.ones_like(odd))  # border repeated, not zeros
    # Training (grad enabled) gets the channels_last layout the convolution wants, inference the
    # plain one; the same numbers either way.
    gray = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        plain = SpaceToDepth(2)(gray)
    trained = SpaceToDepth(2)(gray)
    assert torch.equal(plain, trained) and torch.equal(trained, torch.nn.functional.pixel_unshuffle(gray, 2))
    assert trained.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()


@pytest.mark.parametrize("shape", [(3, 16, 14, 14), (2, 4, 7, 9), (1, 1, 2, 5)])
def test_max_pool_inference_equals_torch_max_pool(shape, monkeypatch):
    from mnistlab.models import cnn
    from mnistlab.models.cnn import MaxPool2d

    monkeypatch.setattr(cnn, "PAIRWISE_FROM", 0)  # the pairwise path for these small maps too

    x = torch.randn(shape)
    x.view(-1)[::7] = 0.0  # ties
    x.view(-1)[3] = float("nan")
    x.view(-1)[5], x.view(-1)[-1] = float("inf"), float("-inf")
    pool = MaxPool2d()
    oracle_pool = torch.nn.functional.max_pool2d
    inputs = (x, x.contiguous(memory_format=torch.channels_last), x.transpose(-1, -2).contiguous().transpose(-1, -2),
              x.to(torch.bfloat16))
    for layout in inputs:
        for mode in (torch.no_grad, torch.inference_mode):
            with mode(), monkeypatch.context() as m:
                m.setattr(torch.nn.functional, "max_pool2d", None)  # calling ATen's max-pool here would fail
                fast = pool(layout.requires_grad_() if mode is torch.no_grad and layout.is_floating_point() else layout)
            oracle = oracle_pool(layout.detach(), 2)
            assert fast.shape == oracle.shape and fast.dtype == oracle.dtype
            assert torch.equal(fast.nan_to_num(-7.0), oracle.nan_to_num(-7.0))
            assert torch.equal(fast.isnan(), oracle.isnan())
    with torch.no_grad(), pytest.raises(RuntimeError, match="too small"):
        pool(torch.zeros(1, 1, 1, 5))
    # With gradients on (training, saliency maps) it is nn.MaxPool2d itself: the first maximum of a
    # cell gets the whole gradient.
    x = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]], requires_grad=True)
    pool(x).sum().backward()
    assert x.grad.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]


def test_cnns_still_compile_with_torchscript():
    x = torch.randn(2, 1, 28, 28)
    for name in ("lenet", "cnn", "fastcnn"):
        model = create_model(name, 10, (1, 28, 28)).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript, still there
            scripted = torch.jit.script(model)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x))


def test_convs_per_stage_adds_full_resolution_layers():
    model = create_model("cnn", 10, (1, 28, 28), channels=(8, 16), kernel_size=3, padding=1, convs_per_stage=2)
    kinds = [type(m).__name__ for m in model.features]
    stage = ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert kinds == stage * 2
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_fastcnn_is_the_default_and_cnn_keeps_its_architecture():
    assert Config().model == "fastcnn"
    assert count_parameters(create_model("cnn")) == 12_002  # checkpoints of the old default still load
    fast = create_model("fastcnn")
    assert [type(m).__name__ for m in fast.features][:2] == ["SpaceToDepth", "Conv2d"]
    assert fast.features[1].in_channels == 4


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="choose from .*cnn.*mlp"):
        create_model("resnet9000")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn")(lambda **_: None)


def test_create_model_drops_none_overrides():
    model = create_model("mlp", 10, (1, 28, 28), hidden=None, activation=None)
    assert count_parameters(model) == count_parameters(create_model("mlp", 10, (1, 28, 28)))


def test_mlp_knobs():
    model = create_model("mlp", 10, (1, 28, 28), hidden=(64, 32), activation="tanh", dropout=0.2, batch_norm=True, init="kaiming")
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh", "Dropout"]


def test_lenet_shapes_match_the_lecture():
    shapes = [s for _, _, s, _ in layer_shapes(create_model("lenet"), (1, 28, 28))]
    assert shapes[:5] == [(10, 24, 24), (10, 12, 12), (10, 12, 12), (20, 8, 8), (20, 4, 4)]
    assert "Linear(in_features=320" in summarize("lenet")


def test_mismatched_head_gets_an_explanation():
    model = create_model("lenet")
    model.head = torch.nn.Linear(100, 10)
    with pytest.raises(ConfigError, match=r"receives 320 features.*20x4x4"):
        check_head(model, (1, 28, 28))


def test_logistic_needs_two_classes():
    with pytest.raises(ConfigError, match="binary"):
        Config(model="logistic")
    with pytest.raises(ValueError, match="2 classes"):
        create_model("logistic", 10)


@pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 32, 32), (2, 12, 8)])
def test_folded_stem_computes_what_the_stem_and_first_convolution_do(in_shape):
    """fold_space_to_depth (used for ONNX export): one strided convolution, the same outputs up to rounding."""
    from mnistlab.models.cnn import SpaceToDepth, fold_space_to_depth

    torch.manual_seed(0)
    model = create_model("fastcnn", num_classes=10, in_shape=in_shape).eval()
    folded = fold_space_to_depth(model, in_shape)
    first = folded[0][0]
    assert isinstance(first, torch.nn.Conv2d) and first.stride == (2, 2) and first.kernel_size == (6, 6)
    x = torch.randn(9, *in_shape)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model.features[0], SpaceToDepth)  # the trained model keeps its stem
    # Nothing to fold: no stem (cnn), or an odd size (the stem pads it).
    plain = create_model("cnn", num_classes=10, in_shape=(1, 28, 28))
    assert fold_space_to_depth(plain, (1, 28, 28)) is plain
    odd = create_model("fastcnn", num_classes=10, in_shape=(1, 27, 27))
    assert fold_space_to_depth(odd, (1, 27, 27)) is odd
