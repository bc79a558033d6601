"""DeepFM (Guo et al., IJCAI 2017): an FM and an MLP sharing the field embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.models.layers import FieldModel, bi_interaction, mlp
from pentad_recsys.registry import MODELS


@MODELS.register(
    "deepfm",
    description="DeepFM: FM + MLP over shared field embeddings (Guo et al. 2017), with side features",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class DeepFM(FieldModel):
    """``y = FM(fields) + MLP(concat(fields))``.

    Args:
        hidden: Hidden sizes of the deep part.
        dropout: Dropout in the deep part.
        (others): see :class:`~pentad_recsys.models.layers.FieldModel`.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        user_cardinalities: Sequence[int] = (),
        num_item_tags: int = 0,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(num_users, num_items, dim, user_cardinalities, num_item_tags)
        self.deep = mlp([self.num_fields * dim, *hidden], dropout)
        self.head = nn.Linear(([self.num_fields * dim, *hidden])[-1], 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        embeddings, linear = self.fields(users, items)
        fm = linear + bi_interaction(embeddings).sum(dim=-1)
        return fm + self.head(self.deep(embeddings.flatten(1))).squeeze(-1)
