"""Any speed table as CSV, on a graph given as an adjacency matrix CSV or a ``from,to,distance`` list (or none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.data.readers import (
    align_adjacency,
    gaussian_kernel_adjacency,
    read_distance_csv,
    read_matrix_csv,
    read_speed_csv,
)
from pentad_traffic.registry import DATASETS

#: The adjacency file looked for by default (optional: without it the sensors have no graph).
DEFAULT_ADJACENCY = "adjacency.csv"


@DATASETS.register("csv")
def load_csv(
    root: str | Path | None = None,
    speeds: str = "speeds.csv",
    adjacency: str | None = DEFAULT_ADJACENCY,
    distances: str | None = None,
    kernel_threshold: float = 0.1,
    steps_per_day: int = STEPS_PER_DAY_5MIN,
    missing_value: float | None = None,
) -> TrafficData:
    """Any time x sensors CSV plus an adjacency matrix CSV or a ``from,to,distance`` CSV.

    Args:
        root: Folder holding the files (relative file names are resolved in it); ``--data-dir``,
            default the working directory.
        speeds: Speed table: header of sensor ids, optional timestamp first column.
        adjacency: Square weight matrix CSV (optional header of sensor ids); ignored when
            ``distances`` is given. Without either file (``adjacency`` null, or the default
            ``adjacency.csv`` absent) the sensors have no graph: the identity, no edges.
        distances: Edge list ``from,to,distance``; a Gaussian kernel turns it into weights.
        kernel_threshold: Kernel weights under it are dropped.
        steps_per_day: Rows per day when the table has no timestamp column.
        missing_value: A reading that marks a missing value (e.g. 0), masked in the loss and every
            metric; self-configuration sets 0 when a positive series holds zeros.
    """
    folder = Path(root) if root is not None else Path.cwd()
    speeds_path = folder / speeds
    values, ids, timestamps = read_speed_csv(speeds_path)
    if distances:
        weights = gaussian_kernel_adjacency(read_distance_csv(folder / distances), ids, kernel_threshold)
    elif adjacency and (adjacency != DEFAULT_ADJACENCY or (folder / adjacency).is_file()):
        matrix, header = read_matrix_csv(folder / adjacency)
        weights = align_adjacency(matrix, header, ids, folder / adjacency)
    else:
        weights = np.eye(len(ids), dtype=np.float32)  # no road graph: each sensor its own neighbourhood
    if timestamps is not None and len(timestamps) > 1:
        step_seconds = int(np.median(np.diff(timestamps).astype(np.int64)))
        if step_seconds > 0 and 86400 % step_seconds == 0:
            steps_per_day = 86400 // step_seconds
    return TrafficData(
        "csv", values, weights, ids, steps_per_day, 0, timestamps, source=str(speeds_path), null_value=missing_value
    )
