"""Segmentation networks: one file per network (the smp family shares ``smp_models.py``).

Each file registers its networks in :data:`pentad_medseg.registry.MODELS` with their
:class:`~pentad_core.registry.ModelInfo`; importing this package imports every file in this folder
(:func:`~pentad_core.registry.import_submodules`), so adding a network is adding its file. Every entry is
built as ``MODELS.build(name, options=model_options, in_channels=C, out_channels=K)`` and maps
``(B, C, H, W)`` images of any size to ``(B, K, H, W)`` logits (``K = 1`` for binary segmentation
with a sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pentad_core.registry import import_submodules
from pentad_medseg.registry import MODELS

import_submodules(__name__)


def output_channels(classes: int) -> int:
    """Logit channels for ``classes`` label values: 1 sigmoid logit when binary, else one per class."""
    return 1 if classes == 2 else classes


def build_model(name: str, in_channels: int, classes: int, model_options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build registered network ``name`` for ``in_channels`` image channels and ``classes`` labels.

    Raises:
        ConfigError: If the name is unknown or ``model_options`` holds a key the network does not take.
    """
    return MODELS.build(name, options=model_options, in_channels=in_channels, out_channels=output_channels(classes))


__all__ = ["MODELS", "build_model", "output_channels"]
