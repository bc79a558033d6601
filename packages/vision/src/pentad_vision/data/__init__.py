"""Datasets: every loader returns an :class:`ImageData` with in-memory ``uint8`` splits.

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`):
one module per dataset, each registering itself in :data:`DATASETS`, plus the readers. Adding a
dataset is adding its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pentad_core.errors import ConfigError
from pentad_core.registry import import_submodules
from pentad_vision.data.base import ImageData, ImageSplit, channel_stats, make_loader, stratified_split
from pentad_vision.registry import DATASETS

import_submodules(__name__)

__all__ = ["DATASETS", "ImageData", "ImageSplit", "channel_stats", "load_dataset", "make_loader", "stratified_split"]


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> ImageData:
    """Load the registered dataset ``name`` from the folder ``root``.

    Args:
        name: Registered dataset name.
        root: The dataset folder; ``None`` for a generated dataset (``synthetic``), which has none.
        **options: Keyword arguments of the loader (``val_fraction``, ``seed`` and its own options),
            checked against its signature.

    Raises:
        ConfigError: Unknown dataset, an option the loader does not take (named, with the valid
            ones), or a missing folder for a dataset that reads files.

    Example:
        >>> data = load_dataset("synthetic", num_train=64, num_test=32)
        >>> data.train.images.shape
        torch.Size([58, 3, 32, 32])
    """
    if DATASETS.info(name).generated:
        return DATASETS.build(name, options)
    if root is None:
        raise ConfigError(f"dataset {name!r} needs a folder: pass --data-dir or set PENTAD_DATA.")
    return DATASETS.build(name, options, root=root)
