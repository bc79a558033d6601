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

MODELS.register("persistence", Persistence, description="Last observed speed repeated (naive baseline).")
MODELS.register("historical-average", HistoricalAverage, description="Mean of the input window (T-GCN's HA).")
MODELS.register("var", VectorAutoregression, description="Vector autoregression on all sensors, ridge least squares.")
MODELS.register("gru", GRUForecaster, description="GRU shared by all sensors, no graph (T-GCN's GRU baseline).")
MODELS.register("gcn", GCNForecaster, description="Two-layer GCN on each sensor's input window plus a linear path.")
MODELS.register("tgcn", TGCN, description="T-GCN (Zhao et al. 2019): GRU with graph-convolution gates.")
MODELS.register("a3tgcn", A3TGCN, description="A3T-GCN (Bai et al. 2021): T-GCN with attention over time.")
MODELS.register("stgcn", STGCN, description="STGCN (Yu et al. 2018): gated temporal convs around graph convs.")
MODELS.register(
    "graph-wavenet",
    GraphWaveNet,
    description="Graph WaveNet (Wu et al. 2019): dilated convs, diffusion + adaptive graph.",
)

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
