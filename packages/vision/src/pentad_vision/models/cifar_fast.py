"""A fast CIFAR network in the style of the airbench record holders (Keller Jordan, airbench94).

A frozen 2x2 whitening convolution initialised from the data's patch covariance, then three
conv-pool-BN-GELU groups (64, 256, 256 channels), a global max-pool and a scaled linear head.
Options bring it to airbench94's exact initialisation: ``dirac_init`` starts every 3x3 convolution
as an identity on its first input channels, ``bn_momentum: 0.4`` keeps 0.6 of the batch-norm
running statistics per step (airbench's "momentum 0.6" in its own convention). The defaults keep
the network every measured recipe was trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pentad_vision.registry import IMAGE_CLASSIFIER, MODELS


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float = 0.6, dirac_init: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(out_channels, momentum=bn_momentum, eps=1e-12)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum, eps=1e-12)
        for norm in (self.norm1, self.norm2):  # airbench freezes the BN scale at 1 and trains only the shift
            norm.weight.requires_grad_(False)
        if dirac_init:  # identity on the first input channels: a signal path through every layer at step 0
            for conv in (self.conv1, self.conv2):
                with torch.no_grad():
                    nn.init.dirac_(conv.weight[: conv.weight.shape[1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class CifarFast(nn.Module):
    """airbench94-style network.

    Args:
        num_classes: Number of output logits.
        in_channels: Image channels.
        widths: Channels of the three groups.
        logit_scale: Multiplies the logits (airbench: 1/9), which acts like a temperature.
        bn_momentum: PyTorch batch-norm momentum (airbench94: 0.4).
        dirac_init: Start every 3x3 convolution as an identity on its first input channels (airbench94).

    Shapes:
        input ``(B, in_channels, H, W)`` with ``H, W >= 9`` -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths=(64, 256, 256),
        logit_scale: float = 1 / 9,
        bn_momentum: float = 0.6,
        dirac_init: bool = False,
    ) -> None:
        super().__init__()
        whiten_width = 2 * in_channels * 2 * 2
        self.whiten = nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # fixed by init_whitening(); only its bias trains
        self.groups = nn.Sequential(
            ConvGroup(whiten_width, widths[0], bn_momentum, dirac_init),
            ConvGroup(widths[0], widths[1], bn_momentum, dirac_init),
            ConvGroup(widths[1], widths[2], bn_momentum, dirac_init),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the 2x2 whitening filters from the eigenvectors of the patch covariance.

        Args:
            images: Normalised training images ``(N, C, H, W)`` (a few thousand are enough).
            eps: Added to the eigenvalues before the inverse square root.
        """
        c = images.shape[1]
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
        patches = patches.transpose(1, 3).reshape(-1, c * 4)  # features ordered (channel, row, column)
        patches = patches - patches.mean(0)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = (eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]).float().flip(0)
        filters = filters.view(c * 4, c, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))
        x = self.groups(x)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.logit_scale


@MODELS.register("cifar-fast", min_input_size=9, **IMAGE_CLASSIFIER)
def cifar_fast(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    widths: tuple[int, int, int] = (64, 256, 256),
    bn_momentum: float = 0.6,
    dirac_init: bool = False,
) -> CifarFast:
    """airbench94-style fast CIFAR net: whitening stem, three conv groups, scaled head
    (``bn_momentum: 0.4, dirac_init: true`` for airbench94's initialisation)."""
    return CifarFast(num_classes, in_channels, tuple(widths), bn_momentum=bn_momentum, dirac_init=dirac_init)
