"""METR-LA (DCRNN): 207 Los Angeles sensors, 5-minute speeds, March-June 2012; 0 = missing."""

from __future__ import annotations

from pathlib import Path

from pentad_traffic.data.core import TrafficData
from pentad_traffic.data.dcrnn import load_dcrnn
from pentad_traffic.registry import DATASETS


@DATASETS.register("metr-la")
def load_metr_la(root: str | Path | None = None) -> TrafficData:
    """METR-LA (DCRNN): 207 Los Angeles sensors, 5-minute speeds, March-June 2012; 0 = missing.

    Args:
        root: Folder holding ``metr-la.h5`` and ``adj_mx.pkl`` (default ``$PENTAD_DATA/metr-la``).
    """
    return load_dcrnn("metr-la", "metr-la.h5", ("adj_mx.pkl", "adj_METR-LA.pkl"), root)
