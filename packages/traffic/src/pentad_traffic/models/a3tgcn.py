"""A3T-GCN (Bai et al. 2021): T-GCN with attention over the hidden states of all input steps."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import (
    Forecaster,
    as_adjacency,
    quiet_init_,
    random_walk,
    symmetric_normalized,
    with_relative_speed,
)
from pentad_traffic.models.tgcn import TGCNCell
from pentad_traffic.registry import MODELS


@MODELS.register(
    "a3tgcn",
    tasks=("forecast",),
    inputs="window",
    description="A3T-GCN (Bai et al. 2021): T-GCN with attention over time.",
)
class A3TGCN(Forecaster):
    """Attention temporal GCN: a T-GCN encoder whose per-step hidden states are pooled by a learned
    soft attention over time (per sensor), instead of keeping only the last one.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: ``(N, N)`` road graph weights.
        hidden: Hidden units per node.
        attention: Width of the attention scoring layer.
        residual: Forecast the change from the last observed speed.
        highway: Add a linear autoregression on each sensor's own window (LSTNet's highway).
        graph_highway: Let the highway also read the window of the sensor's neighbourhood mean.
        sensor_highway: Give the highway coefficients of its own for every sensor (shrunk towards the shared ones).
        neighbours: Let the highway also read, one by one, the last ``neighbour_lags`` readings of each
            sensor's ``neighbours`` strongest graph neighbours (0: off).
        neighbour_lags: Readings of each such neighbour.
    """

    def __init__(
        self,
        num_nodes: int,
        input_len: int,
        horizon: int,
        in_features: int = 1,
        adjacency=None,
        hidden: int = 64,
        attention: int = 32,
        residual: bool = True,
        highway: bool = True,
        graph_highway: bool = True,
        sensor_highway: bool = False,
        neighbours: int = 0,
        neighbour_lags: int = 3,
    ) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        graph = as_adjacency(adjacency, num_nodes)
        neighbourhood = random_walk(graph) if graph_highway else None
        self.add_linear_terms(
            residual,
            highway,
            neighbourhood,
            sensor_highway,
            graph,
            neighbours=neighbours,
            neighbour_lags=neighbour_lags,
        )
        self.cell = TGCNCell(in_features + 1, hidden, symmetric_normalized(graph))
        self.score = nn.Sequential(nn.Linear(hidden, attention), nn.Tanh(), nn.Linear(attention, 1))
        self.head = quiet_init_(nn.Linear(2 * hidden, horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        relative = with_relative_speed(x)
        state = x.new_zeros(x.shape[0], self.num_nodes, self.cell.hidden)
        states = []
        for step in range(self.input_len):
            state = self.cell(relative[:, step], state)
            states.append(state)
        stacked = torch.stack(states, 1)  # (B, L, N, hidden)
        weights = torch.softmax(self.score(stacked), dim=1)  # attention over the L steps
        context = (weights * stacked).sum(1)
        out = self.head(torch.cat([context, state], -1)).transpose(1, 2)
        return self.finish_forecast(out, x)
