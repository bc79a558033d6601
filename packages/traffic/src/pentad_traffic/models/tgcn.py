"""T-GCN (Zhao et al. 2019): a GRU whose gates are graph convolutions."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import (
    Forecaster,
    as_adjacency,
    graph_mix,
    quiet_init_,
    random_walk,
    symmetric_normalized,
    with_relative_speed,
)
from pentad_traffic.registry import MODELS


class TGCNCell(nn.Module):
    """One T-GCN step: GRU gates computed by a graph convolution of ``[x_t, h]``.

    Args:
        in_features: Input channels per node.
        hidden: Hidden state size per node.
        support: ``(N, N)`` normalised adjacency.
    """

    def __init__(self, in_features: int, hidden: int, support: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden
        self.register_buffer("support", support)
        self.gates = nn.Linear(in_features + hidden, 2 * hidden)
        self.candidate = nn.Linear(in_features + hidden, hidden)
        nn.init.constant_(self.gates.bias, 1.0)  # start by remembering (T-GCN initialises biases to 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, N, F)``, ``state`` ``(B, N, hidden)`` -> new state ``(B, N, hidden)``."""
        gates = torch.sigmoid(self.gates(graph_mix(self.support, torch.cat([x, state], -1))))
        reset, update = gates.chunk(2, dim=-1)
        candidate = torch.tanh(self.candidate(graph_mix(self.support, torch.cat([x, reset * state], -1))))
        return update * state + (1.0 - update) * candidate


@MODELS.register(
    "tgcn",
    tasks=("forecast",),
    inputs="window",
    description="T-GCN (Zhao et al. 2019): GRU with graph-convolution gates.",
)
class TGCN(Forecaster):
    """T-GCN: graph-convolutional GRU over the input window, last hidden state -> ``H`` steps.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: ``(N, N)`` road graph weights.
        hidden: Hidden units per node (T-GCN uses 64 on Los-loop).
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
        support = symmetric_normalized(graph)
        self.cell = TGCNCell(in_features + 1, hidden, support)
        self.head = quiet_init_(nn.Linear(hidden, horizon))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of every step: ``(B, L, N, F)`` -> ``(B, L, N, hidden)``."""
        x = with_relative_speed(x)
        state = x.new_zeros(x.shape[0], self.num_nodes, self.cell.hidden)
        states = []
        for step in range(self.input_len):
            state = self.cell(x[:, step], state)
            states.append(state)
        return torch.stack(states, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        out = self.head(self.encode(x)[:, -1]).transpose(1, 2)
        return self.finish_forecast(out, x)
