"""Registries of the vision package: models and datasets by name.

A model or dataset registered here is picked up by the CLI (``models``, ``data list``) and by the
contract tests automatically.
"""

from __future__ import annotations

from dataclasses import dataclass

from pentad_core.registry import Registry

#: Model factories ``(num_classes, in_channels, image_size, **kwargs) -> nn.Module``.
MODELS: Registry = Registry("model")
#: Dataset loaders ``(root, **options) -> ImageData``.
DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class ModelInfo:
    """What the contract tests and the CLI need to know about a registered model.

    Attributes:
        min_input_size: Smallest square input side the network accepts.
        family: ``"pentad"`` for the package's own networks, ``"torchvision"`` for torchvision's.
    """

    min_input_size: int = 8
    family: str = "pentad"


MODEL_INFO: dict[str, ModelInfo] = {}


def register_model(name: str, *, min_input_size: int = 8, family: str = "pentad", description: str | None = None):
    """Decorator: register a model factory together with its :class:`ModelInfo`."""

    def add(factory):
        MODELS.register(name, factory, description=description)
        MODEL_INFO[name] = ModelInfo(min_input_size=min_input_size, family=family)
        return factory

    return add
