"""NeuMF (He et al., WWW 2017): generalised MF and an MLP over separate embeddings, fused."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.models.base import RecModel, item_table, user_table
from pentad_recsys.models.layers import mlp
from pentad_recsys.registry import MODELS


@MODELS.register(
    "neumf",
    description="NeuMF: GMF + MLP (He et al. 2017)",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class NeuMF(RecModel):
    """``y = h^T [p_u * q_i ; MLP([p'_u ; q'_i])]``.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: GMF embedding size (the MLP embeddings are ``hidden[0] / 2`` each).
        hidden: MLP layer sizes; the first is the concatenated input size.
        dropout: Dropout in the MLP.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 32,
        hidden: Sequence[int] = (64, 32, 16),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items)
        half = hidden[0] // 2
        self.gmf_user = user_table(num_users, dim)
        self.gmf_item = item_table(num_items, dim)
        self.mlp_user = user_table(num_users, half)
        self.mlp_item = item_table(num_items, half)
        self.mlp = mlp([2 * half, *hidden[1:]], dropout)
        self.head = nn.Linear(dim + hidden[-1], 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        gmf = self.gmf_user(users) * self.gmf_item(items)
        deep = self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=-1))
        return self.head(torch.cat([gmf, deep], dim=-1)).squeeze(-1)

    def item_embeddings(self) -> torch.Tensor:
        return torch.cat([self.gmf_item.weight, self.mlp_item.weight], dim=1)

    def user_embeddings(self) -> torch.Tensor:
        return torch.cat([self.gmf_user.weight, self.mlp_user.weight], dim=1)
