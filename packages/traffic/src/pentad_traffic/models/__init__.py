"""Forecasting models, one file per network, each registered in :data:`pentad_traffic.registry.MODELS`
by a decorator in its own file; importing this package imports them all."""

from __future__ import annotations

from typing import Any

from pentad_traffic.models.a3tgcn import A3TGCN
from pentad_traffic.models.base import Forecaster
from pentad_traffic.models.gcn import GCNForecaster
from pentad_traffic.models.graph_wavenet import GraphWaveNet
from pentad_traffic.models.gru import GRUForecaster
from pentad_traffic.models.historical_average import HistoricalAverage
from pentad_traffic.models.persistence import Persistence
from pentad_traffic.models.stgcn import STGCN
from pentad_traffic.models.tgcn import TGCN
from pentad_traffic.models.var import VectorAutoregression
from pentad_traffic.registry import MODELS


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


__all__ = [
    "A3TGCN",
    "STGCN",
    "TGCN",
    "Forecaster",
    "GCNForecaster",
    "GRUForecaster",
    "GraphWaveNet",
    "HistoricalAverage",
    "Persistence",
    "VectorAutoregression",
    "build_model",
]
