"""Most-popular baseline (no training): item counts for ranking, shrunk item means for ratings."""

from __future__ import annotations

import numpy as np
import torch

from pentad_recsys.data.interactions import Interactions
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS


@MODELS.register(
    "popularity",
    description="most popular items (ranking) / shrunk item mean (rating); no training",
    tasks=("rating", "ranking"),
    inputs="ids",
    trainable=False,
)
class Popularity(RecModel):
    """Most-popular baseline: ranks items by training count; rates by the shrunk item mean.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        task: ``"ranking"`` scores ``log(1 + count)``; ``"rating"`` predicts the item's mean
            residual shrunk towards 0 by ``shrinkage`` pseudo-ratings.
        shrinkage: Pseudo-count of the item-mean shrinkage.
    """

    def __init__(self, num_users: int, num_items: int, task: str = "ranking", shrinkage: float = 10.0) -> None:
        super().__init__(num_users, num_items)
        self.task = task
        self.shrinkage = shrinkage
        self.register_buffer("counts", torch.zeros(num_items))
        self.register_buffer("item_residual", torch.zeros(num_items))
        self._buffer_axes = {"counts": "item", "item_residual": "item"}

    def fit_statistics(self, train: Interactions) -> None:
        counts = np.bincount(train.items, minlength=self.num_items).astype(np.float32)
        mean = float(train.ratings.mean()) if len(train) else 0.0
        sums = np.bincount(train.items, weights=train.ratings - mean, minlength=self.num_items)
        self.counts = torch.as_tensor(counts)
        self.item_residual = torch.as_tensor((sums / (counts + self.shrinkage)).astype(np.float32))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.task == "rating":
            return self.item_residual[items]
        return torch.log1p(self.counts[items])

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        row = self.item_residual if self.task == "rating" else torch.log1p(self.counts)
        return row.expand(len(users), -1).clone()
