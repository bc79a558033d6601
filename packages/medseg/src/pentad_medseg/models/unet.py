"""A classic U-Net (Ronneberger et al. 2015) with configurable depth, width, normalisation and up-sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.errors import ConfigError
from pentad_medseg.inference import pad_to_multiple
from pentad_medseg.registry import MODELS

NORMS = ("batch", "instance", "none")
UPSAMPLING = ("transpose", "bilinear")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU; optional dropout between them."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, dropout: float) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias), _norm(norm, out_channels)]
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net: an encoder of ``depth`` down-sampling steps, a mirrored decoder with skip connections.

    Inputs of any size work: they are padded (reflect) to a multiple of ``2**depth`` and the output
    is cropped back.

    Args:
        in_channels: Image channels (1 for grey, 3 for RGB, ...).
        out_channels: Output logits: 1 for binary segmentation, N for N-class softmax.
        depth: Number of 2x down-sampling steps.
        base_channels: Channels of the first level; doubled at every level.
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        dropout: Dropout2d probability inside the deepest two levels (0 disables).
        upsampling: ``"transpose"`` (learned 2x2 transposed convolution) or ``"bilinear"`` (+ 1x1 conv).

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        dropout: float = 0.0,
        upsampling: str = "transpose",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"unet norm must be one of {', '.join(NORMS)}, got {norm!r}.")
        if upsampling not in UPSAMPLING:
            raise ConfigError(f"unet upsampling must be one of {', '.join(UPSAMPLING)}, got {upsampling!r}.")
        if depth < 1 or base_channels < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError("unet depth, base_channels, in_channels and out_channels must be positive.")
        if not 0 <= dropout < 1:
            raise ConfigError(f"unet dropout must be in [0, 1), got {dropout}.")
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(widths):
            self.encoder.append(ConvBlock(previous, width, norm, dropout if level >= depth - 1 else 0.0))
            previous = width
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            deeper, width = widths[level + 1], widths[level]
            if upsampling == "transpose":
                self.up.append(nn.ConvTranspose2d(deeper, width, 2, stride=2))
            else:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(deeper, width, 1)
                    )
                )
            self.decoder.append(ConvBlock(2 * width, width, norm, 0.0))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)`` for images ``(B, in_channels, H, W)``."""
        height, width = images.shape[-2:]
        x = pad_to_multiple(images, 2**self.depth)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :height, :width]


@MODELS.register("unet", tasks=("binary", "multiclass"), inputs="image", family="pentad")
def unet(
    in_channels: int = 3,
    out_channels: int = 1,
    depth: int = 4,
    base_channels: int = 32,
    norm: str = "batch",
    dropout: float = 0.0,
    upsampling: str = "transpose",
) -> UNet:
    """The project's U-Net: configurable depth, width, batch/instance norm, dropout, up-sampling."""
    return UNet(in_channels, out_channels, depth, base_channels, norm, dropout, upsampling)
