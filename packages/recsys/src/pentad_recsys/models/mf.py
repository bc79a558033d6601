"""Biased matrix factorisation (Koren, Bell & Volinsky 2009); BPR-trained for ranking."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pentad_recsys.data.interactions import Interactions
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
        bias_decay: The biases' share of ``weight_decay`` (1: the factors' L2; 0: unregularised biases).
        baseline_init: Start the biases of a rating model at the regularised baseline estimates
            (Koren 2010, eq. 2-3: item then user mean residuals shrunk by 25 and 10 pseudo-ratings)
            instead of zero, so that training starts from the baseline predictor.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        init_std: float = 0.1,
        bias_decay: float = 1.0,
        baseline_init: bool = False,
    ) -> None:
        super().__init__(num_users, num_items)
        self.user_factors = user_table(num_users, dim, init_std)
        self.item_factors = item_table(num_items, dim, init_std)
        self.user_bias = user_table(num_users, 1, 0.0)
        self.item_bias = item_table(num_items, 1, 0.0)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        for table in (self.user_bias, self.item_bias):
            table._pentad_decay = bias_decay  # type: ignore[attr-defined]
        self.baseline_init = baseline_init

    @torch.no_grad()
    def init_biases(self, train: Interactions, mean: float) -> None:
        """Set the biases to the baseline estimates on ``train`` (rating task, ``baseline_init`` only)."""
        if not self.baseline_init:
            return
        residual = train.ratings.astype(np.float64) - mean
        items = np.bincount(train.items, minlength=self.num_items)[: self.num_items]
        item_bias = np.bincount(train.items, residual, minlength=self.num_items)[: self.num_items] / (25.0 + items)
        residual = residual - item_bias[train.items]
        users = np.bincount(train.users, minlength=self.num_users)[: self.num_users]
        user_bias = np.bincount(train.users, residual, minlength=self.num_users)[: self.num_users] / (10.0 + users)
        self.item_bias.weight[:, 0] = torch.as_tensor(item_bias, dtype=self.item_bias.weight.dtype)
        self.user_bias.weight[:, 0] = torch.as_tensor(user_bias, dtype=self.user_bias.weight.dtype)

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
