"""Graph WaveNet (Wu et al. 2019): dilated causal convolutions and diffusion graph convolutions
over the given graph and a learned (adaptive) adjacency."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pentad_traffic.models.base import (
    Forecaster,
    as_adjacency,
    quiet_init_,
    random_walk,
    with_relative_speed,
)
from pentad_traffic.registry import MODELS


class DiffusionConv(nn.Module):
    """``sum_k sum_s (P_s)^k X W``: diffusion of order ``order`` over several supports, then 1x1 conv.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        num_supports: Number of transition matrices passed to :meth:`forward`.
        order: Diffusion steps per support.
        dropout: Dropout on the output.
    """

    def __init__(self, c_in: int, c_out: int, num_supports: int, order: int, dropout: float) -> None:
        super().__init__()
        self.order = order
        self.mix = nn.Conv2d(c_in * (1 + num_supports * order), c_out, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, supports: list[torch.Tensor]) -> torch.Tensor:
        """``(B, C, N, T)`` -> ``(B, C_out, N, T)``."""
        terms = [x]
        for support in supports:
            walk = x
            for _ in range(self.order):
                walk = torch.einsum("nm,bcmt->bcnt", support, walk)
                terms.append(walk)
        return self.dropout(self.mix(torch.cat(terms, dim=1)))


@MODELS.register(
    "graph-wavenet",
    tasks=("forecast",),
    inputs="window",
    description="Graph WaveNet (Wu et al. 2019): dilated convs, diffusion + adaptive graph.",
)
class GraphWaveNet(Forecaster):
    """Graph WaveNet for ``H``-step forecasting in one shot.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L`` (left-padded with zeros up to the receptive field).
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F``.
        adjacency: ``(N, N)`` road graph weights, or None to use only the adaptive adjacency.
        channels: Residual and dilation channels.
        skip_channels: Skip-connection channels.
        end_channels: Channels of the output layers.
        blocks: WaveNet blocks.
        layers_per_block: Dilated layers per block (dilations 1, 2, 4, ...).
        embedding: Size of the node embeddings of the adaptive adjacency.
        order: Diffusion order of the graph convolutions.
        dropout: Dropout in the graph convolutions.
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
        channels: int = 32,
        skip_channels: int = 64,
        end_channels: int = 128,
        blocks: int = 4,
        layers_per_block: int = 2,
        embedding: int = 10,
        order: int = 2,
        dropout: float = 0.3,
        residual: bool = True,
        highway: bool = True,
        graph_highway: bool = True,
        sensor_highway: bool = False,
        neighbours: int = 0,
        neighbour_lags: int = 3,
    ) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        graph = as_adjacency(adjacency, num_nodes) if adjacency is not None else None
        neighbourhood = random_walk(graph) if graph is not None and graph_highway else None
        self.add_linear_terms(
            residual,
            highway,
            neighbourhood,
            sensor_highway,
            graph,
            neighbours=neighbours,
            neighbour_lags=neighbour_lags,
        )
        if graph is not None:
            # Forward and backward diffusion; on a symmetric graph they coincide, so keep one.
            directions = [graph] if torch.equal(graph, graph.T) else [graph, graph.T]
            self.register_buffer("supports", torch.stack([random_walk(m) for m in directions]))
        else:
            self.register_buffer("supports", torch.zeros(0, num_nodes, num_nodes))
        self.source_embedding = nn.Parameter(torch.randn(num_nodes, embedding) * 0.1)
        self.target_embedding = nn.Parameter(torch.randn(embedding, num_nodes) * 0.1)
        self.dilations = [2**layer for _ in range(blocks) for layer in range(layers_per_block)]
        self.receptive_field = 1 + sum(self.dilations)
        num_supports = self.supports.shape[0] + 1
        self.start = nn.Conv2d(in_features + 1, channels, 1)
        self.filters = nn.ModuleList(nn.Conv2d(channels, channels, (1, 2), dilation=d) for d in self.dilations)
        self.gates = nn.ModuleList(nn.Conv2d(channels, channels, (1, 2), dilation=d) for d in self.dilations)
        self.skips = nn.ModuleList(nn.Conv2d(channels, skip_channels, 1) for _ in self.dilations)
        # The last layer feeds only the skip path, so it needs no graph convolution.
        self.graph_convs = nn.ModuleList(
            DiffusionConv(channels, channels, num_supports, order, dropout) for _ in self.dilations[:-1]
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in self.dilations[:-1])
        self.end1 = nn.Conv2d(skip_channels, end_channels, 1)
        self.end2 = quiet_init_(nn.Conv2d(end_channels, horizon, 1))

    def adaptive_adjacency(self) -> torch.Tensor:
        """``softmax(relu(E1 E2))``: the learned transition matrix ``(N, N)``."""
        return torch.softmax(torch.relu(self.source_embedding @ self.target_embedding), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        hidden = with_relative_speed(x).permute(0, 3, 2, 1)  # (B, F + 1, N, L)
        if self.input_len < self.receptive_field:
            hidden = F.pad(hidden, (self.receptive_field - self.input_len, 0))
        hidden = self.start(hidden)
        supports = [*self.supports, self.adaptive_adjacency()]
        skip = None
        for i, dilation in enumerate(self.dilations):
            shortcut = hidden
            gated = torch.tanh(self.filters[i](hidden)) * torch.sigmoid(self.gates[i](hidden))
            contribution = self.skips[i](gated[..., -1:])  # only the last step feeds the output
            skip = contribution if skip is None else skip + contribution
            if i == len(self.dilations) - 1:
                break
            hidden = self.graph_convs[i](gated, supports) + shortcut[..., dilation:]
            hidden = self.norms[i](hidden)
        out = self.end2(torch.relu(self.end1(torch.relu(skip))))[..., 0]  # (B, H, N)
        return self.finish_forecast(out, x)
