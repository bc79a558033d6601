"""Segmentation networks: one file per network (the smp family shares ``smp_models.py``).

Each file registers its networks in :data:`pentad_medseg.registry.MODELS` with their
:class:`~pentad_core.registry.ModelInfo`; importing this package imports every file in this folder
(:func:`~pentad_core.registry.import_submodules`), so adding a network is adding its file. Every entry is
built by :func:`build_model` (``MODELS.build(name, options=model_options, in_channels=C, out_channels=K)``)
and maps ``(B, C, H, W)`` images of any size to ``(B, K, H, W)`` logits (``K = 1`` for binary
segmentation with a sigmoid).
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


def build_model(name: str, options: Mapping[str, Any] | None = None, *, in_channels: int, classes: int) -> nn.Module:
    """Build registered network ``name`` for ``in_channels`` image channels and ``classes`` labels.

    The network maps ``(B, in_channels, H, W)`` float images of any size to ``(B, K, H, W)`` logits,
    ``K = output_channels(classes)``: 1 (a sigmoid logit) when ``classes == 2``, else ``classes``.

    Args:
        name: Registered name (see ``apps/medseg models``).
        options: The network's own options (the config's ``model_options``) on top of its
            registered defaults; a key it does not take raises ConfigError naming it.
        in_channels: Image channels (from the data).
        classes: Label values of the masks including background (2: binary), as the data labels them.

    Raises:
        ConfigError: If the name is unknown or ``options`` holds a key the network does not take.

    Example:
        >>> net = build_model("unet", {"depth": 3, "base_channels": 16}, in_channels=3, classes=2)
    """
    return MODELS.build(name, options=options, in_channels=in_channels, out_channels=output_channels(classes))


__all__ = ["MODELS", "build_model", "output_channels"]
