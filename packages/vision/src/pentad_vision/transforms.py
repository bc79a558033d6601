"""Augmentations as small composable objects.

Batch transforms work on a float batch ``(B, C, H, W)`` in ``[0, 1]`` with a different random draw
per image, inside the training step: one tensor operation per batch instead of a Python call per
image. Per-image transforms (:class:`TrivialAugment`) run in the dataset on ``uint8`` images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from pentad_core.errors import ConfigError


class RandomCropPad:
    """Pad by ``padding`` pixels, then crop back to the original size at a random offset per image.

    Args:
        padding: Pixels added on every side.
        mode: ``"reflect"`` (airbench) or ``"constant"`` (zeros, the classic CIFAR recipe).
    """

    def __init__(self, padding: int = 4, mode: str = "reflect") -> None:
        if padding < 0:
            raise ConfigError(f"crop padding must be >= 0, got {padding}.")
        if mode not in ("reflect", "constant"):
            raise ConfigError(f"crop padding mode must be reflect or constant, got {mode!r}.")
        self.padding, self.mode = padding, mode

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.padding == 0:
            return x
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), mode=self.mode)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, channel, rows, cols]


class RandomFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Cutout:
    """Zero one ``size`` x ``size`` square per image at a random centre (DeVries & Taylor 2017)."""

    def __init__(self, size: int = 8) -> None:
        if size < 0:
            raise ConfigError(f"cutout size must be >= 0, got {size}.")
        self.size = size

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.size == 0:
            return x
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n,), generator=generator, device=x.device)[:, None, None]
        cx = torch.randint(0, w, (n,), generator=generator, device=x.device)[:, None, None]
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        top, left = cy - self.size // 2, cx - self.size // 2  # the square may stick out of the image
        inside = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size)
        return x * (~inside)[:, None].to(x.dtype)


class Compose:
    """Apply batch transforms in order."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return x

    def __len__(self) -> int:
        return len(self.transforms)


@dataclass
class TestTimeAugment:
    """Average a network's logits over mirrored and shifted copies of each test image (airbench94's
    test-time augmentation).

    Args:
        flip: Average each image with its mirror image.
        translate: Also shift each image by this many pixels up-left and down-right (reflect
            padding); the two shifted copies count as much as the original. 0 disables it.

    Shapes:
        ``x`` ``(B, C, H, W)`` (the network's input) -> logits ``(B, classes)``.
    """

    __test__ = False  # a transform, not a pytest test class

    flip: bool = False
    translate: int = 0

    def __post_init__(self) -> None:
        if self.translate < 0:
            raise ConfigError(f"tta_translate must be >= 0, got {self.translate}.")

    def _mirrored(self, net, x: torch.Tensor) -> torch.Tensor:
        logits = net(x)
        return 0.5 * (logits + net(x.flip(-1))) if self.flip else logits

    def __call__(self, net, x: torch.Tensor) -> torch.Tensor:
        logits = self._mirrored(net, x)
        if self.translate == 0:
            return logits
        shift = self.translate
        height, width = x.shape[-2:]
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        up_left = padded[..., :height, :width]
        down_right = padded[..., 2 * shift : 2 * shift + height, 2 * shift : 2 * shift + width]
        return 0.5 * logits + 0.25 * (self._mirrored(net, up_left) + self._mirrored(net, down_right))


class TrivialAugment:
    """TrivialAugmentWide (Müller & Hutter 2021) on one ``uint8`` ``(C, H, W)`` image (dataset-side)."""

    def __init__(self, num_magnitude_bins: int = 31) -> None:
        self.augment = v2.TrivialAugmentWide(num_magnitude_bins=num_magnitude_bins)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.augment(image)


@dataclass
class MixBatch:
    """MixUp (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) with soft targets.

    Args:
        num_classes: Number of classes (for one-hot targets).
        mixup_alpha: Beta(alpha, alpha) of MixUp; 0 disables it.
        cutmix_alpha: Beta(alpha, alpha) of CutMix; 0 disables it.
        prob: Probability of mixing a batch at all. When both are on, each batch picks one at random.
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch ``x (B, C, H, W)`` with labels ``y (B,)``; returns images and targets ``(B, classes)``."""
        target = F.one_hot(y, self.num_classes).to(x.dtype)
        if not self.enabled or torch.rand((), generator=generator).item() >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or torch.rand((), generator=generator).item() < 0.5
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        order = torch.randperm(x.shape[0], generator=generator, device=x.device)
        if use_cutmix:
            h, w = x.shape[2:]
            cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
            cy, cx = (
                int(torch.randint(0, h, (), generator=generator)),
                int(torch.randint(0, w, (), generator=generator)),
            )
            y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
            x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[order, :, y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
        else:
            x = lam * x + (1 - lam) * x[order]
        return x, lam * target + (1 - lam) * target[order]


def build_batch_augment(
    crop_padding: int = 0, crop_mode: str = "reflect", flip: bool = False, cutout: int = 0
) -> Compose:
    """The batch augmentation pipeline of a recipe (empty when everything is off)."""
    transforms: list = []
    if crop_padding > 0:
        transforms.append(RandomCropPad(crop_padding, crop_mode))
    if flip:
        transforms.append(RandomFlip())
    if cutout > 0:
        transforms.append(Cutout(cutout))
    return Compose(transforms)
