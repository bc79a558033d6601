"""The model interface and graph helpers shared by every forecaster.

Every model maps ``x`` ``(B, L, N, F)`` (scaled inputs; channel 0 is the scaled speed) to
``(B, H, N)`` scaled speed forecasts, for any number of sensors ``N`` and any horizon ``H``.
Constructors take ``num_nodes, input_len, horizon, in_features, adjacency`` plus their own
hyper-parameters; models that need no graph accept and ignore ``adjacency``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pentad_core.errors import ConfigError


class Forecaster(nn.Module):
    """Base class: stores the problem size and checks inputs.

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F`` (speed plus optional time features).

    Attributes:
        trainable: False for models with nothing to learn by gradient descent.
        closed_form: True for models fitted by :meth:`fit` (least squares) instead of gradients.
    """

    trainable = True
    closed_form = False

    def __init__(self, num_nodes: int, input_len: int, horizon: int, in_features: int = 1) -> None:
        super().__init__()
        for name, value in (
            ("num_nodes", num_nodes),
            ("input_len", input_len),
            ("horizon", horizon),
            ("in_features", in_features),
        ):
            if int(value) < 1:
                raise ConfigError(f"model option {name} must be at least 1, got {value}.")
        self.num_nodes, self.input_len = int(num_nodes), int(input_len)
        self.horizon, self.in_features = int(horizon), int(in_features)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` does not match the model's size."""
        expected = (self.input_len, self.num_nodes, self.in_features)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"{type(self).__name__} expects (B, {shape}), got {tuple(x.shape)}")


def with_relative_speed(x: torch.Tensor) -> torch.Tensor:
    """Prepend the change of speed relative to the last observation as an extra channel.

    ``(B, L, N, F)`` -> ``(B, L, N, F + 1)``. Raw lags of a slowly varying speed are strongly
    correlated; their differences to the last value are what a residual forecaster adds up, and
    they make optimisation much better conditioned.
    """
    return torch.cat([x[..., :1] - x[:, -1:, :, :1], x], dim=-1)


class AutoregressiveHighway(nn.Module):
    """Linear autoregression on each sensor's own input window, added to a network's output (the
    "highway" of LSTNet, Lai et al. 2018): it gives every learned model a linear forecaster to
    build on, so the network learns the non-linear and spatial part.

    Args:
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
    """

    def __init__(self, input_len: int, horizon: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * input_len, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)`` from the speed channel (as is and relative to the last step)."""
        speed = x[..., 0]
        window = torch.cat([speed - speed[:, -1:], speed], dim=1)  # (B, 2L, N)
        return self.linear(window.transpose(1, 2)).transpose(1, 2)


def as_adjacency(adjacency, num_nodes: int, required: bool = True) -> torch.Tensor:
    """Validate an adjacency and return it as a float32 tensor ``(N, N)``.

    ``None`` gives the identity (no edges) when the graph is optional.
    """
    if adjacency is None:
        if required:
            raise ConfigError("this model needs the road graph: pass adjacency=(N, N) weights.")
        return torch.eye(num_nodes)
    matrix = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
    if matrix.shape != (num_nodes, num_nodes):
        raise ConfigError(f"adjacency has shape {tuple(matrix.shape)}, expected ({num_nodes}, {num_nodes}).")
    return matrix


def symmetric_normalized(adjacency: torch.Tensor) -> torch.Tensor:
    """GCN propagation matrix ``D^-1/2 (A + I) D^-1/2`` of the symmetrised graph (Kipf & Welling)."""
    matrix = torch.maximum(adjacency, adjacency.T)
    matrix = matrix.clone()
    matrix.fill_diagonal_(1.0)
    degree = matrix.sum(1)
    inv_sqrt = degree.clamp_min(1e-12).rsqrt()
    return inv_sqrt[:, None] * matrix * inv_sqrt[None, :]


def random_walk(adjacency: torch.Tensor) -> torch.Tensor:
    """Row-normalised transition matrix ``D^-1 A`` (DCRNN / Graph WaveNet diffusion)."""
    return adjacency / adjacency.sum(1, keepdim=True).clamp_min(1e-12)


def graph_mix(support: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply ``support`` ``(N, N)`` along the node axis (-2) of ``x`` ``(..., N, C)``."""
    return torch.einsum("nm,...mc->...nc", support, x)
