"""Forecasting models, one file per network, all registered in :data:`pentad_traffic.registry.MODELS`."""

from __future__ import annotations

from pentad_traffic.models.a3tgcn import A3TGCN
from pentad_traffic.models.base import Forecaster
from pentad_traffic.models.baselines import HistoricalAverage, Persistence, VectorAutoregression
from pentad_traffic.models.gcn import GCNForecaster
from pentad_traffic.models.graph_wavenet import GraphWaveNet
from pentad_traffic.models.gru import GRUForecaster
from pentad_traffic.models.stgcn import STGCN
from pentad_traffic.models.tgcn import TGCN
from pentad_traffic.registry import MODELS

MODELS.register("persistence", Persistence)
MODELS.register("historical-average", HistoricalAverage)
MODELS.register("var", VectorAutoregression)
MODELS.register("gru", GRUForecaster)
MODELS.register("gcn", GCNForecaster)
MODELS.register("tgcn", TGCN)
MODELS.register("a3tgcn", A3TGCN)
MODELS.register("stgcn", STGCN)
MODELS.register("graph-wavenet", GraphWaveNet)

#: Models trained by gradient descent (the ones the benchmark's targets apply to).
LEARNED_MODELS = ("gru", "gcn", "tgcn", "a3tgcn", "stgcn", "graph-wavenet")


def build_model(name: str, **kwargs) -> Forecaster:
    """Build the registered model ``name`` (see ``MODELS.names()``).

    Args:
        name: Model name, e.g. ``"tgcn"``.
        **kwargs: ``num_nodes, input_len, horizon, in_features, adjacency`` and the model's options.
    """
    return MODELS.build(name, **kwargs)


__all__ = [
    "A3TGCN",
    "LEARNED_MODELS",
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
