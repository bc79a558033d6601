"""Contract tests run over every registered model (a new registry entry is tested automatically)."""

import io

import pytest
import torch

from pentad_core.errors import ConfigError
from pentad_core.registry import ModelInfo
from pentad_medseg import MODELS
from pentad_medseg.models import build_model

#: Small settings so that the whole contract runs in seconds on a CPU.
SMALL = {"unet": {"depth": 2, "base_channels": 8}}
SMP_SMALL = {"encoder": "resnet18"}


def build(name: str, in_channels: int = 3, out_channels: int = 1) -> torch.nn.Module:
    options = SMALL.get(name, SMP_SMALL if name.startswith("smp-") else {})
    return MODELS.build(name, options=options, in_channels=in_channels, out_channels=out_channels)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "size"), [(3, 1, (64, 64)), (1, 3, (40, 56)), (2, 2, (33, 47))]
)
def test_output_shape_any_size(name, in_channels, out_channels, size):
    model = build(name, in_channels, out_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, *size))
    assert out.shape == (2, out_channels, *size)
    assert torch.isfinite(out).all()


def parameters_without_gradient(model: torch.nn.Module, inputs: torch.Tensor) -> list[str]:
    """Trainable parameters whose gradient, after one backward pass, is missing, not finite, or zero.

    Zero means below 1e-6 of the model's largest gradient: a gradient that is zero in exact arithmetic
    comes out as rounding noise (about 1e-8 relative); the smallest real one of the registered models
    is about 1e-3 of their largest.
    """
    model(inputs).square().mean().backward()
    trainable = [(name, p.grad) for name, p in model.named_parameters() if p.requires_grad]
    missing = [name for name, grad in trainable if grad is None or not torch.isfinite(grad).all()]
    if missing:
        return missing
    largest = max(float(grad.abs().max()) for _, grad in trainable)
    return [name for name, grad in trainable if not float(grad.abs().max()) > 1e-6 * largest]


@pytest.mark.parametrize("name", MODELS.names())
def test_gradients_reach_every_parameter(name):
    # Every trainable tensor must get a non-zero gradient: a zero one means a parameter that cannot
    # learn (unused, or a bias cancelled by the normalisation after it).
    missing = parameters_without_gradient(build(name).train(), torch.randn(2, 3, 64, 64))
    assert not missing, f"no non-zero finite gradient for {missing[:5]}"


def test_gradient_check_finds_a_parameter_that_cannot_learn():
    # A convolution bias right before batch normalisation is subtracted out again: its gradient is 0.
    nn = torch.nn
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    assert parameters_without_gradient(network.train(), torch.randn(2, 3, 8, 8)) == ["0.bias"]
    unused = torch.nn.ModuleDict({"used": torch.nn.Conv2d(3, 1, 1), "unused": torch.nn.Conv2d(3, 1, 1)})
    unused.forward = lambda images: unused["used"](images)
    assert parameters_without_gradient(unused, torch.randn(2, 3, 8, 8)) == ["unused.weight", "unused.bias"]


@pytest.mark.parametrize("name", MODELS.names())
def test_state_dict_round_trip(name):
    model = build(name).eval()
    images = torch.randn(2, 3, 64, 64)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # a differently initialised copy
    copy = build(name).eval()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model(images), copy(images))


def test_unet_options():
    for norm in ("batch", "instance", "none"):
        for upsampling in ("transpose", "bilinear"):
            model = MODELS.build("unet", in_channels=1, out_channels=2, depth=3, base_channels=4, norm=norm,
                                 dropout=0.1, upsampling=upsampling).eval()  # fmt: skip
            assert model(torch.randn(1, 1, 24, 24)).shape == (1, 2, 24, 24)
    with pytest.raises(ConfigError, match="norm"):
        MODELS.build("unet", norm="group")


def test_unet_learns_a_simple_mask():
    torch.manual_seed(0)
    model = MODELS.build("unet", in_channels=1, out_channels=1, depth=2, base_channels=8)
    images = torch.rand(8, 1, 32, 32)
    target = (images > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_smp_unknown_encoder_and_offline_weights(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown smp encoder"):
        MODELS.build("smp-unet", encoder="resnet-34")
    with pytest.raises(ConfigError, match="unknown model"):
        MODELS.build("smp-unet3d")
    # Published weights requested on a machine without the network (Hugging Face offline mode, an
    # empty download cache): smp really tries to load them, and the error says what to do.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    offline = r"'imagenet' weights for encoder resnet18.*looks offline.*encoder_weights=null"
    with pytest.raises(ConfigError, match=offline):
        MODELS.build("smp-unet", encoder="resnet18", encoder_weights="imagenet")
    assert not any(tmp_path.rglob("*.safetensors"))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_typed_info(name):
    info = MODELS.info(name)
    assert isinstance(info, ModelInfo)
    assert info.inputs == "image" and set(info.tasks) == {"binary", "multiclass"}
    assert info.family == ("smp" if name.startswith("smp-") else "pentad")
    MODELS.options(name, info.defaults, given=("in_channels", "out_channels"))  # its defaults are valid options


@pytest.mark.parametrize("name", MODELS.names())
def test_misspelled_model_option_names_it(name):
    with pytest.raises(ConfigError, match="'depht'.*Valid options"):
        build_model(name, {"depht": 3}, in_channels=3, classes=2)


def test_misspelled_loss_and_dataset_options_name_them():
    from pentad_medseg import load_dataset
    from pentad_medseg.losses import build_loss

    with pytest.raises(ConfigError, match="'smoth'.*Did you mean 'smooth'"):
        build_loss("bce-dice", {"smoth": 1.0})
    with pytest.raises(ConfigError, match="'gamma'"):
        build_loss("ce", {"gamma": 2.0})  # plain cross-entropy has no options
    with pytest.raises(ConfigError, match="'image_sise'.*Did you mean 'image_size'"):
        load_dataset("synthetic", None, image_sise=32)
    with pytest.raises(ConfigError, match="'val_image'.*Did you mean 'val_images'"):
        load_dataset("drive", "/nonexistent/drive", val_image=1)  # checked before any file is read


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_exports_to_onnx_with_dynamic_size(name, tmp_path):
    # What `export` and `serve --backend onnx` do with a trained run: export (dynamic batch, height and
    # width) and check against PyTorch on a second batch of another, odd size. A network that cannot
    # be exported is registered with exportable=False (served with the torch backend instead).
    from pentad_medseg.pipeline import export_network

    info = MODELS.info(name)
    if not info.exportable:
        pytest.skip(f"{name} is registered with exportable=False")
    report = export_network(build(name, 2, 3).eval(), 2, tmp_path / "model.onnx", 64)
    assert report.passed and report.max_abs_diff <= report.tolerance
