"""ResNet-18 for small images (kuangliu/pytorch-cifar style): 3x3 stem, no max-pool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pentad_vision.registry import IMAGE_CLASSIFIER, MODELS


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet with a 3x3 stride-1 stem and no max-pool, for 32x32-scale images.

    Args:
        num_classes: Number of output logits.
        in_channels: Image channels.
        blocks: Blocks per stage (``(2, 2, 2, 2)`` = ResNet-18).
        width: Channels of the first stage (doubled at every stage).

    Shapes:
        input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``; any ``H, W >= 1`` works
        thanks to the adaptive pooling.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks=(2, 2, 2, 2), width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, in_planes = [], width
        for stage, count in enumerate(blocks):
            planes = width * 2**stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


@MODELS.register("resnet18-cifar", min_input_size=8, **IMAGE_CLASSIFIER)
def resnet18_cifar(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 64) -> ResNetCifar:
    """ResNet-18 with a 3x3 stem and no max-pool (93% on CIFAR-10 in kuangliu/pytorch-cifar)."""
    return ResNetCifar(num_classes, in_channels, (2, 2, 2, 2), width)
