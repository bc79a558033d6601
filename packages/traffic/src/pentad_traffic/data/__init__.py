"""Traffic datasets: readers, the registry of named datasets and :func:`load_dataset`.

Every loader takes the dataset folder ``root`` and returns a :class:`TrafficData`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.data import dataset_root
from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.data.readers import (
    gaussian_kernel_adjacency,
    read_adj_pickle,
    read_dcrnn_h5,
    read_distance_csv,
    read_matrix_csv,
    read_speed_csv,
)
from pentad_traffic.data.synthetic import generate_synthetic
from pentad_traffic.registry import DATASETS

__all__ = [
    "STEPS_PER_DAY_5MIN",
    "TrafficData",
    "generate_synthetic",
    "load_csv",
    "load_dataset",
    "load_dcrnn",
    "load_los_loop",
    "resolve_root",
]


def resolve_root(name: str, root: str | Path | None) -> Path:
    """The folder of dataset ``name``: ``root`` if given, else ``$PENTAD_DATA/<name>``, else
    ``~/.cache/pentad/<name>`` (:func:`pentad_core.data.dataset_root`).

    Raises:
        DataError: If the folder does not exist.
    """
    folder = dataset_root(name, root)
    if not folder.is_dir():
        raise missing_file(folder, f"{name} dataset folder", "Pass --data-dir or set PENTAD_DATA to the datasets root.")
    return folder


def _align_adjacency(
    adjacency: np.ndarray, adjacency_ids: list[str] | None, sensor_ids: list[str], path: Path
) -> np.ndarray:
    """Reorder a matrix that carries its own sensor ids into the speed table's column order."""
    if adjacency.shape[0] != len(sensor_ids):
        raise DataError(
            f"{path}: adjacency is {adjacency.shape[0]}x{adjacency.shape[1]} but the speed table has "
            f"{len(sensor_ids)} sensors; it must be {len(sensor_ids)}x{len(sensor_ids)}."
        )
    if adjacency_ids is None or adjacency_ids == sensor_ids:
        return adjacency
    position = {sensor: i for i, sensor in enumerate(adjacency_ids)}
    unknown = [s for s in sensor_ids if s not in position]
    if unknown:
        raise DataError(f"{path}: sensors {unknown[:3]} of the speed table are missing from the adjacency.")
    order = np.array([position[s] for s in sensor_ids])
    return adjacency[np.ix_(order, order)]


@DATASETS.register("los-loop")
def load_los_loop(root: str | Path | None = None) -> TrafficData:
    """Los-loop (T-GCN): 207 Los Angeles loop detectors, 5-minute speeds, 7 days of March 2012."""
    folder = resolve_root("los-loop", root)
    speeds, ids, _ = read_speed_csv(folder / "los_speed.csv")
    adjacency, header = read_matrix_csv(folder / "los_adj.csv")
    adjacency = _align_adjacency(adjacency, header, ids, folder / "los_adj.csv")
    # The series starts on Thursday 1 March 2012 00:00 (T-GCN), i.e. step 3 days into the week.
    return TrafficData(
        "los-loop", speeds, adjacency, ids, STEPS_PER_DAY_5MIN, 3 * STEPS_PER_DAY_5MIN, source=str(folder)
    )


def load_dcrnn(name: str, h5_name: str, pickle_names: tuple[str, ...], root: str | Path | None) -> TrafficData:
    """Load a dataset in the DCRNN layout: ``<name>.h5`` plus ``adj_mx*.pkl``."""
    folder = resolve_root(name, root)
    speeds, ids, timestamps = read_dcrnn_h5(folder / h5_name)
    pickle_path = next((folder / p for p in pickle_names if (folder / p).is_file()), folder / pickle_names[0])
    graph_ids, adjacency = read_adj_pickle(pickle_path)
    adjacency = _align_adjacency(adjacency, graph_ids, ids, pickle_path)
    return TrafficData(name, speeds, adjacency, ids, STEPS_PER_DAY_5MIN, None, timestamps, source=str(folder))


@DATASETS.register("metr-la")
def load_metr_la(root: str | Path | None = None) -> TrafficData:
    """METR-LA (DCRNN): 207 Los Angeles sensors, 5-minute speeds, March-June 2012; 0 = missing."""
    return load_dcrnn("metr-la", "metr-la.h5", ("adj_mx.pkl", "adj_METR-LA.pkl"), root)


@DATASETS.register("pems-bay")
def load_pems_bay(root: str | Path | None = None) -> TrafficData:
    """PEMS-BAY (DCRNN): 325 Bay Area sensors, 5-minute speeds, January-May 2017; 0 = missing."""
    return load_dcrnn("pems-bay", "pems-bay.h5", ("adj_mx_bay.pkl", "adj_mx.pkl", "adj_PEMS-BAY.pkl"), root)


@DATASETS.register("csv")
def load_csv(
    root: str | Path | None = None,
    speeds: str = "speeds.csv",
    adjacency: str | None = "adjacency.csv",
    distances: str | None = None,
    kernel_threshold: float = 0.1,
    steps_per_day: int = STEPS_PER_DAY_5MIN,
) -> TrafficData:
    """Any time x sensors CSV plus an adjacency matrix CSV or a ``from,to,distance`` CSV.

    Args:
        root: Folder holding the files (relative file names are resolved in it).
        speeds: Speed table: header of sensor ids, optional timestamp first column.
        adjacency: Square weight matrix CSV (optional header of sensor ids); ignored when
            ``distances`` is given.
        distances: Edge list ``from,to,distance``; a Gaussian kernel turns it into weights.
        kernel_threshold: Kernel weights under it are dropped.
        steps_per_day: Rows per day when the table has no timestamp column.
    """
    folder = Path(root) if root is not None else Path.cwd()
    speeds_path = folder / speeds
    values, ids, timestamps = read_speed_csv(speeds_path)
    if distances:
        weights = gaussian_kernel_adjacency(read_distance_csv(folder / distances), ids, kernel_threshold)
    elif adjacency:
        matrix, header = read_matrix_csv(folder / adjacency)
        weights = _align_adjacency(matrix, header, ids, folder / adjacency)
    else:
        raise ConfigError("the csv dataset needs an adjacency or a distances file.", "Set one of them.")
    if timestamps is not None and len(timestamps) > 1:
        step_seconds = int(np.median(np.diff(timestamps).astype(np.int64)))
        if step_seconds > 0 and 86400 % step_seconds == 0:
            steps_per_day = 86400 // step_seconds
    return TrafficData("csv", values, weights, ids, steps_per_day, 0, timestamps, source=str(speeds_path))


@DATASETS.register("synthetic")
def load_synthetic(
    root: str | Path | None = None,
    num_nodes: int = 20,
    num_days: int = 7,
    seed: int = 0,
) -> TrafficData:
    """Generated offline: periodic speeds with congestion waves travelling along a random road graph."""
    del root  # generated, nothing to read
    return generate_synthetic(num_nodes=num_nodes, num_days=num_days, seed=seed)


def load_dataset(name: str, root: str | Path | None = None, **options) -> TrafficData:
    """Load the registered dataset ``name`` (see ``DATASETS.names()``).

    Args:
        name: Dataset name, e.g. ``"los-loop"``.
        root: Dataset folder; default ``$PENTAD_DATA/<name>``.
        **options: Loader options (e.g. ``num_nodes`` for ``synthetic``).
    """
    return DATASETS.build(name, root=root, **options)
