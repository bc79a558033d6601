"""Evaluation protocols: how a series is split, scaled, windowed and scored.

Two published protocols are built in:

* :data:`TGCN_PROTOCOL` (T-GCN, Zhao et al. 2019): the series is split chronologically 80/20,
  12 input steps, horizons 3/6/9/12 steps (15/30/45/60 min), speeds divided by the training
  maximum, and horizon ``k`` is scored over every predicted step ``1..k`` (RMSE, MAE, Accuracy,
  R2, explained variance). No missing-value masking (Los-loop has no zeros). One 12-step model
  serves all four horizons; horizon ``k`` is scored on exactly the test windows that have ``k``
  future steps, the windows T-GCN uses when it trains a ``k``-step model.
* :data:`DCRNN_PROTOCOL` (DCRNN, Li et al. 2018): all 12-in/12-out windows split 70/10/20 in
  time order, z-score scaling with training statistics, zeros masked as missing, masked
  MAE/RMSE/MAPE at the single steps 3/6/12.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from pentad_core.errors import ConfigError, DataError
from pentad_traffic.data.core import TrafficData


@dataclass(frozen=True)
class Protocol:
    """How to split, scale, window and score a dataset.

    Attributes:
        name: Protocol name (``"tgcn"`` or ``"dcrnn"``).
        train: Fraction of the series (or of the windows) used for training.
        val: Fraction used for validation (taken after the training part); 0 means none.
        split_on: ``"series"`` splits the time axis, then windows each part (T-GCN);
            ``"windows"`` builds all windows, then splits them in order (DCRNN).
        input_len: Input steps per window.
        output_len: Predicted steps per window.
        horizons: Horizons reported, in steps.
        reduction: ``"cumulative"`` scores steps ``1..k`` for horizon ``k``; ``"step"`` scores step ``k``.
        scaling: ``"max"`` (divide by the training maximum) or ``"zscore"``.
        null_value: Speed that marks a missing reading, masked in losses and metrics; None for none.
        metrics: Metric names (see :mod:`pentad_traffic.metrics`).
        time_of_day: Add the time of day in ``[0, 1)`` as an input feature.
        day_of_week: Add the day of week (0..6, divided by 7) as an input feature.
    """

    name: str
    train: float
    val: float
    split_on: str
    input_len: int = 12
    output_len: int = 12
    horizons: tuple[int, ...] = (3, 6, 9, 12)
    reduction: str = "cumulative"
    scaling: str = "max"
    null_value: float | None = None
    metrics: tuple[str, ...] = ("rmse", "mae", "accuracy", "r2", "explained_variance")
    time_of_day: bool = False
    day_of_week: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.train < 1 or not 0 <= self.val < 1 or self.train + self.val >= 1:
            raise ConfigError(f"protocol {self.name}: train={self.train}, val={self.val} leave no test part.")
        if self.split_on not in ("series", "windows"):
            raise ConfigError(f"protocol {self.name}: split_on must be 'series' or 'windows'.")
        if self.scaling not in ("max", "zscore"):
            raise ConfigError(f"protocol {self.name}: scaling must be 'max' or 'zscore', not {self.scaling!r}.")
        if self.reduction not in ("cumulative", "step"):
            raise ConfigError(f"protocol {self.name}: reduction must be 'cumulative' or 'step'.")
        if self.input_len < 1 or self.output_len < 1:
            raise ConfigError(f"protocol {self.name}: input_len and output_len must be at least 1.")
        if not self.horizons or max(self.horizons) > self.output_len or min(self.horizons) < 1:
            raise ConfigError(
                f"protocol {self.name}: horizons {self.horizons} must lie in 1..output_len={self.output_len}."
            )

    @property
    def in_features(self) -> int:
        """Input channels per sensor and step: speed, then the optional time features."""
        return 1 + int(self.time_of_day) + int(self.day_of_week)

    def replace(self, **changes) -> Protocol:
        """A copy with some fields changed (e.g. ``time_of_day=True``)."""
        return dataclasses.replace(self, **changes)


TGCN_PROTOCOL = Protocol(name="tgcn", train=0.8, val=0.0, split_on="series")
DCRNN_PROTOCOL = Protocol(
    name="dcrnn",
    train=0.7,
    val=0.1,
    split_on="windows",
    horizons=(3, 6, 12),
    reduction="step",
    scaling="zscore",
    null_value=0.0,
    metrics=("mae", "rmse", "mape"),
)
PROTOCOLS = {"tgcn": TGCN_PROTOCOL, "dcrnn": DCRNN_PROTOCOL}


def get_protocol(name: str) -> Protocol:
    """The built-in protocol ``name`` (``tgcn`` or ``dcrnn``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}.") from None


