"""Sequence-aware recommenders: score items from each user's time-ordered training history.

The leave-one-out protocol holds out each user's *latest* event, so the order of the earlier
events carries signal that id-based models (MF, NeuMF, LightGCN) ignore. A sequential model keeps
the last ``max_len`` training items of every user, in time order (ties by row order, the rule of the
``temporal``/``loo`` splits), in the ``history`` buffer that :meth:`SequentialRecModel.fit_statistics`
fills from the training interactions only, so a held-out event never enters a history. The buffer
is saved with the weights; ``update`` rebuilds it from the old plus new interactions.

A user's score for item ``i`` is ``h_u . e_i``: ``h_u`` is the encoder's output at the last
position of the user's history, ``e_i`` the item's embedding (shared by the input and output
sides, as in SASRec). Training does not use ``(user, item)`` pairs: every position of a user's
history predicts the next item (:meth:`SequentialRecModel.sequence_loss`), a batch being a set of
users (see :func:`pentad_recsys.training.sequence_batches`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.errors import ConfigError
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.models.base import FrozenDot, RecModel, item_table

PAD = -1  # history slot without an item (histories are left-padded: the latest item is last)


def time_ordered_histories(train: Interactions, num_users: int, max_len: int) -> torch.Tensor:
    """Each user's last ``max_len`` items in time order, left-padded with :data:`PAD`.

    Args:
        train: Interactions with internal ids; ties in time are broken by row order.
        num_users: Rows of the result.
        max_len: Columns of the result.

    Returns:
        ``[num_users, max_len]`` int64.
    """
    order = np.lexsort((np.arange(len(train)), train.timestamps, train.users))
    users, items = train.users[order], train.items[order]
    history = np.full((num_users, max_len), PAD, dtype=np.int64)
    if len(users):
        starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
        counts = np.diff(np.r_[starts, len(users)])
        from_end = np.repeat(counts, counts) - (np.arange(len(users)) - np.repeat(starts, counts))
        keep = from_end <= max_len
        history[users[keep], max_len - from_end[keep]] = items[keep]
    return torch.as_tensor(history)


class SequentialRecModel(RecModel):
    """Base of the sequence models: history buffer, scoring and next-item losses.

    Subclasses implement :meth:`encode`: ``[B, L]`` item ids (``PAD`` where empty) -> ``[B, L, D]``
    states, position ``t`` depending only on positions ``<= t``.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        dim: Embedding size.
        max_len: Items of history kept per user (older ones are dropped).
    """

    sequential: ClassVar[bool] = True

    def __init__(self, num_users: int, num_items: int, dim: int, max_len: int) -> None:
        super().__init__(num_users, num_items)
        if max_len < 2:
            raise ConfigError(f"max_len must be at least 2, got {max_len}.")
        self.dim, self.max_len = dim, max_len
        self.item_embedding = item_table(num_items, dim, 1.0 / math.sqrt(dim))
        self.register_buffer("history", torch.full((num_users, max_len), PAD, dtype=torch.long))

    # ----------------------------------------------------------------------------- data
    def fit_statistics(self, train: Interactions) -> None:
        """Fill ``history`` from ``train`` (each user's latest ``max_len`` items, in time order)."""
        self.history = time_ordered_histories(train, self.num_users, self.max_len)

    @torch.no_grad()
    def grow(self, num_users: int, num_items: int) -> None:
        """Grow the item table; new users get an empty history."""
        extra = num_users - self.history.shape[0]
        if extra > 0:
            pad = torch.full((extra, self.max_len), PAD, dtype=torch.long)
            self.history = torch.cat([self.history, pad])
        super().grow(num_users, num_items)

    def embed(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids -> ``[B, L, D]`` item embeddings, zero at ``PAD`` slots."""
        vectors = self.item_embedding(sequences.clamp(min=0))
        return vectors * (sequences >= 0).unsqueeze(-1).to(vectors.dtype)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # ----------------------------------------------------------------------------- scoring
    def user_states(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` users -> ``[B, D]``: the encoder's state after the user's latest training item."""
        return self.encode(self.history[users])[:, -1]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B], [B] -> [B]`` scores ``h_u . e_i``."""
        return (self.user_states(users) * self.item_embedding(items)).sum(dim=-1)

    def score_all(self, users: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """``[B] -> [B, num_items]``."""
        rows = [self.user_states(users[s : s + chunk]) for s in range(0, len(users), chunk)]
        states = torch.cat(rows) if rows else torch.zeros(0, self.dim)
        return states @ self.item_embedding.weight.T

    @torch.no_grad()
    def serving_module(self) -> nn.Module:
        """Every user's state precomputed: a dot-product module (no sequence ops at serving time)."""
        was_training = self.training
        self.eval()
        states = self.user_embeddings()
        self.train(was_training)
        zeros_u, zeros_i = torch.zeros(self.num_users), torch.zeros(self.num_items)
        return FrozenDot(states, self.item_embedding.weight, zeros_u, zeros_i)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    def user_embeddings(self) -> torch.Tensor:
        users = torch.arange(self.num_users)
        return torch.cat([self.user_states(users[s : s + 512]) for s in range(0, self.num_users, 512)])

    # ----------------------------------------------------------------------------- training
    def training_positions(self, users: torch.Tensor) -> int:
        """Next-item predictions one epoch of :meth:`sequence_loss` makes for ``users``."""
        history = self.history[users]
        return int(((history[:, 1:] >= 0) & (history[:, :-1] >= 0)).sum())

    def sequence_loss(self, users: torch.Tensor, loss: str = "ce", negatives: int = 1) -> torch.Tensor:
        """Next-item loss over every position of the users' histories.

        The input is the history shifted right by one (position ``t`` has seen items ``< t``), the
        target is the item at ``t``; positions without an input or a target are skipped.

        Args:
            users: ``[B]`` distinct users.
            loss: ``"ce"`` (softmax over all items), ``"bce"`` (the target against ``negatives``
                uniformly sampled items, SASRec's loss) or ``"bpr"`` (pairwise, same negatives).
            negatives: Sampled negatives per position for ``bce``/``bpr``.

        Returns:
            Scalar mean loss (zero, with a graph, when no position is valid).
        """
        targets = self.history[users]
        inputs = torch.cat([torch.full_like(targets[:, :1], PAD), targets[:, :-1]], dim=1)
        valid = (inputs >= 0) & (targets >= 0)
        states = self.encode(inputs)[valid]  # [N, D]
        positives = targets[valid]
        if len(positives) == 0:
            return states.sum() * 0.0 + self.item_embedding.weight.sum() * 0.0
        if loss == "ce":
            return F.cross_entropy(states @ self.item_embedding.weight.T, positives)
        if loss not in ("bce", "bpr"):
            raise ConfigError(f"ranking loss {loss!r} is not ce, bce or bpr.")
        sampled = torch.randint(0, self.num_items, (len(positives), max(1, negatives)))
        positive = (states * self.item_embedding(positives)).sum(dim=-1)
        negative = (states.unsqueeze(1) * self.item_embedding(sampled)).sum(dim=-1)
        if loss == "bpr":
            return -F.logsigmoid(positive[:, None] - negative).mean()
        return (
            F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive))
            + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative)) * negative.shape[1]
        )
