"""Vector autoregression: a linear baseline fitted in closed form by ridge least squares."""

from __future__ import annotations

import torch
from torch import nn

from pentad_traffic.models.base import Forecaster, ridge_fit
from pentad_traffic.registry import MODELS


@MODELS.register(
    "var",
    tasks=("forecast",),
    inputs="window",
    trainable=False,
    description="Vector autoregression on all sensors, ridge least squares.",
)
class VectorAutoregression(Forecaster):
    """Vector autoregression: every sensor's next ``H`` steps as a linear function of the last
    ``lags`` speeds of all sensors, fitted by ridge-regularised least squares (:meth:`fit`).

    The regression is on the change from the last observed speed, so the ridge penalty shrinks
    towards persistence rather than towards zero speed (an unfitted model is persistence).

    Args:
        num_nodes: Sensors ``N``.
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        in_features: Input channels ``F`` (only the speed channel is used).
        adjacency: Ignored (every sensor sees every sensor).
        lags: Input steps used, the most recent ones (at most ``L``).
        ridge: L2 penalty of the least-squares fit, in scaled units.
    """

    closed_form = True

    def __init__(
        self,
        num_nodes: int,
        input_len: int,
        horizon: int,
        in_features: int = 1,
        adjacency=None,
        lags: int | None = 3,
        ridge: float = 30.0,
    ) -> None:
        super().__init__(num_nodes, input_len, horizon, in_features)
        self.lags = min(int(lags or input_len), input_len)
        self.ridge = float(ridge)
        features = self.lags * num_nodes
        self.weight = nn.Parameter(torch.zeros(features, horizon * num_nodes))
        self.bias = nn.Parameter(torch.zeros(horizon * num_nodes))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -self.lags :, :, 0].reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)``."""
        self.check_input(x)
        change = self._features(x) @ self.weight + self.bias
        return change.view(-1, self.horizon, self.num_nodes) + x[:, -1:, :, 0]

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> VectorAutoregression:
        """Least-squares fit on training windows.

        Args:
            x: ``(S, L, N, F)`` scaled inputs.
            y: ``(S, H, N)`` scaled targets (rows with NaN are dropped).
        """
        self.check_input(x)
        targets = (y - x[:, -1:, :, 0]).reshape(y.shape[0], -1).double()
        keep = torch.isfinite(targets).all(1)
        features = self._features(x).double()[keep]
        targets = targets[keep]
        weight, bias = ridge_fit(features, targets, self.ridge, relative=False)
        self.weight.copy_(weight.float())
        self.bias.copy_(bias.float())
        return self
