"""Negative sampling: items a user has not interacted with."""

from __future__ import annotations

import numpy as np

from pentad_recsys.data.interactions import Interactions


class NegativeSampler:
    """Uniform sampler of items outside each user's known interactions.

    Membership is tested by binary search in the sorted keys ``user * num_items + item``, so a
    batch of any size is sampled with a few vectorised passes (collisions are redrawn).

    Args:
        known: Interactions whose (user, item) pairs are positives.
        num_items: Number of items to draw from (may exceed ``known.num_items`` after updates).
        seed: Random seed.
    """

    def __init__(self, known: Interactions, num_items: int | None = None, seed: int = 0) -> None:
        self.num_items = int(num_items or known.num_items)
        self.keys = np.unique(known.users * self.num_items + known.items)
        self.rng = np.random.default_rng(seed)

    def is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask of pairs that are positives, same shape as the inputs."""
        keys = users.astype(np.int64) * self.num_items + items
        position = np.searchsorted(self.keys, keys)
        position = np.minimum(position, len(self.keys) - 1)
        return self.keys[position] == keys

    def sample(self, users: np.ndarray, per_user: int = 1, max_rounds: int = 100) -> np.ndarray:
        """Draw ``per_user`` negatives for each entry of ``users``.

        Args:
            users: ``[B]`` internal user ids.
            per_user: Negatives per entry.
            max_rounds: Redraw rounds for collisions (a user who rated nearly every item keeps a
                positive after that many rounds, which is harmless for training).

        Returns:
            ``[B, per_user]`` int64 item ids.
        """
        users = np.repeat(np.asarray(users, np.int64)[:, None], per_user, axis=1)
        items = self.rng.integers(0, self.num_items, users.shape)
        for _ in range(max_rounds):
            bad = self.is_known(users, items)
            if not bad.any():
                break
            items[bad] = self.rng.integers(0, self.num_items, int(bad.sum()))
        return items
