"""GCN: a two-layer graph convolutional network on each sensor's window of past speeds."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import (
    Forecaster,
    as_adjacency,
    graph_mix,
    symmetric_normalized,
    with_relative_speed,
)
from pentad_traffic.registry import MODELS


@MODELS.register(
    "gcn",
    tasks=("forecast",),
    inputs="window",
    description="Two-layer GCN on each sensor's input window plus a linear path.",
)
class GCNForecaster(Forecaster):
    """Spatial-only baseline (the T-GCN paper's GCN): node features are the ``L x F`` input window,
    mixed over the road graph by two graph convolutions ``Â X W`` (Kipf & Welling), then mapped to
    the ``H`` future steps. A linear skip from the sensor's own window and from its neighbours'
    averaged window keeps the linear autoregression inside the model. Speeds enter both as they are
    and as changes relative to the last observation (see :func:`with_relative_speed`).

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: ``(N, N)`` road graph weights.
        hidden: Width of the graph convolutions.
        residual: Forecast the change from the last observed speed.
    """

    def __init__(
        self,
        num_nodes: int,
        input_len: int,
        horizon: int,
        in_features: int = 1,
        adjacency=None,
        hidden: int = 64,
        residual: bool = True,
    ) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        self.add_linear_terms(residual)
        self.register_buffer("support", symmetric_normalized(as_adjacency(adjacency, num_nodes)))
        width = input_len * (in_features + 1)
        self.conv1 = nn.Linear(width, hidden)
        self.conv2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, horizon)
        self.skip = nn.Linear(2 * width, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        nodes = with_relative_speed(x).permute(0, 2, 1, 3).flatten(2)  # (B, N, L*(F+1))
        hidden = torch.relu(graph_mix(self.support, self.conv1(nodes)))
        hidden = torch.relu(graph_mix(self.support, self.conv2(hidden)))
        linear = self.skip(torch.cat([nodes, graph_mix(self.support, nodes)], dim=-1))
        return self.finish_forecast((self.head(hidden) + linear).transpose(1, 2), x)
