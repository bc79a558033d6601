"""torchvision's model families by name (``resnet18``, ``vgg11_bn``, ``mobilenet_v3_small``, ...).

Built from scratch by default. ``model_options: {weights: DEFAULT}`` (or an enum member name such as
``"IMAGENET1K_V1"``) loads torchvision's published weights through its weight enums; without a
network connection and without a cached copy that fails with a clear message.

Networks built from scratch use batch-norm momentum 0.1 (PyTorch's default; MobileNetV3's own 0.01
leaves the running statistics of a short training far from the data). Images smaller than a family's
smallest workable side (AlexNet 63, VGG 32, GoogLeNet 16, the others 8) are resized up inside the
network (bilinear, ``input_size`` option; exported to ONNX as a Resize), so every family trains on
28x28 digits as it is.
"""

from __future__ import annotations

import urllib.error

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pentad_core.errors import ConfigError, DownloadError
from pentad_vision.registry import IMAGE_CLASSIFIER, MODELS

#: name -> smallest square input side that survives the network's down-sampling (smaller images are resized up).
TORCHVISION_FAMILIES: dict[str, int] = {
    "resnet18": 8,
    "resnet34": 8,
    "resnet50": 8,
    "vgg11_bn": 32,
    "alexnet": 63,
    "googlenet": 16,
    "mobilenet_v3_small": 8,
}


class ChannelAdapter(nn.Module):
    """Feeds ``in_channels`` images to a 3-channel network: grey is repeated, others mixed by a 1x1 conv."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mix = nn.Conv2d(in_channels, 3, 1) if in_channels not in (1, 3) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            return self.mix(x)
        return x.expand(-1, 3, -1, -1) if self.in_channels == 1 else x


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The last ``nn.Linear`` of ``model`` as ``(parent module, attribute name, layer)``."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name, module
    if found is None:
        raise ConfigError(f"{type(model).__name__} has no linear classification head to replace.")
    name, layer = found
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attribute, layer


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the last linear layer by a fresh one with ``num_classes`` outputs (in place)."""
    parent, attribute, layer = last_linear(model)
    new = nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None)
    if isinstance(parent, nn.Sequential):
        parent[int(attribute)] = new
    else:
        setattr(parent, attribute, new)
    return model


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    """``(out, size)``: row ``i`` averages the input cells adaptive average pooling gives output ``i``."""
    matrix = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class ExportableAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that also exports to ONNX when the output size does not divide the input's.

    ONNX has no adaptive pooling: the exporter refuses, e.g., AlexNet's 6x6 and VGG's 7x7 pooling of
    the 1x1 feature maps of small images. Adaptive average pooling is linear, so the non-dividing case is
    computed as two averaging matrices (the same windows, the same numbers) that export as constants.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        size = self.output_size if isinstance(self.output_size, tuple) else (self.output_size, self.output_size)
        out_h, out_w = size[0] or height, size[1] or width  # None keeps that side
        if height % out_h == 0 and width % out_w == 0:
            return super().forward(x)
        rows = _pool_matrix(height, out_h).to(x)
        columns = _pool_matrix(width, out_w).to(x)
        return torch.einsum("oh,bchw,pw->bcop", rows, x, columns)


class TorchvisionClassifier(nn.Module):
    """A torchvision classification network behind a :class:`ChannelAdapter`.

    Shapes:
        input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        name: str,
        num_classes: int = 10,
        in_channels: int = 3,
        weights: str | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        #: ``(H, W)`` the images are resized to before the network, or ``None`` (taken as they are).
        self.input_size = tuple(input_size) if input_size is not None else None
        self.adapter = ChannelAdapter(in_channels)
        extra = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        if weights is None:
            self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
            for module in self.net.modules():  # MobileNetV3's BN momentum 0.01 is for 600-epoch ImageNet runs:
                if isinstance(module, nn.BatchNorm2d) and module.momentum is not None and module.momentum < 0.1:
                    module.momentum = 0.1  # a few epochs from scratch leave its running stats far off (test at chance)
        else:
            self.net = _published(name, weights, extra)
            if num_classes != last_linear(self.net)[2].out_features:
                replace_head(self.net, num_classes)
        if isinstance(getattr(self.net, "avgpool", None), nn.AdaptiveAvgPool2d):  # AlexNet, VGG: ONNX-exportable
            self.net.avgpool = ExportableAdaptiveAvgPool2d(self.net.avgpool.output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.net(self.adapter(x))


def _published(name: str, weights: str, extra: dict) -> nn.Module:
    try:
        enum = torchvision.models.get_model_weights(name)
        member = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights]
    except (KeyError, ValueError):
        raise ConfigError(
            f"torchvision has no weights {weights!r} for {name}.", "Use DEFAULT or an enum name."
        ) from None
    if name == "googlenet":
        extra = {}  # the published GoogLeNet expects its own aux/transform settings
    try:
        return torchvision.models.get_model(name, weights=member, **extra)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise DownloadError(
            f"cannot load torchvision weights {member} for {name} ({type(error).__name__}: {error}).",
            "You are probably offline: put the file into ~/.cache/torch/hub/checkpoints/ or drop the weights option.",
        ) from None


def network_input_size(
    name: str, image_size: int | tuple[int, int], input_size: int | None = None
) -> tuple[int, int] | None:
    """``(H, W)`` the images of ``image_size`` are resized to inside the network, or ``None`` (no resize).

    ``input_size`` (the model option) asks for a square side; by default only images smaller than the
    family's smallest workable side (:data:`TORCHVISION_FAMILIES`) are resized, up to that side.

    Raises:
        ConfigError: ``input_size`` below the family's smallest side.
    """
    smallest = TORCHVISION_FAMILIES[name]
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if input_size is not None:
        if input_size < smallest:
            raise ConfigError(
                f"model {name!r} needs images of at least {smallest}x{smallest}, got input_size {input_size}.",
                f"Pass model_options.input_size of at least {smallest}, or leave it unset.",
            )
        wanted = (input_size, input_size)
    else:
        wanted = (max(height, smallest), max(width, smallest))
    return None if wanted == (height, width) else wanted


def _register(name: str, min_size: int) -> None:
    """Register torchvision's ``name``; the factory takes ``weights`` and ``input_size``."""

    def factory(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 224,
        weights: str | None = None,
        input_size: int | None = None,
    ) -> TorchvisionClassifier:
        resize = network_input_size(name, image_size, input_size)
        return TorchvisionClassifier(name, num_classes, in_channels, weights, resize)

    factory.__name__ = name
    MODELS.register(
        name,
        factory,
        description=f"torchvision {name} (from scratch, or published weights via model_options.weights; "
        f"images under {min_size}x{min_size} are resized up inside the network).",
        min_input_size=1,
        family="torchvision",
        **IMAGE_CLASSIFIER,
    )


for _name, _size in TORCHVISION_FAMILIES.items():
    _register(_name, _size)
