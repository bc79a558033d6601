"""LightGCN (He et al., SIGIR 2020): linear propagation of id embeddings on the user-item graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pentad_recsys.data.interactions import Interactions
from pentad_recsys.models.base import FrozenDot, RecModel, item_table, user_table
from pentad_recsys.registry import MODELS


@MODELS.register(
    "lightgcn",
    description="LightGCN: linear graph propagation of id embeddings (He et al. 2020)",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class LightGCN(RecModel):
    """Final embedding = mean over ``layers + 1`` propagation steps of ``D^-1/2 A D^-1/2``.

    The graph (edges of the training interactions) is stored in buffers that are saved with the
    weights; :meth:`fit_statistics` builds it. Scores are ``e_u . e_i + b_u + b_i`` (the biases
    matter for ratings only).

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Embedding size.
        layers: Propagation steps.
    """

    _dynamic_buffers = ("edge_src", "edge_dst", "edge_weight")

    def __init__(self, num_users: int, num_items: int, dim: int = 64, layers: int = 2) -> None:
        super().__init__(num_users, num_items)
        self.layers = layers
        self.user_embedding = user_table(num_users, dim, 0.1)
        self.item_embedding = item_table(num_items, dim, 0.1)
        self.user_bias = user_table(num_users, 1, 0.0)
        self.item_bias = item_table(num_items, 1, 0.0)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("edge_src", torch.zeros(0, dtype=torch.long))
        self.register_buffer("edge_dst", torch.zeros(0, dtype=torch.long))
        self.register_buffer("edge_weight", torch.zeros(0))

    def fit_statistics(self, train: Interactions) -> None:
        pairs = np.unique(train.users * self.num_items + train.items)
        users, items = pairs // self.num_items, pairs % self.num_items
        items_node = items + self.num_users
        src = np.concatenate([users, items_node])
        dst = np.concatenate([items_node, users])
        degree = np.bincount(src, minlength=self.num_users + self.num_items).astype(np.float64)
        weight = 1.0 / np.sqrt(degree[src] * degree[dst])
        self.edge_src = torch.as_tensor(src, dtype=torch.long)
        self.edge_dst = torch.as_tensor(dst, dtype=torch.long)
        self.edge_weight = torch.as_tensor(weight, dtype=torch.float32)

    @torch.no_grad()
    def grow(self, num_users: int, num_items: int) -> None:
        """Grow the tables and shift the item node ids of the stored graph past the new users."""
        extra_users = max(0, num_users - self.num_users)
        old_users = self.num_users
        self.edge_src = torch.where(self.edge_src >= old_users, self.edge_src + extra_users, self.edge_src)
        self.edge_dst = torch.where(self.edge_dst >= old_users, self.edge_dst + extra_users, self.edge_dst)
        super().grow(num_users, num_items)

    def _adjacency(self) -> torch.Tensor:
        """The normalised adjacency as a sparse COO matrix, cached until the graph changes."""
        key = (self.edge_src.data_ptr(), self.edge_src.numel(), self.num_users + self.num_items)
        if getattr(self, "_adjacency_key", None) != key:
            n = self.num_users + self.num_items
            indices = torch.stack([self.edge_dst, self.edge_src])
            self._adjacency_cache = torch.sparse_coo_tensor(
                indices, self.edge_weight, (n, n), check_invariants=False
            ).coalesce()
            self._adjacency_key = key
        return self._adjacency_cache

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user ``[U, D]`` and item ``[I, D]`` embeddings."""
        current = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        adjacency = self._adjacency()
        total = current
        for _ in range(self.layers):
            current = torch.sparse.mm(adjacency, current)
            total = total + current
        final = total / (self.layers + 1)
        return final[: self.num_users], final[self.num_users :]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        user_final, item_final = self.propagate()
        dot = (user_final[users] * item_final[items]).sum(dim=-1)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """``[B] -> [B, num_items]``."""
        user_final, item_final = self.propagate()
        return user_final[users] @ item_final.T + self.user_bias(users) + self.item_bias.weight.T

    @torch.no_grad()
    def serving_module(self) -> nn.Module:
        """Propagated embeddings frozen into a dot-product module (no graph ops at serving time)."""
        users, items = self.propagate()
        return FrozenDot(users, items, self.user_bias.weight, self.item_bias.weight)

    def item_embeddings(self) -> torch.Tensor:
        return self.propagate()[1]

    def user_embeddings(self) -> torch.Tensor:
        return self.propagate()[0]
