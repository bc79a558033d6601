"""Shared fixtures: small generated data."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def ring_adjacency() -> np.ndarray:
    """A 5-node ring road graph."""
    matrix = np.eye(5, dtype=np.float32)
    for i in range(5):
        matrix[i, (i + 1) % 5] = matrix[(i + 1) % 5, i] = 1.0
    return matrix


def write_dcrnn_files(folder: Path, speeds: np.ndarray, ids: list[str], adjacency: np.ndarray, key: str = "df") -> Path:
    """A dataset folder in the DCRNN layout of METR-LA: ``metr-la.h5`` (pandas HDFStore fixed
    format, written with h5py, 5-minute steps from 1 March 2012) and ``adj_mx.pkl``."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    stamps = np.datetime64("2012-03-01T00:00") + np.arange(len(speeds)) * np.timedelta64(5, "m")
    with h5py.File(folder / "metr-la.h5", "w") as handle:
        group = handle.create_group(key)
        group["block0_values"] = speeds
        group["axis0"] = np.array([i.encode() for i in ids])
        group["axis1"] = stamps.astype("datetime64[ns]").astype(np.int64)
    with (folder / "adj_mx.pkl").open("wb") as handle:
        pickle.dump((ids, {s: i for i, s in enumerate(ids)}, adjacency), handle, protocol=2)
    return folder


@pytest.fixture
def write_dcrnn() -> Callable[..., Path]:
    """:func:`write_dcrnn_files`."""
    return write_dcrnn_files
