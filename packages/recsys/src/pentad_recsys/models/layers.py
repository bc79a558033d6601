"""Shared building blocks: field embeddings over ids and side features, MLPs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.data.interactions import SideFeatures
from pentad_recsys.models.base import RecModel, item_table, user_table


def mlp(sizes: Sequence[int], dropout: float = 0.0, last_activation: bool = True) -> nn.Sequential:
    """Linear -> ReLU (-> Dropout) stack through ``sizes``."""
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_activation or index < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class FieldModel(RecModel):
    """Base for feature-based models (FM family, MMoE): one embedding per field.

    Fields: user id, item id, each categorical user field (age, gender, occupation ...), and the
    item tags (multi-hot genres, pooled as the mean of their embeddings). Side features live in
    buffers filled by :meth:`set_side_features` and saved with the weights.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Embedding dimension.
        user_cardinalities: Values per user field (0 = unknown); empty for none.
        num_item_tags: Number of item tags; 0 for none.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        user_cardinalities: Sequence[int] = (),
        num_item_tags: int = 0,
    ) -> None:
        super().__init__(num_users, num_items)
        self.dim = dim
        self.user_cardinalities = list(user_cardinalities)
        self.num_item_tags = num_item_tags
        self.user_embedding = user_table(num_users, dim)
        self.item_embedding = item_table(num_items, dim)
        self.user_linear = user_table(num_users, 1, 0.0)
        self.item_linear = item_table(num_items, 1, 0.0)
        self.field_embeddings = nn.ModuleList(nn.Embedding(c, dim) for c in self.user_cardinalities)
        self.field_linear = nn.ModuleList(nn.Embedding(c, 1) for c in self.user_cardinalities)
        for table in [*self.field_embeddings]:
            nn.init.normal_(table.weight, 0.0, 0.01)
        for table in [self.user_linear, self.item_linear, *self.field_linear]:
            nn.init.zeros_(table.weight)
        self.tag_embedding = nn.Parameter(torch.randn(num_item_tags, dim) * 0.01) if num_item_tags else None
        self.tag_linear = nn.Parameter(torch.zeros(num_item_tags)) if num_item_tags else None
        self.register_buffer("user_fields", torch.zeros(num_users, len(self.user_cardinalities), dtype=torch.long))
        self.register_buffer("item_tags", torch.zeros(num_items, num_item_tags))
        self._buffer_axes = {"user_fields": "user", "item_tags": "item"}

    @property
    def num_fields(self) -> int:
        """Fields per example: user, item, the user fields, and one pooled tag field if any."""
        return 2 + len(self.user_cardinalities) + (1 if self.num_item_tags else 0)

    def set_side_features(self, features: SideFeatures) -> None:
        if features.num_user_fields == len(self.user_cardinalities) and features.num_user_fields:
            self.user_fields = torch.as_tensor(features.user_fields, dtype=torch.long)[: self.num_users].clone()
        if features.num_item_tags == self.num_item_tags and self.num_item_tags:
            self.item_tags = torch.as_tensor(features.item_tags, dtype=torch.float32)[: self.num_items].clone()

    def fields(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Field embeddings ``[B, F, D]`` and the first-order (linear) term ``[B]``."""
        embeddings = [self.user_embedding(users), self.item_embedding(items)]
        linear = self.user_linear(users).squeeze(-1) + self.item_linear(items).squeeze(-1)
        if self.user_cardinalities:
            values = self.user_fields[users]
            for index, (table, weights) in enumerate(zip(self.field_embeddings, self.field_linear)):
                embeddings.append(table(values[:, index]))
                linear = linear + weights(values[:, index]).squeeze(-1)
        if self.num_item_tags:
            tags = self.item_tags[items]
            weights = tags / tags.sum(dim=1, keepdim=True).clamp(min=1.0)
            embeddings.append(weights @ self.tag_embedding)
            linear = linear + weights @ self.tag_linear
        return torch.stack(embeddings, dim=1), linear

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    def user_embeddings(self) -> torch.Tensor:
        return self.user_embedding.weight


def bi_interaction(embeddings: torch.Tensor) -> torch.Tensor:
    """Sum of pairwise element-wise products: ``[B, F, D] -> [B, D]`` (FM's O(FD) identity)."""
    summed = embeddings.sum(dim=1)
    return 0.5 * (summed * summed - (embeddings * embeddings).sum(dim=1))
