"""Item-based k-nearest neighbours (Sarwar et al., WWW 2001); no training, statistics only."""

from __future__ import annotations

import numpy as np
import torch

from pentad_recsys.data.interactions import Interactions
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS


@MODELS.register(
    "itemknn",
    description="item-based k-nearest neighbours, cosine similarity with shrinkage",
    tasks=("rating", "ranking"),
    inputs="ids",
    trainable=False,
)
class ItemKNN(RecModel):
    """Item-based k-nearest neighbours with cosine similarity (Sarwar et al., WWW 2001).

    Ranking: ``score(u, i) = sum_j in history(u) sim(j, i)`` over the ``k`` nearest neighbours of
    each item. Rating: the baseline ``b_u + b_i`` plus the similarity-weighted mean of the user's
    residuals on the neighbours of ``i`` that the user rated.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        task: ``"rating"`` or ``"ranking"``.
        k: Neighbours kept per item.
        shrinkage: Similarity shrinkage ``n_common / (n_common + shrinkage)`` damps rare pairs.
    """

    def __init__(
        self, num_users: int, num_items: int, task: str = "ranking", k: int = 40, shrinkage: float = 10.0
    ) -> None:
        super().__init__(num_users, num_items)
        self.task, self.k, self.shrinkage = task, k, shrinkage
        self.register_buffer("similarity", torch.zeros(num_items, num_items))
        self.register_buffer("matrix", torch.zeros(num_users, num_items))
        self.register_buffer("user_bias", torch.zeros(num_users))
        self.register_buffer("item_bias", torch.zeros(num_items))

    def fit_statistics(self, train: Interactions) -> None:
        n_u, n_i = self.num_users, self.num_items
        mean = float(train.ratings.mean())
        count_i = np.bincount(train.items, minlength=n_i) + 10.0
        item_bias = np.bincount(train.items, weights=train.ratings - mean, minlength=n_i) / count_i
        resid = train.ratings - mean - item_bias[train.items]
        count_u = np.bincount(train.users, minlength=n_u) + 10.0
        user_bias = np.bincount(train.users, weights=resid, minlength=n_u) / count_u
        values = train.ratings - mean - item_bias[train.items] - user_bias[train.users]
        if self.task == "ranking":
            values = np.ones_like(values)
        matrix = torch.zeros(n_u, n_i)
        matrix[torch.as_tensor(train.users), torch.as_tensor(train.items)] = torch.as_tensor(
            values, dtype=torch.float32
        )
        binary = (matrix != 0).float()
        binary[torch.as_tensor(train.users), torch.as_tensor(train.items)] = 1.0
        norms = matrix.norm(dim=0).clamp(min=1e-8)
        sim = (matrix.T @ matrix) / norms[:, None] / norms[None, :]
        common = binary.T @ binary
        sim = sim * common / (common + self.shrinkage)
        sim.fill_diagonal_(0.0)
        if self.k < n_i:
            threshold = torch.topk(sim.abs(), self.k, dim=1).values[:, -1:]
            sim = torch.where(sim.abs() >= threshold, sim, torch.zeros_like(sim))
        self.similarity, self.matrix = sim, matrix
        self.user_bias = torch.as_tensor(user_bias, dtype=torch.float32)
        self.item_bias = torch.as_tensor(item_bias, dtype=torch.float32)

    @torch.no_grad()
    def grow(self, num_users: int, num_items: int) -> None:
        """Pad the similarity and rating buffers with zeros for new users and items."""
        du, di = max(0, num_users - self.num_users), max(0, num_items - self.num_items)
        self.similarity = torch.nn.functional.pad(self.similarity, (0, di, 0, di))
        self.matrix = torch.nn.functional.pad(self.matrix, (0, di, 0, du))
        self.user_bias = torch.nn.functional.pad(self.user_bias, (0, du))
        self.item_bias = torch.nn.functional.pad(self.item_bias, (0, di))
        self.num_users, self.num_items = self.num_users + du, self.num_items + di

    def _scores(self, users: torch.Tensor) -> torch.Tensor:
        history = self.matrix[users]  # [B, I]
        if self.task == "ranking":
            return (history != 0).float() @ self.similarity  # sim is symmetric: [B, I]
        rated = (history != 0).float()
        weighted = history @ self.similarity.T  # sum_j r_uj sim(i, j)
        norm = rated @ self.similarity.abs().T
        neighbour = torch.where(norm > 0, weighted / norm.clamp(min=1e-8), torch.zeros_like(norm))
        return self.user_bias[users, None] + self.item_bias[None, :] + neighbour

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._scores(users).gather(1, items[:, None]).squeeze(1)

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        return self._scores(users)

    def item_embeddings(self) -> torch.Tensor:
        return self.similarity
