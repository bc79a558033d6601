"""Historical average (T-GCN's HA baseline): the mean of the input window."""

from __future__ import annotations

import torch

from pentad_traffic.models.base import Forecaster
from pentad_traffic.registry import MODELS


@MODELS.register(
    "historical-average",
    tasks=("forecast",),
    inputs="window",
    trainable=False,
    description="Mean of the input window (T-GCN's HA).",
)
class HistoricalAverage(Forecaster):
    """Historical average as in T-GCN: the mean of the input window, for every future step.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: Ignored.
    """

    def __init__(self, num_nodes: int, input_len: int, horizon: int, in_features: int = 1, adjacency=None) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        return x[..., 0].mean(dim=1, keepdim=True).expand(-1, self.horizon, -1).contiguous()
