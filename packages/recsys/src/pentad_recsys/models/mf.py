"""Biased matrix factorisation (Koren, Bell & Volinsky 2009); BPR-trained for ranking."""

from __future__ import annotations

import torch
from torch import nn

from pentad_recsys.models.base import RecModel, item_table, user_table
from pentad_recsys.registry import MODELS


@MODELS.register(
    "mf",
    description="biased matrix factorisation (MSE for ratings, BPR/BCE for ranking)",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class MatrixFactorization(RecModel):
    """``score(u, i) = b_u + b_i + p_u . q_i``.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Latent dimension.
        init_std: Standard deviation of the initial factors.
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64, init_std: float = 0.1) -> None:
        super().__init__(num_users, num_items)
        self.user_factors = user_table(num_users, dim, init_std)
        self.item_factors = item_table(num_items, dim, init_std)
        self.user_bias = user_table(num_users, 1, 0.0)
        self.item_bias = item_table(num_items, 1, 0.0)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=-1)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """``[B] -> [B, num_items]``."""
        scores = self.user_factors(users) @ self.item_factors.weight.T
        return scores + self.user_bias(users) + self.item_bias.weight.T

    def item_embeddings(self) -> torch.Tensor:
        return self.item_factors.weight

    def user_embeddings(self) -> torch.Tensor:
        return self.user_factors.weight
