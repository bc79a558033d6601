"""The model interface and graph helpers shared by every forecaster.

Every model maps ``x`` ``(B, L, N, F)`` (scaled inputs; channel 0 is the scaled speed) to
``(B, H, N)`` scaled speed forecasts, for any number of sensors ``N`` and any horizon ``H``.
Constructors take ``num_nodes, input_len, horizon, in_features, adjacency`` plus their own
hyper-parameters; models that need no graph accept and ignore ``adjacency``. Each model file
registers its class in :data:`pentad_traffic.registry.MODELS` with a decorator.
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

    Whether a model is trained by gradient descent is registry metadata
    (``MODELS.info(name).trainable``), not an attribute of the network.

    Attributes:
        closed_form: True for models fitted by :meth:`fit` (least squares) on the training windows
            before the (empty) training loop runs.
    """

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
        # No linear terms until a network asks for them (add_linear_terms).
        self.residual = False
        self.highway: AutoregressiveHighway | None = None

    def add_linear_terms(
        self,
        residual: bool,
        highway: bool = False,
        neighbourhood: torch.Tensor | None = None,
        per_sensor: bool = False,
        graph: torch.Tensor | None = None,
        neighbours: int = 0,
        neighbour_lags: int = 3,
    ) -> None:
        """Set up the forecast's linear parts, added by :meth:`finish_forecast`.

        Args:
            residual: Forecast the change from the last observed speed.
            highway: Add an :class:`AutoregressiveHighway` on each sensor's input window.
            neighbourhood: ``(N, N)`` row-normalised graph; the highway then also reads the
                window of each sensor's neighbourhood mean.
            per_sensor: Give the highway coefficients of its own for every sensor on top of the
                shared ones.
            graph: ``(N, N)`` road graph weights the ``neighbours`` are chosen from.
            neighbours: Let the highway also read, one by one, the last ``neighbour_lags`` readings
                of each sensor's ``neighbours`` strongest graph neighbours (0: off).
            neighbour_lags: Readings of each such neighbour, at most the input length.

        Raises:
            ConfigError: If ``neighbours`` is negative, is set without a ``graph``, or
                ``neighbour_lags`` is not in ``1..input_len``.
        """
        self.residual = residual
        if int(neighbours) < 0:
            raise ConfigError(f"model option neighbours must be at least 0, got {neighbours}.")
        index = None
        if highway and neighbours:
            if graph is None:
                raise ConfigError("model option neighbours needs the road graph (adjacency).")
            if not 1 <= int(neighbour_lags) <= self.input_len:
                raise ConfigError(
                    f"model option neighbour_lags must be in 1..input_len ({self.input_len}), got {neighbour_lags}."
                )
            index = strongest_neighbours(graph, int(neighbours))
        self.highway = (
            AutoregressiveHighway(
                self.input_len,
                self.horizon,
                neighbourhood,
                self.num_nodes if per_sensor else None,
                neighbour_index=index,
                neighbour_lags=int(neighbour_lags),
            )
            if highway
            else None
        )

    def finish_forecast(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out`` ``(B, H, N)`` plus the highway's forecast and, for residual models, the last speed."""
        if self.highway is not None:
            out = out + self.highway(x)
        return out + x[:, -1:, :, 0] if self.residual else out

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
    build on, so the network learns the non-linear and spatial part. With a ``support`` it also
    reads the window of the sensor's graph neighbourhood mean (``support @ speeds``), the linear
    spatial autoregression that is a strong baseline on road networks. With a ``neighbour_index``
    it also reads the last ``neighbour_lags`` readings of each of the sensor's strongest
    neighbours one by one (relative to the sensor's own last reading): a mean blurs which
    neighbour is upstream, these let each sensor's regression weigh them apart.

    The coefficients are shared by all sensors. With ``num_nodes`` every sensor also gets
    coefficients of its own, added to the shared ones: sensors differ (on-ramps, bottlenecks,
    free-flowing stretches), and a network whose weights are shared across sensors cannot tell
    them apart. :meth:`fit` shrinks them towards the shared fit.

    Args:
        input_len: Input steps ``L``.
        horizon: Predicted steps ``H``.
        support: Optional ``(N, N)`` row-normalised adjacency whose neighbourhood mean is added as lags.
        num_nodes: Sensors ``N`` for per-sensor coefficients; ``None`` keeps only the shared ones.
        neighbour_index: Optional ``(N, K)`` long indices of each sensor's neighbours, ``-1`` where a
            sensor has fewer than ``K`` (their features are zero); see :func:`strongest_neighbours`.
        neighbour_lags: Readings ``R`` of each neighbour (the last ``R`` of the window).
    """

    def __init__(
        self,
        input_len: int,
        horizon: int,
        support: torch.Tensor | None = None,
        num_nodes: int | None = None,
        neighbour_index: torch.Tensor | None = None,
        neighbour_lags: int = 3,
    ) -> None:
        super().__init__()
        self.register_buffer("support", support)
        self.register_buffer("neighbour_index", neighbour_index)
        self.neighbour_lags = int(neighbour_lags)
        features = (2 if support is None else 3) * input_len
        if neighbour_index is not None:
            features += neighbour_index.shape[1] * self.neighbour_lags
        self.linear = nn.Linear(features, horizon)
        self.sensor_weight = nn.Parameter(torch.zeros(num_nodes, features, horizon)) if num_nodes else None
        self.sensor_bias = nn.Parameter(torch.zeros(num_nodes, horizon)) if num_nodes else None

    def lags(self, x: torch.Tensor) -> torch.Tensor:
        """The linear features: ``(B, L, N, F)`` -> ``(B, N, D)`` with ``D = 2L`` (own window as is and
        relative to its last step), ``+ L`` with a support, ``+ K R`` with neighbours (in the order of
        ``neighbour_index``, each neighbour's ``R`` readings oldest first)."""
        speed = x[..., 0]
        lags = [speed - speed[:, -1:], speed]
        if self.support is not None:
            lags.append(torch.einsum("nm,blm->bln", self.support, speed))
        features = torch.cat(lags, dim=1).transpose(1, 2)
        if self.neighbour_index is None:
            return features
        index = self.neighbour_index
        recent = speed[:, -self.neighbour_lags :]  # (B, R, N)
        around = recent[:, :, index.clamp_min(0)] - speed[:, -1:, :, None]  # (B, R, N, K)
        around = around * (index >= 0).to(around.dtype)
        around = around.permute(0, 2, 3, 1).flatten(2)  # (B, N, K R)
        return torch.cat([features, around], dim=-1)

    @torch.no_grad()
    def fit(
        self, x: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3, sensor_ridge: float = 1.0
    ) -> AutoregressiveHighway:
        """Set the weights to the ridge least-squares fit of ``target`` (a warm start for training).

        Args:
            x: ``(S, L, N, F)`` scaled inputs.
            target: ``(S, H, N)`` what the highway should predict, in scaled units; a (window,
                sensor) row with any NaN is left out.
            ridge: Penalty on the shared weights, relative to the mean squared (centred) feature.
            sensor_ridge: Penalty on each sensor's own coefficients, relative to that sensor's mean
                squared feature: it pulls them towards the shared fit.
        """
        features = self.lags(x).double()  # (S, N, D)
        targets = target.transpose(1, 2).double()  # (S, N, H)
        keep = torch.isfinite(targets).all(-1)  # (S, N)
        if not keep.any():
            return self
        weight, bias = ridge_fit(features[keep], targets[keep], ridge)
        self.linear.weight.copy_(weight.T.float())
        self.linear.bias.copy_(bias.float())
        if self.sensor_weight is not None:
            # Per sensor, regress what the shared fit leaves over; rows without a target count zero.
            residual = torch.where(keep[..., None], targets - (features @ weight + bias), 0.0)
            sensor_weight, sensor_bias = ridge_fit(
                features.transpose(0, 1), residual.transpose(0, 1), sensor_ridge, keep.T.double()
            )
            self.sensor_weight.copy_(sensor_weight.float())
            self.sensor_bias.copy_(sensor_bias.float())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, N, F)`` -> ``(B, H, N)`` from the speed channel (as is, relative to the last step and,
        with a support, averaged over each sensor's neighbourhood)."""
        lags = self.lags(x)
        out = self.linear(lags)
        if self.sensor_weight is not None:
            out = out + torch.einsum("bnd,ndh->bnh", lags, self.sensor_weight) + self.sensor_bias
        return out.transpose(1, 2)


def strongest_neighbours(adjacency: torch.Tensor, k: int) -> torch.Tensor:
    """Each sensor's ``k`` neighbours of largest positive weight, strongest first.

    Args:
        adjacency: ``(N, N)`` graph weights (row ``n``: the weights of sensor ``n``'s edges); the
            diagonal (the sensor itself) is ignored.
        k: Neighbours per sensor.

    Returns:
        ``(N, k)`` long indices; equal weights are taken in sensor order, and ``-1`` fills the row
        of a sensor with fewer than ``k`` neighbours.
    """
    weights = adjacency.detach().to(torch.float64).clone()
    weights.fill_diagonal_(0.0)
    num_nodes = weights.shape[0]
    # A stable sort of the negated weights: strongest first, ties by index.
    order = torch.sort(-weights, dim=1, stable=True).indices[:, :k]
    index = torch.full((num_nodes, k), -1, dtype=torch.long)
    width = order.shape[1]
    strong = torch.gather(weights, 1, order) > 0
    index[:, :width] = torch.where(strong, order, torch.full_like(order, -1))
    return index


def ridge_fit(
    features: torch.Tensor,
    targets: torch.Tensor,
    ridge: float,
    weights: torch.Tensor | None = None,
    relative: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression with an unpenalised intercept, batched over leading dimensions.

    Args:
        features: ``(..., S, D)``.
        targets: ``(..., S, H)``.
        ridge: The penalty; with ``relative`` a fraction of the mean diagonal of the centred Gram
            matrix (the same strength whatever the scale of the features), else as given.
        weights: Optional ``(..., S)`` row weights (0 leaves a row out).
        relative: Whether ``ridge`` is relative to the Gram matrix.

    Returns:
        ``weight`` ``(..., D, H)`` and ``bias`` ``(..., H)``.
    """
    if weights is None:
        weights = features.new_ones(features.shape[:-1])
    count = weights.sum(-1, keepdim=True).clamp_min(1.0)[..., None]  # (..., 1, 1)
    mean_x = (weights[..., None] * features).sum(-2, keepdim=True) / count
    mean_y = (weights[..., None] * targets).sum(-2, keepdim=True) / count
    centred = (features - mean_x) * weights[..., None].sqrt()
    gram = centred.transpose(-1, -2) @ centred
    penalty = (
        ridge * gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        if relative
        else gram.new_full(gram.shape[:-2], float(ridge))
    )
    identity = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    rhs = centred.transpose(-1, -2) @ ((targets - mean_y) * weights[..., None].sqrt())
    weight = torch.linalg.solve(gram + penalty[..., None, None] * identity, rhs)
    bias = (mean_y - mean_x @ weight).squeeze(-2)
    return weight, bias


def quiet_init_(layer: nn.Module, scale: float = 0.01) -> nn.Module:
    """Shrink an output layer's initial weights and zero its bias, so that a fresh network adds
    almost nothing to the residual and highway forecasts it is trained on top of (a random head
    would add errors of many mph at the start and undo a least-squares warm start)."""
    with torch.no_grad():
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


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
