"""Attentional factorisation machine (Xiao et al., IJCAI 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.models.layers import FieldModel
from pentad_recsys.registry import MODELS


@MODELS.register(
    "afm",
    description="attentional factorisation machine (Xiao et al. 2017), with side features",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class AttentionalFM(FieldModel):
    """Pairwise products ``[B, P, D]`` weighted by an attention MLP, projected to a scalar.

    Args:
        attention_dim: Hidden size of the attention network.
        dropout: Dropout on the pairwise products.
        (others): see :class:`~pentad_recsys.models.layers.FieldModel`.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        user_cardinalities: Sequence[int] = (),
        num_item_tags: int = 0,
        attention_dim: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(num_users, num_items, dim, user_cardinalities, num_item_tags)
        rows, cols = torch.triu_indices(self.num_fields, self.num_fields, offset=1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.attention = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.ReLU(), nn.Linear(attention_dim, 1, bias=False)
        )
        self.projection = nn.Linear(dim, 1, bias=False)
        nn.init.constant_(self.projection.weight, 1.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        embeddings, linear = self.fields(users, items)
        pairs = embeddings[:, self.pair_rows] * embeddings[:, self.pair_cols]  # [B, P, D]
        weights = torch.softmax(self.attention(pairs), dim=1)  # [B, P, 1]
        pooled = self.dropout((weights * pairs).sum(dim=1))
        return linear + self.projection(pooled).squeeze(-1)
