"""Contract tests run over every registered model (a new entry is picked up automatically)."""

from __future__ import annotations

import io

import pytest
import torch

from pentad_core.errors import ConfigError
from pentad_core.registry import ModelInfo
from pentad_vision.models import MODELS, build_model, count_parameters


def _sizes(name: str) -> list[int]:
    smallest = MODELS.info(name).min_input_size
    return sorted({max(smallest, 28), max(smallest, 32) + 8})


@pytest.fixture(scope="module", params=MODELS.names())
def built(request):
    name = request.param
    torch.manual_seed(0)
    size = _sizes(name)[0]
    return name, size, build_model(name, num_classes=7, in_channels=3, image_size=size)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_typed_info_and_description(name):
    info = MODELS.info(name)
    assert isinstance(info, ModelInfo)
    assert info.tasks == ("classification",) and info.inputs == "image"
    assert info.min_input_size >= 1 and info.family in ("pentad", "torchvision")
    assert MODELS.describe(name), f"{name} has no description"


@pytest.mark.parametrize("name", MODELS.names())
def test_a_misspelled_model_option_names_it(name):
    with pytest.raises(ConfigError, match="'hiddne'.*Valid options"):
        build_model(name, {"hiddne": 8}, num_classes=3, image_size=64)
    with pytest.raises(ConfigError, match="num_classes.*set by pentad"):
        MODELS.build(name, {"num_classes": 3}, num_classes=3, in_channels=3, image_size=64)


def test_forward_shapes_no_nan_and_gradients_reach_every_parameter(built):
    name, size, model = built
    model.train()
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()  # every logit contributes, so every parameter gets a gradient
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    model.zero_grad(set_to_none=True)


def test_other_sizes_and_grey_input():
    for name in MODELS.names():
        if MODELS.info(name).family == "torchvision" and name != "resnet18":
            continue  # the same adapter code; keep the suite fast
        for size in _sizes(name):
            model = build_model(name, num_classes=3, in_channels=1, image_size=size).eval()
            with torch.no_grad():
                assert model(torch.rand(1, 1, size, size)).shape == (1, 3), (name, size)


def test_state_dict_round_trip_gives_identical_outputs(built):
    _name, size, model = built
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with torch.no_grad():  # scramble the weights in place (cheaper than building a second copy)
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
        assert not torch.equal(model(x), expected)
    buffer.seek(0)
    model.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    assert count_parameters(model) > 0


def _slim_heads(model: torch.nn.Module, width: int = 64) -> torch.nn.Module:
    """Narrow the hidden layers of huge fully connected heads (AlexNet's and VGG's 4096-wide ones) to ``width``.

    Their 60-120 M parameters make exporting take 10-30 s on 2 cores (0.2-0.5 GB of ONNX) and say nothing
    about exportability: a Linear exports the same way at any width. The convolutions, the pooling and the
    flattening, where exports fail, stay as registered; the full-width export was checked by hand.
    """
    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        linears = [i for i, m in enumerate(module) if isinstance(m, torch.nn.Linear)]
        if len(linears) < 2 or module[linears[0]].weight.numel() < 2**22:
            continue
        features = module[linears[0]].in_features
        for position, index in enumerate(linears):
            out = module[index].out_features if position == len(linears) - 1 else width
            module[index] = torch.nn.Linear(features, out)
            features = out
    return model


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_exports_to_onnx_with_parity(name, tmp_path):
    """At the smallest input the model takes, so the suite stays fast (see :func:`_slim_heads`)."""
    from pentad_core.export import check_onnx_parity, export_onnx

    info = MODELS.info(name)
    if not info.exportable:
        pytest.skip(f"{name} is registered exportable=False (served with the torch backend)")
    size = info.min_input_size
    torch.manual_seed(0)
    model = _slim_heads(build_model(name, num_classes=5, in_channels=3, image_size=size)).eval()
    path = export_onnx(model, torch.rand(2, 3, size, size), tmp_path / f"{name}.onnx")
    report = check_onnx_parity(model, path, torch.rand(3, 3, size, size), tolerance=1e-4)  # another batch size
    assert report.passed and report.batch_size == 3, report


def test_adaptive_pooling_that_does_not_divide_matches_torch():
    """AlexNet/VGG pool small images' feature maps to 6x6 / 7x7: ONNX has no such op, pentad's pooling does."""
    import torch.nn.functional as F

    from pentad_vision.models.torchvision_models import ExportableAdaptiveAvgPool2d

    for height, width, out in ((1, 1, 7), (3, 5, 7), (13, 13, 6), (14, 14, 7), (5, 9, (3, None))):
        x = torch.randn(2, 4, height, width)
        assert torch.allclose(ExportableAdaptiveAvgPool2d(out)(x), F.adaptive_avg_pool2d(x, out), atol=1e-6)


def test_unknown_model_and_too_small_images_raise_config_error():
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("resnet-does-not-exist", num_classes=10)
    with pytest.raises(ConfigError, match="at least 4x4"):
        build_model("seed-convnet", num_classes=10, image_size=3)
    with pytest.raises(ConfigError, match="at least 63x63"):
        build_model("alexnet", {"input_size": 32}, num_classes=10, image_size=32)


def test_torchvision_families_resize_small_images_up_inside_the_network():
    """28x28 digits train on AlexNet (63) and VGG (32) as they are: the network resizes them up, only when needed."""
    alexnet = build_model("alexnet", num_classes=10, in_channels=1, image_size=28).eval()
    assert alexnet.input_size == (63, 63)
    with torch.no_grad():
        assert alexnet(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("vgg11_bn", num_classes=3, image_size=28).input_size == (32, 32)
    assert build_model("resnet18", num_classes=3, image_size=28).input_size is None
    assert build_model("resnet18", {"input_size": 64}, num_classes=3, image_size=28).input_size == (64, 64)


def test_seed_convnet_flatten_size_follows_input_size():
    for channels, (h, w) in ((1, (28, 28)), (3, (32, 32)), (3, (40, 24)), (1, (5, 7))):
        model = MODELS.build("seed-convnet", num_classes=10, in_channels=channels, image_size=(h, w))
        assert model.flatten_size == 128 * (h // 4) * (w // 4)
        assert model(torch.rand(2, channels, h, w)).shape == (2, 10)
    model = build_model("seed-convnet", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="build it with the image size"):
        model(torch.rand(1, 1, 32, 32))


def test_cifar_fast_whitening_decorrelates_patches():
    model = build_model("cifar-fast", num_classes=10)
    torch.manual_seed(0)
    images = torch.randn(64, 3, 16, 16)
    images[:, 1] = 0.9 * images[:, 0] + 0.1 * images[:, 1]  # strongly correlated channels
    model.init_whitening(images, eps=1e-6)
    out = torch.nn.functional.conv2d(images, model.whiten.weight[:12])
    covariance = torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)


def test_published_weights_fail_clearly_offline(monkeypatch, tmp_path):
    from pentad_core.errors import DownloadError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DownloadError, match="offline"):
        build_model("resnet18", {"weights": "DEFAULT"}, num_classes=10)
    with pytest.raises(ConfigError, match="no weights"):
        build_model("resnet18", {"weights": "NOT_A_WEIGHT"}, num_classes=10)


def test_torchvision_networks_from_scratch_use_batch_norm_momentum_0_1():
    """MobileNetV3's 0.01 left a 3-epoch MNIST run's running statistics so far off that it tested at chance."""
    model = build_model("mobilenet_v3_small", num_classes=10, in_channels=1, image_size=28)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}
