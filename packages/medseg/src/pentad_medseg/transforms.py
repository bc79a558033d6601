"""Augmentations that keep image, mask and FOV aligned, as small composable objects (MONAI style).

A sample is a dict ``{"image": (C, H, W) float32, "mask": (H, W) int64, "fov": (H, W) bool}``. Every
transform is called as ``transform(sample, rng)`` and returns a new sample; geometric transforms move
all three arrays the same way (nearest-neighbour for the label and FOV), intensity transforms touch
only the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pentad_core.errors import ConfigError

Sample = dict[str, np.ndarray]


class Transform:
    """Base class: ``__call__(sample, rng) -> sample``."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:  # pragma: no cover - interface
        raise NotImplementedError


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def _spatial(sample: Sample, function) -> Sample:
    """Apply ``function(array (..., H, W)) -> array`` to every spatial entry."""
    return {key: np.ascontiguousarray(function(value)) for key, value in sample.items()}


@dataclass
class RandomFlip(Transform):
    """Flip left-right and/or up-down, each with probability ``p``."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() < self.p:
            sample = _spatial(sample, lambda a: a[..., ::-1])
        if rng.random() < self.p:
            sample = _spatial(sample, lambda a: a[..., ::-1, :])
        return sample


@dataclass
class RandomRotate90(Transform):
    """Rotate by a random multiple of 90 degrees with probability ``p`` (square patches keep their size)."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        turns = int(rng.integers(1, 4))
        return _spatial(sample, lambda a: np.rot90(a, turns, axes=(-2, -1)))


def _warp(sample: Sample, coordinates: np.ndarray) -> Sample:
    """Resample every entry at ``coordinates`` (2, H, W): linear for the image, nearest for labels."""
    from scipy.ndimage import map_coordinates

    image = np.stack(
        [map_coordinates(channel, coordinates, order=1, mode="reflect") for channel in sample["image"]]
    ).astype(np.float32)
    out = {"image": image}
    for key in ("mask", "fov"):
        if key in sample:
            values = map_coordinates(sample[key].astype(np.float32), coordinates, order=0, mode="reflect")
            out[key] = values.astype(sample[key].dtype)
    return out


@dataclass
class RandomAffine(Transform):
    """Small random rotation, scaling and shift about the patch centre.

    Args:
        p: Probability of applying it.
        degrees: Maximum absolute rotation.
        scale: Maximum relative zoom (0.1 -> factor in [0.9, 1.1]).
        translate: Maximum shift as a fraction of the size.
    """

    p: float = 0.3
    degrees: float = 15.0
    scale: float = 0.1
    translate: float = 0.05

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        height, width = sample["image"].shape[-2:]
        angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees))
        factor = 1.0 / rng.uniform(1 - self.scale, 1 + self.scale)
        shift = rng.uniform(-self.translate, self.translate, 2) * (height, width)
        centre = np.array([(height - 1) / 2, (width - 1) / 2])
        cos, sin = np.cos(angle) * factor, np.sin(angle) * factor
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        dy, dx = yy - centre[0], xx - centre[1]
        coordinates = np.stack([cos * dy - sin * dx + centre[0] + shift[0], sin * dy + cos * dx + centre[1] + shift[1]])
        return _warp(sample, coordinates)


@dataclass
class RandomElastic(Transform):
    """Elastic deformation (Simard et al. 2003): a smooth random displacement field.

    Args:
        p: Probability of applying it.
        alpha: Displacement magnitude in pixels.
        sigma: Smoothness of the field in pixels.
    """

    p: float = 0.2
    alpha: float = 8.0
    sigma: float = 4.0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        from scipy.ndimage import gaussian_filter

        if rng.random() >= self.p:
            return sample
        height, width = sample["image"].shape[-2:]
        field = [gaussian_filter(rng.uniform(-1, 1, (height, width)), self.sigma) for _ in range(2)]
        field = [f / (np.abs(f).max() + 1e-8) * self.alpha for f in field]
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        return _warp(sample, np.stack([yy + field[0], xx + field[1]]))


@dataclass
class RandomBrightness(Transform):
    """Add a random offset in ``[-delta, delta]`` to the image."""

    p: float = 0.3
    delta: float = 0.1

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        return {**sample, "image": (sample["image"] + rng.uniform(-self.delta, self.delta)).astype(np.float32)}


@dataclass
class RandomContrast(Transform):
    """Scale deviations from the image mean by a factor in ``[1 - amount, 1 + amount]``."""

    p: float = 0.3
    amount: float = 0.2

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        image = sample["image"]
        mean = image.mean(axis=(-2, -1), keepdims=True)
        factor = rng.uniform(1 - self.amount, 1 + self.amount)
        return {**sample, "image": ((image - mean) * factor + mean).astype(np.float32)}


@dataclass
class RandomGamma(Transform):
    """Gamma correction ``x ** g`` with ``g`` in ``[1/(1+amount), 1+amount]``, on values clipped to [0, 1]."""

    p: float = 0.3
    amount: float = 0.3

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        gamma = np.exp(rng.uniform(-np.log1p(self.amount), np.log1p(self.amount)))
        return {**sample, "image": (np.clip(sample["image"], 0, 1) ** gamma).astype(np.float32)}


@dataclass
class Normalize(Transform):
    """Per-channel ``(x - mean) / std``."""

    mean: np.ndarray
    std: np.ndarray

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return {**sample, "image": ((sample["image"] - mean) / std).astype(np.float32)}


def channel_stats(
    images: Sequence[np.ndarray], fovs: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the pixels inside the FOV of the training images.

    Args:
        images: ``(C, H, W)`` arrays.
        fovs: Matching ``(H, W)`` bool arrays (all pixels when ``None``).

    Returns:
        ``(mean (C,), std (C,))`` float32; a std of 0 becomes 1 so constant channels stay finite.
    """
    total = count = squares = 0.0
    for index, image in enumerate(images):
        pixels = image[:, fovs[index]] if fovs is not None else image.reshape(image.shape[0], -1)
        pixels = pixels.astype(np.float64)
        total = total + pixels.sum(axis=1)
        squares = squares + (pixels**2).sum(axis=1)
        count += pixels.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


#: Names accepted by the ``augment`` config list.
AUGMENTATIONS = {
    "flip": RandomFlip,
    "rot90": RandomRotate90,
    "affine": RandomAffine,
    "elastic": RandomElastic,
    "brightness": RandomBrightness,
    "contrast": RandomContrast,
    "gamma": RandomGamma,
}


def build_augmentation(names: Sequence[str]) -> Compose:
    """``["flip", "rot90", ...]`` -> :class:`Compose` (intensity changes run before geometry).

    Raises:
        ConfigError: For an unknown name.
    """
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}.")
    return Compose([AUGMENTATIONS[name]() for name in names])
