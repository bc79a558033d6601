"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU over each user's time-ordered history."""

from __future__ import annotations

import torch
from torch import nn

from pentad_recsys.models.sequential import SequentialRecModel
from pentad_recsys.registry import MODELS


@MODELS.register(
    "gru4rec",
    description="GRU4Rec: a GRU over the time-ordered history (Hidasi et al. 2016)",
    tasks=("ranking",),
    inputs="sequence",
)
class GRU4Rec(SequentialRecModel):
    """Session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016), here over
    each user's whole training history (as RecBole's GRU4Rec).

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Embedding and hidden size.
        max_len: Items of history per user.
        layers: GRU layers.
        dropout: Dropout on the input embeddings.
    """

    def __init__(
        self, num_users: int, num_items: int, dim: int = 64, max_len: int = 50, layers: int = 1, dropout: float = 0.2
    ) -> None:
        super().__init__(num_users, num_items, dim, max_len)
        self.input_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True)
        self.project = nn.Linear(dim, dim)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids -> ``[B, L, D]`` states (left padding feeds zero vectors first)."""
        states, _ = self.gru(self.input_dropout(self.embed(sequences)))
        return self.project(states)
