from __future__ import annotations

import pytest

from pentad_recsys.data import make_split, make_synthetic


@pytest.fixture(scope="session")
def tiny():
    """A small synthetic dataset and its random split (fast enough for every model)."""
    data = make_synthetic(num_users=40, num_items=50, interactions_per_user=12, seed=3)
    return data, make_split(data, "random", ratio=0.2, seed=0)