@dataclass(frozen=True)
class Scaler:
    """An affine speed scaling ``scaled = (speed - center) / scale``.

    Attributes:
        center: Subtracted before dividing (0 for max-scaling).
        scale: Divisor (training maximum, or standard deviation).
    """

    center: float
    scale: float

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> Scaler:
        """Fit on the (valid) training speeds."""
        if values.size == 0:
            raise DataError("no valid training speeds to fit the scaler on.")
        if kind == "max":
            return cls(0.0, float(max(np.abs(values).max(), 1e-6)))
        return cls(float(values.mean()), float(max(values.std(), 1e-6)))

    def transform(self, speeds):
        """Speeds to model units (numpy or torch)."""
        return (speeds - self.center) / self.scale

    def inverse(self, scaled):
        """Model units back to speeds (numpy or torch)."""
        return scaled * self.scale + self.center


class WindowDataset(Dataset):
    """Sliding windows over a prepared series.

    Item ``i`` is ``(x, y)``: ``x`` ``(input_len, N, F)`` scaled inputs starting at ``starts[i]``
    and ``y`` ``(output_len, N)`` speeds in original units that follow them, NaN past the end of
    the series.
    """

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, starts: np.ndarray, input_len: int, output_len: int
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.starts = np.asarray(starts, dtype=np.int64)
        self.input_len, self.output_len = input_len, output_len

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(self.starts[index])
        middle = start + self.input_len
        return self.inputs[start:middle], self.targets[middle : middle + self.output_len]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows stacked: ``(S, L, N, F)`` and ``(S, H, N)``."""
        index = torch.as_tensor(self.starts)
        x_index = index[:, None] + torch.arange(self.input_len)
        y_index = index[:, None] + self.input_len + torch.arange(self.output_len)
        return self.inputs[x_index], self.targets[y_index]


class IndexedWindows(Dataset):
    """The windows of a :class:`WindowDataset` with their position: item ``i`` is ``(x, y, i)``.

    Validation and test loaders use it, so that metrics computed across distributed processes can
    put every window back in its place once and drop the ones a ``DistributedSampler`` repeats to
    give every process the same number of windows.
    """

    def __init__(self, windows: WindowDataset) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = self.windows[index]
        return x, y, index


@dataclass
class PreparedData:
    """A dataset prepared under a protocol.

    Attributes:
        data: The source dataset.
        protocol: The protocol applied.
        scaler: Speed scaling fitted on the training part.
        train: Training windows.
        val: Validation windows, or None.
        test: Test windows (for ``series`` splits, windows short of future steps are kept with
            NaN targets so that every horizon is scored on its own full set of windows).
        inputs: ``(T, N, F)`` scaled model inputs of the whole series.
        test_starts_step: First series step of the test part.
    """

    data: TrafficData
    protocol: Protocol
    scaler: Scaler
    train: WindowDataset
    val: WindowDataset | None
    test: WindowDataset
    inputs: torch.Tensor
    test_starts_step: int


def model_inputs(
    speeds: np.ndarray,
    scaler: Scaler,
    time_of_day: np.ndarray | None = None,
    day_of_week: np.ndarray | None = None,
) -> torch.Tensor:
    """Float32 model inputs from speeds in original units: scaled speed, then the time features.

    Args:
        speeds: ``(..., T, N)`` speeds.
        scaler: The run's speed scaling.
        time_of_day: ``(..., T)`` fraction of the day in ``[0, 1)`` of each step, or None.
        day_of_week: ``(..., T)`` day of week (0 = Monday) of each step, or None.

    Returns:
        ``(..., T, N, F)`` with ``F = 1 + (time_of_day given) + (day_of_week given)``.
    """
    channels = [scaler.transform(speeds)]
    if time_of_day is not None:
        channels.append(np.broadcast_to(np.asarray(time_of_day)[..., None], speeds.shape))
    if day_of_week is not None:
        channels.append(np.broadcast_to(np.asarray(day_of_week)[..., None] / 7.0, speeds.shape))
    return torch.as_tensor(np.stack(channels, axis=-1), dtype=torch.float32)


def build_inputs(data: TrafficData, protocol: Protocol, scaler: Scaler) -> torch.Tensor:
    """``(T, N, F)`` float32 model inputs of a whole series: scaled speed, then the protocol's time features."""
    return model_inputs(
        data.speeds,
        scaler,
        data.time_of_day() if protocol.time_of_day else None,
        data.day_of_week() if protocol.day_of_week else None,
    )


