"""The in-memory form of every medseg dataset, and building a registered dataset by name.

Every dataset loads into a :class:`SegmentationData`: lists of :class:`SegImage` per split, each image
held in memory as ``(C, H, W)`` float32 in ``[0, 1]`` (NIfTI: raw intensities) with an integer label
mask ``(H, W)`` and a boolean field-of-view (FOV) mask ``(H, W)``. Losses and metrics only use pixels
inside the FOV; datasets without one use an all-true FOV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.errors import ConfigError, DataError
from pentad_medseg.registry import DATASETS


@dataclass
class SegImage:
    """One 2D image with its ground truth.

    Attributes:
        name: Identifier used in CSV rows and output file names.
        image: ``(C, H, W)`` float32.
        mask: ``(H, W)`` int64 labels in ``0..classes-1``, or ``None`` when unknown (prediction only).
        fov: ``(H, W)`` bool, pixels that count.
        source: The image file.
        meta: Extra information, e.g. ``{"volume": stem, "slice": z, "affine": 4x4, "shape": (X, Y, Z)}``
            for NIfTI slices.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    fov: np.ndarray
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.shape[1], self.image.shape[2]


@dataclass
class SegmentationData:
    """The splits of a dataset.

    Attributes:
        train: Training images.
        val: Validation images (threshold selection, checkpoint selection).
        test: Test images (reported numbers).
        classes: Number of label values including background (2 for binary).
        in_channels: Channels of every image.
        name: Dataset name.
    """

    train: list[SegImage]
    val: list[SegImage]
    test: list[SegImage]
    classes: int
    in_channels: int
    name: str = ""

    def split(self, name: str) -> list[SegImage]:
        """The images of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; use train, val or test.")
        return getattr(self, name)

    def summary(self) -> str:
        """One line: image counts, channels, classes and image size."""
        first = (self.train or self.val or self.test)[0]
        return (
            f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test images, "
            f"{self.in_channels} channel(s), {self.classes} classes, first image {first.shape[0]}x{first.shape[1]}"
        )


def load_dataset(name: str, root: str | Path | None = None, **dataset_options: Any) -> SegmentationData:
    """Build dataset ``name`` from ``root`` (``None`` for a generated one) and check its images.

    Args:
        name: Registered dataset name (``drive``, ``folder``, ``nifti``, ``synthetic``).
        root: The dataset folder.
        **dataset_options: Options of the dataset's factory (``classes``, ``val_fraction``, ...).

    Raises:
        ConfigError: If the name is unknown or an option is not one the dataset takes.
        DataError: If the files are missing or malformed, there are no training images, or an
            image holds NaN or infinite values.
    """
    data = DATASETS.build(name, options=dataset_options, root=root)
    if not data.train:
        raise DataError(f"dataset {name!r} at {root} has no training images.")
    for item in data.train + data.val + data.test:
        if not np.isfinite(item.image).all():
            raise DataError(f"image {item.source or item.name} contains NaN or infinite values.")
    return data


def ratio_split(items: list, val_fraction: float, test_fraction: float, seed: int) -> tuple[list, list, list]:
    """Shuffle ``items`` with ``seed`` and cut them into train/val/test by the two fractions."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) and sum below 1."
        )
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = round(len(items) * val_fraction)
    n_test = round(len(items) * test_fraction)
    if len(items) - n_val - n_test < 1:
        raise DataError(f"only {len(items)} image(s): too few to split into train/val/test; add images.")
    val = [items[i] for i in order[:n_val]]
    test = [items[i] for i in order[n_val : n_val + n_test]]
    train = [items[i] for i in order[n_val + n_test :]]
    return train, val, test


def common_channels(images: list[SegImage], where: Path) -> int:
    """The channel count shared by all ``images``; DataError when they mix grey and colour."""
    counts = {item.image.shape[0] for item in images}
    if len(counts) > 1:
        raise DataError(f"images under {where} mix {sorted(counts)} channels; convert them all to grey or all to RGB.")
    return counts.pop()
