"""Models: every factory takes ``num_classes``, ``in_channels`` and ``image_size`` (set from the data),
plus its own options (``model_options`` in the config), checked against its signature; build one
with :func:`build_model`.

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so each network registers itself in :data:`MODELS`: adding a model is adding its file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pentad_core.registry import import_submodules
from pentad_vision.registry import MODELS

import_submodules(__name__)

__all__ = ["MODELS", "build_model", "count_parameters"]


def build_model(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
) -> nn.Module:
    """Build the registered model ``name`` for images ``(in_channels, image_size, image_size)``.

    The network maps ``(B, in_channels, H, W)`` float images (normalised; ``H, W`` the size it was
    built for) to ``(B, num_classes)`` logits.

    Args:
        name: Registered name (see ``apps/vision models``).
        options: The model's own options (the config's ``model_options``) on top of its registered
            defaults; a key its factory does not take raises ConfigError naming it.
        num_classes: Output logits (from the data).
        in_channels: Image channels (from the data).
        image_size: Square side (or ``(H, W)``) of the data's images; must be at least the model's
            ``min_input_size``.

    Raises:
        ConfigError: Unknown name, misspelled option, or images smaller than the network accepts.

    Example:
        >>> model = build_model("seed-convnet", {"hidden": 128}, num_classes=10, in_channels=1, image_size=28)
    """
    from pentad_core.errors import ConfigError

    smallest = MODELS.info(name).min_input_size  # unknown names raise ConfigError listing close matches
    if min(image_size if isinstance(image_size, tuple) else (image_size,)) < smallest:
        raise ConfigError(
            f"model {name!r} needs images of at least {smallest}x{smallest}, got {image_size}.",
            "Pick another model or resize the images (--image-size).",
        )
    return MODELS.build(name, options=options, num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
