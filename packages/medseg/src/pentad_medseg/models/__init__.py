"""Segmentation networks: one file per network (the smp family shares ``smp_models.py``).

Each file registers its networks in :data:`pentad_medseg.registry.MODELS` with their
:class:`~pentad_core.registry.ModelInfo`; importing this package imports them all. Every entry is
built as ``MODELS.build(name, options=model_options, in_channels=C, out_channels=K)`` and maps
``(B, C, H, W)`` images of any size to ``(B, K, H, W)`` logits (``K = 1`` for binary segmentation
with a sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pentad_medseg.models import smp_models, unet  # noqa: F401  (register the networks)
from pentad_medseg.models.smp_models import SMP_ARCHITECTURES, SMPModel
from pentad_medseg.models.unet import UNet
from pentad_medseg.registry import MODELS


def output_channels(classes: int) -> int:
    """Logit channels for ``classes`` label values: 1 sigmoid logit when binary, else one per class."""
    return 1 if classes == 2 else classes


def build_model(name: str, in_channels: int, classes: int, model_options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build registered network ``name`` for ``in_channels`` image channels and ``classes`` labels.

    Raises:
        ConfigError: If the name is unknown or ``model_options`` holds a key the network does not take.
    """
    return MODELS.build(name, options=model_options, in_channels=in_channels, out_channels=output_channels(classes))


__all__ = ["SMP_ARCHITECTURES", "SMPModel", "UNet", "build_model", "output_channels"]
