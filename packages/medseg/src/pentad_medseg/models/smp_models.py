"""segmentation-models-pytorch architectures by name, with any smp encoder, offline by default.

The smp family shares one wrapper and one set of options, so its architectures are registered in a
loop here (one entry of :data:`SMP_ARCHITECTURES` adds one).
"""

from __future__ import annotations

import torch
from torch import nn

from pentad_core.errors import ConfigError
from pentad_medseg.inference import pad_to_multiple
from pentad_medseg.registry import MODELS

#: Registered name -> smp architecture name (``smp.create_model(arch=...)``).
SMP_ARCHITECTURES = {
    "smp-unet": "unet",
    "smp-unetplusplus": "unetplusplus",
    "smp-fpn": "fpn",
    "smp-deeplabv3plus": "deeplabv3plus",
}


class SMPModel(nn.Module):
    """An smp model that accepts any input size.

    smp encoders need sizes divisible by their output stride (32 for most); the input is padded
    (reflect) to that multiple and the logits are cropped back.

    Args:
        architecture: smp architecture name, e.g. ``"unet"``.
        encoder: Any smp encoder name, e.g. ``"resnet34"``.
        in_channels: Image channels.
        out_channels: Logit channels.
        encoder_weights: ``None`` (random initialisation) or a published weight set such as
            ``"imagenet"``, which needs the network or a filled download cache.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(
        self,
        architecture: str,
        encoder: str = "resnet34",
        in_channels: int = 3,
        out_channels: int = 1,
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        if encoder not in smp.encoders.get_encoder_names():
            names = smp.encoders.get_encoder_names()
            import difflib

            close = difflib.get_close_matches(encoder, names, n=3)
            raise ConfigError(
                f"unknown smp encoder {encoder!r}.{' Did you mean ' + ', '.join(close) + '?' if close else ''}"
                " See segmentation_models_pytorch.encoders.get_encoder_names()."
            )
        try:
            self.net = smp.create_model(
                architecture, encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels,
                classes=out_channels,
            )  # fmt: skip
        except (OSError, ConnectionError, RuntimeError, ValueError, KeyError) as error:
            if encoder_weights is None:
                raise ConfigError(f"cannot build smp {architecture} with encoder {encoder}: {error}") from None
            raise ConfigError(
                f"could not load {encoder_weights!r} weights for encoder {encoder} ({type(error).__name__}): they "
                "are downloaded on first use and this machine looks offline.",
                "Use encoder_weights=null (random init) or --pretrained PATH to a project checkpoint.",
            ) from None
        self.multiple = int(getattr(self.net.encoder, "output_stride", 32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)``."""
        height, width = images.shape[-2:]
        return self.net(pad_to_multiple(images, self.multiple))[..., :height, :width]


def _register(name: str, architecture: str) -> None:
    """Register ``name`` as smp ``architecture`` (one factory per architecture, same options)."""

    def factory(
        in_channels: int = 3,
        out_channels: int = 1,
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
    ) -> SMPModel:
        return SMPModel(architecture, encoder, in_channels, out_channels, encoder_weights)

    factory.__doc__ = f"segmentation-models-pytorch {architecture} with any smp encoder (--encoder)."
    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    MODELS.register(name, factory, tasks=("binary", "multiclass"), inputs="image", family="smp")


for _name, _architecture in SMP_ARCHITECTURES.items():
    _register(_name, _architecture)
