"""The in-memory form of a traffic dataset and its validation.

Missing-value policy (the METR-LA / PEMS-BAY convention): a detector that was down reports a
speed of exactly 0. Such readings stay in the inputs as written. A dataset whose
:attr:`TrafficData.null_value` is set (METR-LA and PEMS-BAY: 0) has them masked out of the loss and
of every metric under every protocol (:func:`pentad_traffic.protocols.prepare` adds it to the
protocol); for other datasets a protocol with ``null_value=0.0`` (the DCRNN protocol) masks them.
NaN, empty or non-numeric cells are never guessed: they raise :class:`~pentad_core.errors.DataError`
so the user decides how to fill them (write 0 to mark a reading as missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pentad_core.errors import DataError

#: 5-minute steps in a day, the sampling of every dataset shipped here.
STEPS_PER_DAY_5MIN = 288


@dataclass
class TrafficData:
    """A speed table on a road graph.

    Attributes:
        name: Dataset name, e.g. ``"los-loop"``.
        speeds: ``(T, N)`` float32 speeds, one column per sensor.
        adjacency: ``(N, N)`` float32 non-negative edge weights (row = from, column = to).
        sensor_ids: ``N`` sensor ids, in column order.
        steps_per_day: Time steps in one day (288 for 5-minute data), for time-of-day features.
        start_step: Step of the first row within its week (0 = Monday 00:00), for day-of-week
            features. ``None`` when the calendar is unknown (then day-of-week counts days from the
            first row).
        timestamps: Optional ``(T,)`` ``datetime64[s]`` time of each row.
        source: Where the data was read from, for messages and run records.
        null_value: The reading that marks a missing value in this dataset (0 for METR-LA and
            PEMS-BAY), masked in the loss and every metric whatever the protocol; None when the
            dataset has no such convention (then only the protocol's ``null_value`` is masked).
    """

    name: str
    speeds: np.ndarray
    adjacency: np.ndarray
    sensor_ids: list[str] = field(default_factory=list)
    steps_per_day: int = STEPS_PER_DAY_5MIN
    start_step: int | None = None
    timestamps: np.ndarray | None = None
    source: str = ""
    null_value: float | None = None

    def __post_init__(self) -> None:
        where = self.source or self.name
        speeds = np.asarray(self.speeds)
        if speeds.ndim != 2:
            raise DataError(f"{where}: the speed table must be 2-D (time x sensors), got shape {speeds.shape}.")
        if not np.issubdtype(speeds.dtype, np.number):
            raise DataError(f"{where}: the speed table must hold numbers, got dtype {speeds.dtype}.")
        speeds = speeds.astype(np.float32)
        if not np.isfinite(speeds).all():
            row, col = np.argwhere(~np.isfinite(speeds))[0]
            raise DataError(
                f"{where}: the speed table holds NaN or infinite values (first at row {row}, sensor {col}).",
                "Fill them, or write 0 to mark a missing reading (masked under the DCRNN protocol).",
            )
        time_steps, num_nodes = speeds.shape
        if time_steps < 2 or num_nodes < 1:
            raise DataError(f"{where}: the speed table is empty or has a single row (shape {speeds.shape}).")
        adjacency = np.asarray(self.adjacency, dtype=np.float32)
        if adjacency.shape != (num_nodes, num_nodes):
            raise DataError(
                f"{where}: the adjacency has shape {adjacency.shape} but the speed table has "
                f"{num_nodes} sensors; it must be {num_nodes}x{num_nodes} in the same sensor order."
            )
        if not np.isfinite(adjacency).all() or (adjacency < 0).any():
            raise DataError(f"{where}: the adjacency must hold finite, non-negative weights.")
        if not self.sensor_ids:
            self.sensor_ids = [str(i) for i in range(num_nodes)]
        if len(self.sensor_ids) != num_nodes:
            raise DataError(f"{where}: {len(self.sensor_ids)} sensor ids for {num_nodes} speed columns.")
        if self.steps_per_day < 1:
            raise DataError(f"{where}: steps_per_day must be positive, got {self.steps_per_day}.")
        if self.timestamps is not None and len(self.timestamps) != time_steps:
            raise DataError(f"{where}: {len(self.timestamps)} timestamps for {time_steps} rows.")
        self.speeds = speeds
        self.adjacency = adjacency

    @property
    def num_steps(self) -> int:
        """Number of time steps ``T``."""
        return self.speeds.shape[0]

    @property
    def num_nodes(self) -> int:
        """Number of sensors ``N``."""
        return self.speeds.shape[1]

    def time_of_day(self) -> np.ndarray:
        """``(T,)`` float32 fraction of the day in ``[0, 1)`` of each row."""
        if self.timestamps is not None:
            seconds = self.timestamps.astype("datetime64[s]") - self.timestamps.astype("datetime64[D]")
            return (seconds.astype(np.int64) / 86400.0).astype(np.float32)
        offset = self.start_step or 0
        return (((np.arange(self.num_steps) + offset) % self.steps_per_day) / self.steps_per_day).astype(np.float32)

    def day_of_week(self) -> np.ndarray:
        """``(T,)`` int64 day of week (0 = Monday) of each row."""
        if self.timestamps is not None:
            days = self.timestamps.astype("datetime64[D]").astype(np.int64)
            return (days + 3) % 7  # 1970-01-01 was a Thursday
        offset = self.start_step or 0
        return ((np.arange(self.num_steps) + offset) // self.steps_per_day) % 7

    def describe(self) -> str:
        """One line: name, shape and graph size."""
        edges = int((self.adjacency > 0).sum() - (np.diag(self.adjacency) > 0).sum())
        missing = ""
        if self.null_value is not None:
            count = int((self.speeds == self.null_value).sum())
            missing = f", {count} missing readings ({self.null_value:g}, masked)"
        return (
            f"{self.name}: {self.num_steps} steps x {self.num_nodes} sensors, {edges} directed edges, "
            f"{self.steps_per_day} steps/day, speeds {self.speeds.min():.1f}..{self.speeds.max():.1f}{missing}"
        )
