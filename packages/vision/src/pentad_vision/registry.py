"""Registries of the vision package: models and datasets by name, with typed metadata.

Each network (``models/<file>.py``) and each dataset (``data/<file>.py``) registers itself here with
a decorator in its own file; the CLI (``models``, ``data list``) and the contract tests pick it up.

Vocabulary of :class:`~pentad_core.registry.ModelInfo` in this domain: ``tasks=("classification",)``,
``inputs="image"``, ``min_input_size`` the smallest square side (pixels) that survives the network's
down-sampling, ``family`` ``"pentad"`` or ``"torchvision"``.
"""

from __future__ import annotations

from pentad_core.data import DatasetInfo
from pentad_core.registry import ModelInfo, Registry

#: Model factories ``(num_classes, in_channels, image_size, **model_options) -> nn.Module``.
MODELS: Registry = Registry("model", ModelInfo)
#: Dataset loaders ``(root, *, val_fraction, seed, **dataset_options) -> ImageData`` (no ``root`` when generated).
DATASETS: Registry = Registry("dataset", DatasetInfo)

#: The ModelInfo fields every vision network shares.
IMAGE_CLASSIFIER = {"tasks": ("classification",), "inputs": "image"}
