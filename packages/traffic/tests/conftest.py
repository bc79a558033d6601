"""Shared fixtures: small generated data."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def ring_adjacency() -> np.ndarray:
    """A 5-node ring road graph."""
    matrix = np.eye(5, dtype=np.float32)
    for i in range(5):
        matrix[i, (i + 1) % 5] = matrix[(i + 1) % 5, i] = 1.0
    return matrix
