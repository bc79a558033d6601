"""Forecasting models, one file per network, each registered in :data:`pentad_traffic.registry.MODELS`
by a decorator in its own file, plus their shared layers (``base``).

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so adding a model is adding its file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pentad_core.registry import import_submodules
from pentad_traffic.models.base import Forecaster
from pentad_traffic.registry import MODELS

import_submodules(__name__)


def build_model(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    num_nodes: int,
    input_len: int,
    horizon: int,
    in_features: int = 1,
    adjacency: np.ndarray | None = None,
) -> Forecaster:
    """Build the registered model ``name`` (see ``MODELS.names()``) for the data's problem size.

    The network maps a window ``(B, input_len, num_nodes, in_features)`` of scaled readings to a
    forecast ``(B, horizon, num_nodes)`` of the (scaled) target feature.

    Args:
        name: Model name, e.g. ``"tgcn"``.
        options: The model's own options (a config's ``model_options``, e.g. ``{"hidden": 32}``) on top
            of its registered defaults; a key the model does not take raises
            :class:`~pentad_core.errors.ConfigError`.
        num_nodes: Sensors (from the data).
        input_len: Steps in one input window (from the protocol).
        horizon: Steps forecast (from the protocol).
        in_features: Features per reading (from the protocol: speed, time of day, ...).
        adjacency: ``(num_nodes, num_nodes)`` weighted sensor graph (from the data); the graph models
            raise ConfigError without it.

    Raises:
        ConfigError: Unknown name or misspelled option.

    Example:
        >>> model = build_model("gcn", {"hidden": 32}, num_nodes=3, input_len=12, horizon=12, adjacency=np.eye(3))
    """
    return MODELS.build(
        name,
        options=options,
        num_nodes=num_nodes,
        input_len=input_len,
        horizon=horizon,
        in_features=in_features,
        adjacency=adjacency,
    )


__all__ = ["MODELS", "Forecaster", "build_model"]
