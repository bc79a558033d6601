"""Synthetic coloured shapes, generated offline: the data of ``demo`` and the fast tests.

Each image is one bright shape (the class) of a random colour, size and position on a noisy dark
background of another random colour, so a model has to learn the shape, not the colour.
"""

from __future__ import annotations

import numpy as np
import torch

from pentad_core.errors import ConfigError
from pentad_vision.data.base import ImageData, ImageSplit, split_train_val
from pentad_vision.registry import DATASETS

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar")


def _mask(shape: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = y - cy, x - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "triangle":  # apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        arm = r * 0.3
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    if shape == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if shape == "hbar":
        return (np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)
    return (np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r)  # vbar


def make_shapes(
    num_images: int, *, image_size: int = 32, num_classes: int = 4, channels: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Generate ``num_images`` shape images with balanced labels.

    Returns:
        ``(images uint8 (N, C, S, S), labels int64 (N,), class names)``.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ConfigError(f"synthetic num_classes must lie in [2, {len(SHAPES)}], got {num_classes}.")
    if image_size < 8:
        raise ConfigError(f"synthetic image_size must be at least 8, got {image_size}.")
    if channels not in (1, 3):
        raise ConfigError(f"synthetic channels must be 1 or 3, got {channels}.")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % num_classes)
    images = np.empty((num_images, channels, image_size, image_size), dtype=np.uint8)
    for i, label in enumerate(labels):
        background = rng.uniform(0, 90, size=channels)  # dark background, bright shape: a clear edge
        foreground = rng.uniform(150, 255, size=channels)
        r = rng.uniform(0.22, 0.38) * image_size
        cy, cx = rng.uniform(r, image_size - r, size=2)
        mask = _mask(SHAPES[label], image_size, cy, cx, r)
        picture = np.where(mask[None], foreground[:, None, None], background[:, None, None])
        picture = picture + rng.normal(0, 10, size=picture.shape)
        images[i] = np.clip(picture, 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), list(SHAPES[:num_classes])


@DATASETS.register("synthetic", generated=True)
def load_synthetic(
    *,
    num_train: int = 2000,
    num_test: int = 500,
    image_size: int = 32,
    num_classes: int = 4,
    channels: int = 3,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> ImageData:
    """Coloured shapes generated offline (no files): demo and tests."""
    images, labels, classes = make_shapes(
        num_train + num_test, image_size=image_size, num_classes=num_classes, channels=channels, seed=seed
    )
    train = ImageSplit(images[:num_train], labels[:num_train], classes)
    test = ImageSplit(images[num_train:], labels[num_train:], classes)
    return split_train_val(
        "synthetic", train, test, val_fraction=val_fraction, seed=seed, notes=["synthetic coloured shapes"]
    )
