"""STGCN (Yu et al. 2018): spatio-temporal convolutional blocks of gated temporal convolutions
around a graph convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pentad_traffic.models.base import (
    Forecaster,
    as_adjacency,
    quiet_init_,
    random_walk,
    symmetric_normalized,
    with_relative_speed,
)
from pentad_traffic.registry import MODELS


class GatedTemporalConv(nn.Module):
    """Causal temporal convolution with a GLU gate and a residual path, on ``(B, C, N, T)``.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        kernel: Temporal kernel size; the input is left-padded so the length is kept.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv2d(c_in, 2 * c_out, (1, kernel))
        self.align = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, N, T)`` -> ``(B, C_out, N, T)``."""
        values, gate = self.conv(F.pad(x, (self.kernel - 1, 0))).chunk(2, dim=1)
        return (values + self.align(x)) * torch.sigmoid(gate)


class STConvBlock(nn.Module):
    """Temporal gated conv -> graph conv (first-order, ``Â X Θ``) + ReLU -> temporal gated conv -> norm.

    Args:
        c_in: Input channels.
        c_hidden: Channels of the temporal convolutions.
        c_graph: Channels of the graph convolution (the bottleneck).
        kernel: Temporal kernel size.
        support: ``(N, N)`` normalised adjacency.
        dropout: Dropout after the block.
    """

    def __init__(
        self, c_in: int, c_hidden: int, c_graph: int, kernel: int, support: torch.Tensor, dropout: float
    ) -> None:
        super().__init__()
        self.register_buffer("support", support)
        self.temporal1 = GatedTemporalConv(c_in, c_hidden, kernel)
        self.theta = nn.Conv2d(c_hidden, c_graph, 1)
        self.temporal2 = GatedTemporalConv(c_graph, c_hidden, kernel)
        self.norm = nn.LayerNorm(c_hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, N, T)`` -> ``(B, C_hidden, N, T)``."""
        x = self.temporal1(x)
        x = torch.relu(torch.einsum("nm,bcmt->bcnt", self.support, self.theta(x)))
        x = self.temporal2(x)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.dropout(x)


@MODELS.register(
    "stgcn",
    tasks=("forecast",),
    inputs="window",
    description="STGCN (Yu et al. 2018): gated temporal convs around graph convs.",
)
class STGCN(Forecaster):
    """Spatio-temporal graph convolutional network.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: ``(N, N)`` road graph weights.
        channels: Channels of the temporal convolutions.
        graph_channels: Channels of the graph convolutions.
        blocks: Number of ST-Conv blocks.
        kernel: Temporal kernel size.
        dropout: Dropout after each block.
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
        channels: int = 64,
        graph_channels: int = 16,
        blocks: int = 2,
        kernel: int = 3,
        dropout: float = 0.1,
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
        self.blocks = nn.ModuleList(
            STConvBlock(in_features + 1 if i == 0 else channels, channels, graph_channels, kernel, support, dropout)
            for i in range(blocks)
        )
        self.output = nn.Sequential(
            nn.Linear(channels * input_len, channels), nn.ReLU(), quiet_init_(nn.Linear(channels, horizon))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        hidden = with_relative_speed(x).permute(0, 3, 2, 1)  # (B, F + 1, N, L)
        for block in self.blocks:
            hidden = block(hidden)
        out = self.output(hidden.permute(0, 2, 1, 3).flatten(2)).transpose(1, 2)  # (B, H, N)
        return self.finish_forecast(out, x)
