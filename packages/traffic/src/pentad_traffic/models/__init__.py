"""Forecasting models, one file per network, each registered in :data:`pentad_traffic.registry.MODELS`
by a decorator in its own file, plus their shared layers (``base``).

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so adding a model is adding its file.
"""

from __future__ import annotations

from typing import Any

from pentad_core.registry import import_submodules
from pentad_traffic.models.base import Forecaster
from pentad_traffic.registry import MODELS

import_submodules(__name__)


def build_model(name: str, options: dict[str, Any] | None = None, **arguments: Any) -> Forecaster:
    """Build the registered model ``name`` (see ``MODELS.names()``).

    Args:
        name: Model name, e.g. ``"tgcn"``.
        options: The model's own options (a config's ``model_options``, e.g. ``{"hidden": 32}``);
            a key the model does not take raises :class:`~pentad_core.errors.ConfigError`.
        **arguments: The problem size the caller derives: ``num_nodes, input_len, horizon`` and
            optionally ``in_features`` and ``adjacency`` ``(N, N)``.
    """
    return MODELS.build(name, options=options, **arguments)


__all__ = ["MODELS", "Forecaster", "build_model"]
