"""The interface every recommender model implements.

A model maps internal ``(user, item)`` index pairs to scores: a rating residual (the trainer adds
the global mean) for the ``rating`` task, or a relevance logit for the ``ranking`` task. Id
translation, the global mean and seen-item filtering live in :class:`pentad_recsys.predictor.Recommender`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from pentad_recsys.data.interactions import Interactions, SideFeatures


def user_table(num: int, dim: int, std: float = 0.01) -> nn.Embedding:
    """An embedding table indexed by user; :meth:`RecModel.grow` resizes it."""
    table = nn.Embedding(num, dim)
    nn.init.normal_(table.weight, 0.0, std)
    table._pentad_axis = "user"  # type: ignore[attr-defined]
    return table


def item_table(num: int, dim: int, std: float = 0.01) -> nn.Embedding:
    """An embedding table indexed by item; :meth:`RecModel.grow` resizes it."""
    table = nn.Embedding(num, dim)
    nn.init.normal_(table.weight, 0.0, std)
    table._pentad_axis = "item"  # type: ignore[attr-defined]
    return table


class RecModel(nn.Module):
    """Base class: ``forward(users [B], items [B]) -> scores [B]``.

    What the CLI and the tests know about a model (tasks, input kind, trainable) is its
    :class:`~pentad_core.registry.ModelInfo`, given where the model registers itself. The class
    attributes below change how the model is trained and served.

    Class attributes:
        full_batch: True when training uses whole-matrix steps (autoencoders).
        absolute_ratings: True when the rating output is the rating itself (no global mean added).
        sequential: True when the model trains on user histories (next-item prediction).
    """

    full_batch: ClassVar[bool] = False
    absolute_ratings: ClassVar[bool] = False
    sequential: ClassVar[bool] = False
    _dynamic_buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # buffers whose size depends on the data (graphs) take the checkpoint's shape
        for name in self._dynamic_buffers:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def score_all(self, users: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """Scores of every item for each user: ``[B] -> [B, num_items]``.

        The default evaluates ``forward`` on all pairs, ``chunk`` pairs at a time; models with a
        cheaper form (a dot product) override it.
        """
        per_step = max(1, chunk // max(1, self.num_items))
        all_items = torch.arange(self.num_items, device=users.device)
        rows = []
        for start in range(0, len(users), per_step):
            block = users[start : start + per_step]
            pair_users = block[:, None].expand(-1, self.num_items).reshape(-1)
            pair_items = all_items.repeat(len(block))
            rows.append(self(pair_users, pair_items).view(len(block), self.num_items))
        return torch.cat(rows) if rows else torch.zeros(0, self.num_items)

    def serving_module(self) -> nn.Module:
        """A module with the same ``forward`` outputs for inference and ONNX export.

        Models whose forward pass recomputes something input-independent (graph propagation,
        whole-matrix reconstruction) return a frozen equivalent; the default is the model itself.
        """
        return self

    def item_embeddings(self) -> torch.Tensor | None:
        """``[num_items, D]`` item vectors for similarity and export, or ``None``."""
        return None

    def user_embeddings(self) -> torch.Tensor | None:
        """``[num_users, D]`` user vectors for export, or ``None``."""
        return None

    def fit_statistics(self, train: Interactions) -> None:
        """Compute data-derived buffers (counts, similarities, graphs) from the training data."""

    def set_side_features(self, features: SideFeatures) -> None:
        """Copy side features into buffers (models that use them override this)."""

    def extra_loss(self) -> torch.Tensor | None:
        """A regularisation term added to the training loss, or ``None``."""
        return None

    @torch.no_grad()
    def grow(self, num_users: int, num_items: int) -> None:
        """Enlarge user/item tables for new ids, keeping the learned rows (incremental updates).

        New rows start like fresh initialisation (small normal); buffers indexed by user or item
        get zero rows.
        """
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                axis = getattr(child, "_pentad_axis", None)
                if not isinstance(child, nn.Embedding) or axis is None:
                    continue
                rows = num_users if axis == "user" else num_items
                if rows <= child.num_embeddings:
                    continue
                bigger = nn.Embedding(rows, child.embedding_dim)
                std = float(child.weight.std()) if child.weight.numel() > 1 else 0.01
                nn.init.normal_(bigger.weight, 0.0, std if np.isfinite(std) and std > 0 else 0.01)
                bigger.weight[: child.num_embeddings] = child.weight
                bigger._pentad_axis = axis  # type: ignore[attr-defined]
                if hasattr(child, "_pentad_decay"):
                    bigger._pentad_decay = child._pentad_decay  # type: ignore[attr-defined]
                setattr(module, name, bigger)
        for name, buffer in list(self.named_buffers(recurse=False)):
            axis = getattr(self, "_buffer_axes", {}).get(name)
            if axis is None:
                continue
            rows = num_users if axis == "user" else num_items
            if rows > buffer.shape[0]:
                pad = torch.zeros((rows - buffer.shape[0], *buffer.shape[1:]), dtype=buffer.dtype)
                setattr(self, name, torch.cat([buffer, pad]))
        self.num_users, self.num_items = max(self.num_users, num_users), max(self.num_items, num_items)


class FrozenTable(nn.Module):
    """Serving form of a model whose scores were precomputed: ``table[users, items]``.

    Args:
        table: ``[num_users, num_items]`` scores.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.detach().clone())

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]


class FrozenDot(nn.Module):
    """Serving form of a dot-product model: ``u_emb[u] . i_emb[i] + u_bias[u] + i_bias[i]``."""

    def __init__(
        self, users: torch.Tensor, items: torch.Tensor, user_bias: torch.Tensor, item_bias: torch.Tensor
    ) -> None:
        super().__init__()
        self.register_buffer("users", users.detach().clone())
        self.register_buffer("items", items.detach().clone())
        self.register_buffer("user_bias", user_bias.detach().reshape(-1).clone())
        self.register_buffer("item_bias", item_bias.detach().reshape(-1).clone())

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.users[users] * self.items[items]).sum(dim=-1)
        return dot + self.user_bias[users] + self.item_bias[items]
