"""PEMS-BAY (DCRNN): 325 Bay Area sensors, 5-minute speeds, January-May 2017; 0 = missing."""

from __future__ import annotations

from pathlib import Path

from pentad_traffic.data.core import TrafficData
from pentad_traffic.data.dcrnn import load_dcrnn
from pentad_traffic.registry import DATASETS


@DATASETS.register("pems-bay")
def load_pems_bay(root: str | Path | None = None) -> TrafficData:
    """PEMS-BAY (DCRNN): 325 Bay Area sensors, 5-minute speeds, January-May 2017; 0 = missing.

    Args:
        root: Folder holding ``pems-bay.h5`` and ``adj_mx_bay.pkl`` (default ``$PENTAD_DATA/pems-bay``).
    """
    return load_dcrnn("pems-bay", "pems-bay.h5", ("adj_mx_bay.pkl", "adj_mx.pkl", "adj_PEMS-BAY.pkl"), root)
