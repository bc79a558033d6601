"""GRU: one recurrent network shared by all sensors, each sensor forecast from its own history."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import Forecaster


class GRUForecaster(Forecaster):
    """Node-wise GRU (the T-GCN paper's GRU baseline, weights shared across sensors).

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: Ignored (no spatial information).
        hidden: GRU hidden size.
        layers: Stacked GRU layers.
        residual: Forecast the change from the last observed speed instead of the speed itself.
    """

    def __init__(self, num_nodes: int, input_len: int, horizon: int, in_features: int = 1, adjacency=None,
                 hidden: int = 64, layers: int = 1, residual: bool = True) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        self.residual = residual
        self.gru = nn.GRU(in_features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        batch = x.shape[0]
        series = x.permute(0, 2, 1, 3).reshape(batch * self.num_nodes, self.input_len, self.in_features)
        _, state = self.gru(series)  # state: (layers, B*N, hidden)
        out = self.head(state[-1]).view(batch, self.num_nodes, self.horizon).transpose(1, 2)
        return out + x[:, -1:, :, 0] if self.residual else out
