"""Neural factorisation machine (He & Chua, SIGIR 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.models.layers import FieldModel, bi_interaction, mlp
from pentad_recsys.registry import MODELS


@MODELS.register(
    "nfm",
    description="neural factorisation machine (He & Chua 2017), with side features",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class NeuralFM(FieldModel):
    """Bi-interaction pooling ``[B, D]`` -> MLP -> scalar, plus the linear term.

    Args:
        hidden: Hidden sizes of the MLP over the pooled vector.
        dropout: Dropout in the MLP.
        (others): see :class:`~pentad_recsys.models.layers.FieldModel`.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        user_cardinalities: Sequence[int] = (),
        num_item_tags: int = 0,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(num_users, num_items, dim, user_cardinalities, num_item_tags)
        self.norm = nn.BatchNorm1d(dim)
        self.mlp = mlp([dim, *hidden], dropout)
        self.head = nn.Linear(([dim, *hidden])[-1], 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        embeddings, linear = self.fields(users, items)
        pooled = bi_interaction(embeddings)
        if pooled.shape[0] > 1 or not self.training:
            pooled = self.norm(pooled)
        return linear + self.head(self.mlp(pooled)).squeeze(-1)
