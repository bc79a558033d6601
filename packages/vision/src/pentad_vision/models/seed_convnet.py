"""The seed ConvNet: the classic two-conv reference network, for any input size and channel count."""

from __future__ import annotations

import torch
from torch import nn

from pentad_vision.registry import IMAGE_CLASSIFIER, MODELS


def _check_features(features: torch.Tensor, expected: int, input_size: torch.Size) -> torch.Tensor:
    if features.shape[1] != expected:
        raise ValueError(
            f"seed-convnet was built for inputs giving {expected} features, got {features.shape[1]} "
            f"from input {tuple(input_size)}; build it with the image size of the data"
        )
    return features


torch.fx.wrap("_check_features")  # a leaf for FX tracing (static int8 quantisation)


class SeedConvNet(nn.Module):
    """conv3x3(64) -> ReLU -> maxpool -> conv3x3(128) -> ReLU -> maxpool -> fc(512) -> ReLU -> fc(classes).

    The flatten size is computed from ``image_size`` (``128 * (H // 4) * (W // 4)``), so the same
    network serves 28x28 MNIST, 32x32 CIFAR and any other size of at least 4 pixels.

    Args:
        num_classes: Number of output logits.
        in_channels: Image channels (1 for MNIST, 3 for RGB).
        image_size: Input side ``S`` (square) or ``(H, W)``.
        hidden: Width of the first fully connected layer.

    Shapes:
        input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, image_size: int | tuple[int, int] = 32, hidden: int = 512
    ):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if height < 4 or width < 4:
            raise ValueError(f"seed-convnet needs inputs of at least 4x4, got {height}x{width}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.flatten_size = 128 * (height // 2 // 2) * (width // 2 // 2)
        self.classifier = nn.Sequential(
            nn.Linear(self.flatten_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = _check_features(self.features(x).flatten(1), self.flatten_size, x.shape[2:])
        return self.classifier(features)


@MODELS.register("seed-convnet", min_input_size=4, **IMAGE_CLASSIFIER)
def seed_convnet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, hidden: int = 512) -> SeedConvNet:
    """The classic two-conv reference ConvNet (flatten size from the input size)."""
    return SeedConvNet(num_classes, in_channels, image_size, hidden)
