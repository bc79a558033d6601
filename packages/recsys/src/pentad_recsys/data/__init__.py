"""Datasets: loaders registered in :data:`pentad_recsys.registry.DATASETS`, splits, sampling.

Every loader takes the dataset's folder (or file, for ``csv``) and keyword options, and returns a
:class:`RecDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pentad_core.errors import ConfigError, DataError
from pentad_recsys.data.csvfile import load_csv
from pentad_recsys.data.interactions import IdMap, Interactions, SideFeatures
from pentad_recsys.data.movielens import ARCHIVES, RecDataset, load_ml1m, load_ml100k, load_ml_latest_small
from pentad_recsys.data.sampling import NegativeSampler
from pentad_recsys.data.splits import SPLITS, Split, make_split
from pentad_recsys.data.synthetic import make_synthetic
from pentad_recsys.registry import DATASETS

DATASETS.register(
    "ml-100k", load_ml100k, description="MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies, side features"
)
DATASETS.register(
    "ml-1m", load_ml1m, description="MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies (:: files)"
)
DATASETS.register(
    "ml-latest-small",
    load_ml_latest_small,
    description="MovieLens latest small: ~100,000 ratings 0.5-5 (CSV with header)",
)
DATASETS.register("csv", load_csv, description="any delimited interactions file with a column mapping")
DATASETS.register(
    "synthetic", lambda root=None, **kw: make_synthetic(**kw), description="generated offline from latent factors"
)

#: Datasets that need no files.
GENERATED = ("synthetic",)


def dataset_root(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder (or file) of dataset ``name``: ``data_dir``, else ``$PENTAD_DATA/<name>``, else the cache.

    Uses :func:`pentad_core.data.dataset_root` when available so every app resolves paths alike.
    """
    try:
        from pentad_core.data import dataset_root as core_root

        return Path(core_root(name, data_dir))
    except ImportError:  # pragma: no cover - older core
        if data_dir is not None:
            return Path(data_dir)
        env = os.environ.get("PENTAD_DATA")
        return Path(env) / name if env else Path.home() / ".cache" / "pentad" / name


def load_dataset(name: str, data_dir: str | Path | None = None, **options: Any) -> RecDataset:
    """Load a registered dataset.

    Args:
        name: ``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``csv`` or ``synthetic``.
        data_dir: Folder of the dataset (for ``csv``: the file); default ``$PENTAD_DATA/<name>``.
        **options: Loader options (``csv`` column mapping, ``synthetic`` sizes).

    Raises:
        ConfigError: Unknown dataset.
        DataError: Missing or malformed files.
    """
    loader = DATASETS.get(name)
    if name in GENERATED:
        return loader(**options)
    if name == "csv" and data_dir is None:
        raise ConfigError("the csv dataset needs --data-dir pointing at the interactions file.")
    root = Path(data_dir) if data_dir is not None else dataset_root(name)
    try:
        return loader(root, **options)
    except TypeError as error:
        raise ConfigError(f"dataset {name!r}: {error}") from None


__all__ = [
    "ARCHIVES",
    "DATASETS",
    "GENERATED",
    "SPLITS",
    "DataError",
    "IdMap",
    "Interactions",
    "NegativeSampler",
    "RecDataset",
    "SideFeatures",
    "Split",
    "dataset_root",
    "load_dataset",
    "make_split",
    "make_synthetic",
]
