"""GRU without a graph: node-wise (one GRU shared by all sensors) or joint (one GRU over the
vector of all sensors, as the T-GCN paper's GRU baseline)."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import Forecaster, quiet_init_, with_relative_speed
from pentad_traffic.registry import MODELS


@MODELS.register(
    "gru",
    tasks=("forecast",),
    inputs="window",
    description="GRU shared by all sensors, no graph (T-GCN's GRU baseline).",
)
class GRUForecaster(Forecaster):
    """GRU forecaster that sees no road graph.

    ``joint=False``: one GRU shared by all sensors, each sensor forecast from its own history.
    ``joint=True``: one GRU reads the speeds of all sensors at each step (input size ``N (F + 1)``)
    and a linear head emits all ``N x H`` forecasts, so correlations between sensors are learned
    without a graph.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: Ignored (no spatial information).
        hidden: GRU hidden size.
        layers: Stacked GRU layers.
        joint: Model all sensors jointly instead of one sensor at a time.
        residual: Forecast the change from the last observed speed instead of the speed itself.
        highway: Add a linear autoregression on each sensor's own window (LSTNet's highway).
        sensor_highway: Give the highway coefficients of its own for every sensor (shrunk towards the shared ones).
    """

    def __init__(
        self,
        num_nodes: int,
        input_len: int,
        horizon: int,
        in_features: int = 1,
        adjacency=None,
        hidden: int = 64,
        layers: int = 1,
        joint: bool = False,
        residual: bool = True,
        highway: bool = True,
        sensor_highway: bool = False,
    ) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        self.add_linear_terms(residual, highway, per_sensor=sensor_highway)
        self.joint = joint
        width = (in_features + 1) * (num_nodes if joint else 1)
        self.gru = nn.GRU(width, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, horizon * (num_nodes if joint else 1))
        quiet_init_(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        batch = x.shape[0]
        inputs = with_relative_speed(x)
        if self.joint:
            _, state = self.gru(inputs.flatten(2))  # state: (layers, B, hidden)
            out = self.head(state[-1]).view(batch, self.horizon, self.num_nodes)
        else:
            series = inputs.permute(0, 2, 1, 3).reshape(batch * self.num_nodes, self.input_len, -1)
            _, state = self.gru(series)  # state: (layers, B*N, hidden)
            out = self.head(state[-1]).view(batch, self.num_nodes, self.horizon).transpose(1, 2)
        return self.finish_forecast(out, x)
