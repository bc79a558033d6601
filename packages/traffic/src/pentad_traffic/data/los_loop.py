"""Los-loop (T-GCN): 207 Los Angeles loop detectors, 5-minute speeds, 7 days of March 2012."""

from __future__ import annotations

from pathlib import Path

from pentad_core.data import RemoteFile
from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.data.readers import align_adjacency, read_matrix_csv, read_speed_csv, resolve_root
from pentad_traffic.registry import DATASETS

#: The official files, published in the T-GCN repository.
FILES = (
    RemoteFile(
        "https://raw.githubusercontent.com/lehaifeng/T-GCN/master/data/los_speed.csv",
        "los_speed.csv",
        sha256="7b732d86ae32b2930595becba28aff39dacbfb2197e250fc0332e1744ce2cbf4",
    ),
    RemoteFile(
        "https://raw.githubusercontent.com/lehaifeng/T-GCN/master/data/los_adj.csv",
        "los_adj.csv",
        sha256="7a6eb41e10677992b5af50f5ab187c6c05c5c3a92cb973950cfddbf857361e76",
    ),
)


@DATASETS.register("los-loop", files=FILES)
def load_los_loop(root: str | Path | None = None) -> TrafficData:
    """Los-loop (T-GCN): 207 Los Angeles loop detectors, 5-minute speeds, 7 days of March 2012.

    Args:
        root: Folder holding ``los_speed.csv`` and ``los_adj.csv`` (default ``$PENTAD_DATA/los-loop``).
    """
    folder = resolve_root("los-loop", root, downloadable=True)
    speeds, ids, _ = read_speed_csv(folder / "los_speed.csv")
    adjacency, header = read_matrix_csv(folder / "los_adj.csv")
    adjacency = align_adjacency(adjacency, header, ids, folder / "los_adj.csv")
    # The series starts on Thursday 1 March 2012 00:00 (T-GCN), i.e. step 3 days into the week.
    return TrafficData(
        "los-loop", speeds, adjacency, ids, STEPS_PER_DAY_5MIN, 3 * STEPS_PER_DAY_5MIN, source=str(folder)
    )
