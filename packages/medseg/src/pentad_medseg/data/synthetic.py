"""Generated vessel-like curves (or cell-like blobs) on textured noise, with ground truth; offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.errors import ConfigError
from pentad_medseg.data.base import SegImage, SegmentationData
from pentad_medseg.registry import DATASETS


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape), sigma)
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def synthetic_image(
    rng: np.random.Generator, size: int = 128, kind: str = "vessels", channels: int = 3, classes: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one textured image with ground truth.

    ``vessels``: thin, branching, curved dark lines inside a circular FOV, as in fundus images.
    ``cells``: bright elliptic blobs; with ``classes == 3`` small blobs are class 1 and large ones class 2.

    Returns:
        ``(image (C, H, W) float32 in [0, 1], mask (H, W) int64, fov (H, W) bool)``.
    """
    from scipy.ndimage import distance_transform_edt

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2
    radius = np.hypot(yy - centre, xx - centre)
    mask = np.zeros((size, size), dtype=np.int64)
    if kind == "vessels":
        fov = radius <= size * 0.48
        lines = np.zeros((size, size), dtype=bool)
        width = np.zeros((size, size), dtype=np.float32)
        for _ in range(rng.integers(4, 8)):
            position = rng.uniform(0.15 * size, 0.85 * size, 2)
            angle = rng.uniform(0, 2 * np.pi)
            thickness = rng.uniform(0.8, 2.2)
            for _ in range(int(size * 1.2)):
                angle += rng.normal(0, 0.12)
                position = position + np.array([np.sin(angle), np.cos(angle)])
                y, x = round(position[0]), round(position[1])
                if not (0 <= y < size and 0 <= x < size):
                    break
                lines[y, x] = True
                width[y, x] = max(width[y, x], thickness)
        distance, (iy, ix) = distance_transform_edt(~lines, return_indices=True)
        vessel = distance <= width[iy, ix]
        mask[vessel & fov] = 1
        intensity = 0.55 + 0.08 * _smooth_noise(rng, (size, size), 6) - 0.25 * vessel
        intensity -= 0.15 * (radius / size) ** 2  # vignetting, like a fundus camera
        intensity = np.where(fov, intensity, 0.02)
    elif kind == "cells":
        fov = np.ones((size, size), dtype=bool)
        intensity = 0.3 + 0.06 * _smooth_noise(rng, (size, size), 4)
        for _ in range(rng.integers(5, 12)):
            large = rng.random() < 0.5
            r = rng.uniform(9, 14) if large else rng.uniform(4, 7)
            cy, cx = rng.uniform(r, size - r, 2)
            a = rng.uniform(0.7, 1.3)
            blob = ((yy - cy) / (r * a)) ** 2 + ((xx - cx) / (r / a)) ** 2 <= 1
            mask[blob] = (2 if large else 1) if classes >= 3 else 1
            intensity = np.where(blob, intensity + 0.35, intensity)
    else:
        raise ConfigError(f"synthetic kind must be 'vessels' or 'cells', got {kind!r}.")
    intensity = intensity + rng.normal(0, 0.04, (size, size))
    tint = np.linspace(1.0, 0.6, channels, dtype=np.float32) if channels > 1 else np.ones(1, np.float32)
    image = np.clip(intensity[None] * tint[:, None, None], 0, 1).astype(np.float32)
    return image, mask, fov


@DATASETS.register("synthetic", generated=True)
def synthetic(
    root: str | Path | None = None,
    kind: str = "vessels",
    image_size: int = 128,
    train_images: int = 16,
    val_images: int = 4,
    test_images: int = 4,
    in_channels: int = 3,
    classes: int = 2,
    split_seed: int = 0,
) -> SegmentationData:
    """Generated vessel-like curves (or cell-like blobs) on textured noise, with ground truth; offline.

    Args:
        root: Always ``None``: a generated dataset has no folder (the argument every dataset takes).
        kind: ``vessels`` (binary, inside a circular FOV) or ``cells`` (2 or 3 classes).
        image_size: Side of the square images.
        train_images: Images in the training split (``val_images``, ``test_images`` likewise).
        in_channels: Image channels (1 grey, 3 tinted colour).
        classes: Label values including background.
        split_seed: Seed of the generator: the same seed gives the same images.
    """
    if kind == "vessels" and classes != 2:
        raise ConfigError("synthetic vessels are binary; use classes=2 or kind=cells for 3 classes.")
    if classes not in (2, 3):
        raise ConfigError(f"synthetic data has 2 or 3 classes, got {classes}.")
    rng = np.random.default_rng(split_seed)

    def make(count: int, prefix: str) -> list[SegImage]:
        out = []
        for index in range(count):
            image, mask, fov = synthetic_image(rng, image_size, kind, in_channels, classes)
            out.append(SegImage(f"{prefix}{index:03d}", image, mask, fov))
        return out

    return SegmentationData(
        make(train_images, "train"), make(val_images, "val"), make(test_images, "test"), classes, in_channels,
        name="synthetic",
    )  # fmt: skip
