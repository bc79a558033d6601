"""Models: every factory takes ``num_classes``, ``in_channels`` and ``image_size``."""

from __future__ import annotations

from typing import Any

from torch import nn

from pentad_vision.models import cifar_fast, resnet_cifar, seed_convnet, torchvision_models  # noqa: F401
from pentad_vision.models.torchvision_models import replace_head
from pentad_vision.registry import MODEL_INFO, MODELS

__all__ = ["MODELS", "MODEL_INFO", "build_model", "count_parameters", "replace_head"]


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Example:
        >>> model = build_model("seed-convnet", num_classes=10, in_channels=1, image_size=28)
    """
    from pentad_core.errors import ConfigError

    MODELS.get(name)  # unknown names raise ConfigError listing close matches
    info = MODEL_INFO.get(name)
    if info is not None and image_size < info.min_input_size:
        raise ConfigError(
            f"model {name!r} needs images of at least {info.min_input_size}x{info.min_input_size}, got {image_size}.",
            "Pick another model or resize the images (--image-size).",
        )
    return MODELS.build(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
