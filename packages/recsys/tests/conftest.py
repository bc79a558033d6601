from __future__ import annotations

import pytest
import torch

from pentad_recsys.data import make_split, make_synthetic


@pytest.fixture(scope="session")
def tiny():
    """A small synthetic dataset and its random split (fast enough for every model)."""
    data = make_synthetic(num_users=40, num_items=50, interactions_per_user=12, seed=3)
    return data, make_split(data, "random", ratio=0.2, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests' small ops run faster on one thread; two contend badly on a shared 2-core machine.

    Function-scoped, so the thread count is restored after every test and other packages' tests in
    the same pytest session keep torch's default.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
