"""Factorisation machine (Rendle, ICDM 2010) over user, item and side-feature fields."""

from __future__ import annotations

import torch

from pentad_recsys.models.layers import FieldModel, bi_interaction
from pentad_recsys.registry import MODELS


@MODELS.register(
    "fm",
    description="factorisation machine over user, item and side features (Rendle 2010)",
    tasks=("rating", "ranking"),
    inputs="ids",
)
class FactorizationMachine(FieldModel):
    """``y = sum_f w_f + sum_{f<g} <v_f, v_g>`` over the fields of :class:`FieldModel`.

    Args: see :class:`~pentad_recsys.models.layers.FieldModel`.
    """

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]``."""
        embeddings, linear = self.fields(users, items)
        return linear + bi_interaction(embeddings).sum(dim=-1)
