"""Multi-gate mixture of experts (Ma et al., KDD 2018) for two tasks: the rating and whether the
user rates the item at all."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pentad_recsys.models.layers import FieldModel, mlp
from pentad_recsys.registry import MODELS


@MODELS.register(
    "mmoe",
    description="multi-gate mixture of experts: rating + rated-at-all heads (Ma et al. 2018)",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class MMoE(FieldModel):
    """Shared experts over the concatenated field embeddings, one softmax gate and tower per task.

    ``forward`` returns the head of ``task`` (rating residual for ``"rating"``, the rated-at-all
    logit for ``"ranking"``); :meth:`forward_tasks` returns both for multi-task training.

    Args:
        task: Head returned by ``forward``.
        num_experts: Number of shared experts.
        expert_hidden: Hidden sizes of each expert.
        tower_hidden: Hidden size of each task tower.
        dropout: Dropout in the experts.
        (others): see :class:`~pentad_recsys.models.layers.FieldModel`.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        user_cardinalities: Sequence[int] = (),
        num_item_tags: int = 0,
        task: str = "rating",
        num_experts: int = 4,
        expert_hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(num_users, num_items, dim, user_cardinalities, num_item_tags)
        self.task = task
        width = self.num_fields * dim
        self.experts = nn.ModuleList(mlp([width, *expert_hidden], dropout) for _ in range(num_experts))
        self.gates = nn.ModuleList(nn.Linear(width, num_experts) for _ in range(2))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(expert_hidden[-1], tower_hidden), nn.ReLU(), nn.Linear(tower_hidden, 1))
            for _ in range(2)
        )

    def forward_tasks(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B], [B] -> (rating residual [B], rated-at-all logit [B])``."""
        embeddings, linear = self.fields(users, items)
        flat = embeddings.flatten(1)
        experts = torch.stack([expert(flat) for expert in self.experts], dim=1)  # [B, E, H]
        outputs = []
        for gate, tower in zip(self.gates, self.towers):
            weights = torch.softmax(gate(flat), dim=-1).unsqueeze(-1)  # [B, E, 1]
            outputs.append(tower((weights * experts).sum(dim=1)).squeeze(-1))
        return outputs[0] + linear, outputs[1] + linear

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]`` head of ``self.task``."""
        rating, logit = self.forward_tasks(users, items)
        return rating if self.task == "rating" else logit