@dataclass(frozen=True)
class Split:
    """Where the windows of each part of a series start, under a protocol.

    Attributes:
        train: Series steps where training windows start.
        val: Same for validation (empty when the protocol has none).
        test: Same for test windows.
        fit_end: Steps before it are the training data the scaler is fitted on.
        test_step: First series step of the test part.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fit_end: int
    test_step: int


def split(length: int, protocol: Protocol, name: str = "series") -> Split:
    """Split a series of ``length`` steps into train / validation / test windows under ``protocol``.

    Depends only on the length and the protocol, so a trained run finds its test windows again
    in the same data without fitting anything.

    Raises:
        DataError: If the series is too short for the protocol's windows (``name`` is named).
    """
    window = protocol.input_len + protocol.output_len
    if protocol.split_on == "series":
        train_end = int(length * protocol.train)
        val_end = int(length * (protocol.train + protocol.val))
        train_starts = np.arange(0, train_end - window + 1)
        val_starts = np.arange(train_end, val_end - window + 1)
        test_starts = np.arange(val_end, length - protocol.input_len - min(protocol.horizons) + 1)
        fit_end, test_step = train_end, val_end
    else:
        starts = np.arange(0, length - window + 1)
        num_test = round(len(starts) * (1 - protocol.train - protocol.val))
        num_train = round(len(starts) * protocol.train)
        train_starts = starts[:num_train]
        val_starts = starts[num_train : len(starts) - num_test]
        test_starts = starts[len(starts) - num_test :]
        fit_end = (train_starts[-1] + protocol.input_len) if len(train_starts) else 0
        test_step = int(test_starts[0]) if len(test_starts) else length
    if len(train_starts) < 1 or len(test_starts) < 1:
        raise DataError(
            f"{name}: {length} steps are too few for {protocol.input_len}+{protocol.output_len}-step "
            f"windows under the {protocol.name} protocol."
        )
    return Split(train_starts, val_starts, test_starts, int(fit_end), int(test_step))


def for_data(protocol: Protocol, data: TrafficData) -> Protocol:
    """``protocol`` with the dataset's missing-value marker (``data.null_value``, e.g. METR-LA's 0)
    masked, whatever the protocol says; unchanged for a dataset without one."""
    if data.null_value is None or protocol.null_value == data.null_value:
        return protocol
    return protocol.replace(null_value=data.null_value)


def prepare(data: TrafficData, protocol: Protocol) -> PreparedData:
    """Split, scale and window ``data`` under ``protocol`` (with the dataset's missing-value marker
    masked, see :func:`for_data`; ``PreparedData.protocol`` is the protocol applied).

    Raises:
        DataError: If the series is too short for the protocol's windows.
    """
    protocol = for_data(protocol, data)
    valid = np.isfinite(data.speeds)
    if protocol.null_value is not None:
        valid &= data.speeds != protocol.null_value
    parts = split(data.num_steps, protocol, data.name)
    fit_end = parts.fit_end
    scaler = Scaler.fit(protocol.scaling, data.speeds[:fit_end][valid[:fit_end]])
    inputs = build_inputs(data, protocol, scaler)
    targets = torch.as_tensor(data.speeds, dtype=torch.float32)
    targets = torch.cat([targets, torch.full((protocol.output_len, data.num_nodes), float("nan"))])

    def windows(starts: np.ndarray) -> WindowDataset:
        return WindowDataset(inputs, targets, starts, protocol.input_len, protocol.output_len)

    return PreparedData(
        data=data,
        protocol=protocol,
        scaler=scaler,
        train=windows(parts.train),
        val=windows(parts.val) if len(parts.val) else None,
        test=windows(parts.test),
        inputs=inputs,
        test_starts_step=parts.test_step,
    )
