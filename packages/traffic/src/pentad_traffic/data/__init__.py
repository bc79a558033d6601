"""Traffic datasets: one module per dataset (each registers itself in
:data:`pentad_traffic.registry.DATASETS`), the readers, and :func:`load_dataset`.

Every loader returns a :class:`TrafficData`; a loader of files takes the dataset folder ``root``,
a ``generated`` one (``synthetic``) takes only its options. Importing this package imports every file
in this folder (:func:`~pentad_core.registry.import_submodules`), so adding a dataset is adding its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pentad_core.registry import import_submodules
from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.data.csv_table import load_csv
from pentad_traffic.data.dcrnn import load_dcrnn
from pentad_traffic.data.los_loop import load_los_loop
from pentad_traffic.data.readers import resolve_root
from pentad_traffic.data.synthetic import generate_synthetic
from pentad_traffic.registry import DATASETS

import_submodules(__name__)

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


def load_dataset(name: str, root: str | Path | None = None, options: dict[str, Any] | None = None) -> TrafficData:
    """Load the registered dataset ``name`` (see ``DATASETS.names()``).

    Args:
        name: Dataset name, e.g. ``"los-loop"``.
        root: Dataset folder (``--data-dir``); default ``$PENTAD_DATA/<name>``. Not used by a
            generated dataset.
        options: Loader options, a config's ``dataset_options`` (e.g. ``{"num_nodes": 8}`` for
            ``synthetic``); a key the loader does not take raises ConfigError.
    """
    arguments = {} if DATASETS.info(name).generated else {"root": root}
    return DATASETS.build(name, options=options, **arguments)
