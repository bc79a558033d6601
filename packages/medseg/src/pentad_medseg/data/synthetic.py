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
    ``photos``: RGB endoscopy-like photographs: one or two large lumpy domes (8-22 % of the side in
    radius; the foreground) on folded pink tissue, under uneven light with specular highlights. The
    domes differ from the tissue in shading, rim, texture and a slight hue, not in brightness, so a
    threshold fails and a network needs context (``channels`` is always 3; binary).

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
    elif kind == "photos":
        return _photo(rng, size, classes)
    else:
        raise ConfigError(f"synthetic kind must be 'vessels', 'cells' or 'photos', got {kind!r}.")
    intensity = intensity + rng.normal(0, 0.04, (size, size))
    tint = np.linspace(1.0, 0.6, channels, dtype=np.float32) if channels > 1 else np.ones(1, np.float32)
    image = np.clip(intensity[None] * tint[:, None, None], 0, 1).astype(np.float32)
    return image, mask, fov


def _photo(rng: np.random.Generator, size: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ``photos`` image: see :func:`synthetic_image`."""
    if classes != 2:
        raise ConfigError("synthetic photos are binary; use classes=2.")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = (xx * np.cos(angle) + yy * np.sin(angle)) / size
    folds = np.sin(along * rng.uniform(6, 14) + 2 * _smooth_noise(rng, (size, size), size / 8))
    shade = 0.75 + 0.06 * folds + 0.05 * _smooth_noise(rng, (size, size), size / 10)
    ly, lx = rng.uniform(0.3, 0.7, 2) * size
    light = 1.0 - 0.55 * (np.hypot(yy - ly, xx - lx) / size) ** 1.5
    mask = np.zeros((size, size), bool)
    dome = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(1, 3)):
        r = rng.uniform(0.08, 0.22) * size
        cy, cx = rng.uniform(r, size - r, 2)
        elongation = rng.uniform(0.7, 1.3)
        rr = np.sqrt(((yy - cy) / (r * elongation)) ** 2 + ((xx - cx) / (r / elongation)) ** 2)
        rr = rr + 0.12 * _smooth_noise(rng, (size, size), r / 3)
        blob = rr <= 1
        mask |= blob
        height = np.sqrt(np.clip(1 - rr**2, 0, 1))
        gy, gx = np.gradient(height)
        side = rng.uniform(0, 2 * np.pi)
        dome += np.where(blob, 0.10 * height + 6 * r / size * (gy * np.sin(side) + gx * np.cos(side)), 0)
        dome -= 0.06 * ((rr > 1) & (rr < 1.12))
    value = shade + dome + 0.03 * _smooth_noise(rng, (size, size), 1.5)
    value = (value + np.where(mask, 0.04 * _smooth_noise(rng, (size, size), 2.5), 0)) * light
    hue = np.where(mask, 0.03, 0.0) + 0.02 * _smooth_noise(rng, (size, size), size / 6)
    image = np.stack([value * (0.95 + hue), value * (0.55 - hue), value * (0.50 - 0.5 * hue)])
    image = np.where((_smooth_noise(rng, (size, size), 3) > 2.6)[None], 1.0, image)
    image = image + rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1).astype(np.float32), mask.astype(np.int64), np.ones((size, size), bool)


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
        kind: ``vessels`` (binary, inside a circular FOV), ``cells`` (2 or 3 classes) or ``photos``
            (binary, RGB, large objects; see :func:`synthetic_image`).
        image_size: Side of the square images.
        train_images: Images in the training split (``val_images``, ``test_images`` likewise).
        in_channels: Image channels (1 grey, 3 tinted colour).
        classes: Label values including background.
        split_seed: Seed of the generator: the same seed gives the same images.
    """
    if kind in ("vessels", "photos") and classes != 2:
        raise ConfigError(f"synthetic {kind} are binary; use classes=2 or kind=cells for 3 classes.")
    if classes not in (2, 3):
        raise ConfigError(f"synthetic data has 2 or 3 classes, got {classes}.")
    rng = np.random.default_rng(split_seed)

    def make(count: int, prefix: str) -> list[SegImage]:
        out = []
        for index in range(count):
            image, mask, fov = synthetic_image(rng, image_size, kind, 3 if kind == "photos" else in_channels, classes)
            out.append(SegImage(f"{prefix}{index:03d}", image, mask, fov))
        return out

    channels = 3 if kind == "photos" else in_channels
    return SegmentationData(
        make(train_images, "train"), make(val_images, "val"), make(test_images, "test"), classes, channels,
        name="synthetic",
    )  # fmt: skip
