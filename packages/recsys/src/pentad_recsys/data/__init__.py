"""Datasets (each registers itself in :data:`pentad_recsys.registry.DATASETS` in its own module),
splits and negative sampling.

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so adding a dataset is adding its file.

Every file-based loader takes the dataset's folder (for ``csv``: the file) and keyword options
(``dataset_options``), and returns a :class:`RecDataset`; the generated ``synthetic`` dataset takes
options only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pentad_core.data import dataset_root
from pentad_core.errors import ConfigError
from pentad_core.registry import import_submodules
from pentad_recsys.data.interactions import IdMap, Interactions, RecDataset, SideFeatures
from pentad_recsys.data.sampling import NegativeSampler
from pentad_recsys.data.splits import SPLITS, Split, make_split
from pentad_recsys.data.synthetic import make_synthetic
from pentad_recsys.registry import DATASETS

import_submodules(__name__)


def load_dataset(name: str, data_dir: str | Path | None = None, **options: Any) -> RecDataset:
    """Load a registered dataset.

    Args:
        name: ``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``csv`` or ``synthetic``.
        data_dir: Folder of the dataset (for ``csv``: the file); default ``$PENTAD_DATA/<name>``
            (:func:`pentad_core.data.dataset_root`); ignored by a generated dataset.
        **options: Loader options (``dataset_options``: ``csv`` column mapping, ``synthetic`` sizes),
            checked against the loader's signature.

    Raises:
        ConfigError: Unknown dataset or misspelled option.
        DataError: Missing or malformed files.
    """
    if DATASETS.info(name).generated:
        return DATASETS.build(name, options=options)
    if name == "csv" and data_dir is None:
        raise ConfigError("the csv dataset needs --data-dir pointing at the interactions file.")
    return DATASETS.build(name, options=options, root=dataset_root(name, data_dir))


__all__ = [
    "DATASETS",
    "SPLITS",
    "IdMap",
    "Interactions",
    "NegativeSampler",
    "RecDataset",
    "SideFeatures",
    "Split",
    "load_dataset",
    "make_split",
    "make_synthetic",
]
