"""The DCRNN dataset layout shared by METR-LA and PEMS-BAY: ``<name>.h5`` plus ``adj_mx*.pkl``.

The speed tables are only published on Google Drive / Baidu (no stable URL), so these datasets
have no ``files`` to download: put the ``.h5`` and the pickle into the dataset folder by hand
(docs/traffic.md). A reading of 0 is missing in both (``TrafficData.null_value``): it is masked in
the loss and in every metric, whatever the protocol.
"""

from __future__ import annotations

from pathlib import Path

from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.data.readers import align_adjacency, read_adj_pickle, read_dcrnn_h5, resolve_root


def load_dcrnn(name: str, h5_name: str, pickle_names: tuple[str, ...], root: str | Path | None) -> TrafficData:
    """Load a dataset in the DCRNN layout.

    Args:
        name: Dataset name (its default folder is ``$PENTAD_DATA/<name>``).
        h5_name: The speed table, a pandas ``HDFStore`` file.
        pickle_names: Names the graph pickle is published under; the first present is read.
        root: The dataset folder, or None for the default.
    """
    folder = resolve_root(name, root)
    speeds, ids, timestamps = read_dcrnn_h5(folder / h5_name)
    pickle_path = next((folder / p for p in pickle_names if (folder / p).is_file()), folder / pickle_names[0])
    graph_ids, adjacency = read_adj_pickle(pickle_path)
    adjacency = align_adjacency(adjacency, graph_ids, ids, pickle_path)
    # A reading of 0 is a sensor that was down (DCRNN): missing, masked under every protocol.
    return TrafficData(
        name, speeds, adjacency, ids, STEPS_PER_DAY_5MIN, None, timestamps, source=str(folder), null_value=0.0
    )
