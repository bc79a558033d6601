"""Datasets: every loader returns an :class:`ImageData` with in-memory ``uint8`` splits."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pentad_core.errors import ConfigError
from pentad_vision.data import cifar, imagefolder, mnist, synthetic  # noqa: F401  (registers the loaders)
from pentad_vision.data.base import ImageData, ImageSplit, channel_stats, make_loader, stratified_split
from pentad_vision.registry import DATASETS

__all__ = ["ImageData", "ImageSplit", "channel_stats", "load_dataset", "make_loader", "stratified_split"]


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> ImageData:
    """Load the registered dataset ``name`` from ``root``.

    ``None`` options mean the loader's default. Options the loader does not take (e.g.
    ``skip_bad`` for the pickled CIFAR) are dropped when ``False`` and raise otherwise.

    Example:
        >>> data = load_dataset("synthetic", num_train=64, num_test=32)
        >>> data.train.images.shape
        torch.Size([58, 3, 32, 32])
    """
    loader = DATASETS.get(name)
    accepted = inspect.signature(loader).parameters
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue  # None means "the loader's default"
        if key in accepted:
            kwargs[key] = value
        elif value not in (None, False):
            raise ConfigError(f"dataset {name!r} does not take the option {key}={value!r}.")
    if root is None and name != "synthetic":
        raise ConfigError(f"dataset {name!r} needs a folder: pass --data-dir or set PENTAD_DATA.")
    return loader(root, **kwargs)
