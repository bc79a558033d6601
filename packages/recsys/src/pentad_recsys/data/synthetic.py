"""Synthetic ratings generated offline from latent factors (used by ``demo`` and fast tests)."""

from __future__ import annotations

import numpy as np

from pentad_recsys.data.interactions import IdMap, Interactions, RecDataset, SideFeatures
from pentad_recsys.registry import DATASETS


@DATASETS.register("synthetic", description="generated offline from latent factors", generated=True)
def make_synthetic(
    num_users: int = 300,
    num_items: int = 400,
    interactions_per_user: int = 30,
    rank: int = 6,
    noise: float = 0.35,
    seed: int = 0,
) -> RecDataset:
    """Generate a MovieLens-like dataset from a low-rank model.

    Users pick items with probability rising with item popularity and user-item affinity, so the
    implicit signal (who rated what) and the explicit one (the rating) both follow the factors.
    Ratings are ``clip(round(3.5 + b_u + b_i + u.v + noise), 1, 5)``. Side features are derived
    from the factors (so they carry signal): three user fields (age bucket, gender, occupation)
    and six item tags.

    Args:
        num_users: Number of users (raw ids ``1..num_users``).
        num_items: Number of items (raw ids ``1..num_items``).
        interactions_per_user: Mean events per user (at least 5 each).
        rank: Dimension of the latent factors.
        noise: Standard deviation of the rating noise.
        seed: Random seed; the same seed gives the same data.

    Returns:
        A :class:`RecDataset` named ``synthetic`` with titles ``"Synthetic item N"``.
    """
    rng = np.random.default_rng(seed)
    user_factors = rng.normal(0, 1, (num_users, rank)) / np.sqrt(rank)
    item_factors = rng.normal(0, 1, (num_items, rank)) / np.sqrt(rank)
    user_bias = rng.normal(0, 0.3, num_users)
    item_bias = rng.normal(0, 0.4, num_items)
    popularity = rng.normal(0, 1.0, num_items) + 2.0 * item_bias
    counts = np.clip(rng.poisson(interactions_per_user, num_users), 5, num_items // 2)
    users, items = [], []
    affinity = user_factors @ item_factors.T * 3.0 + popularity[None, :]
    for u in range(num_users):
        logits = affinity[u]
        p = np.exp(logits - logits.max())
        chosen = rng.choice(num_items, size=counts[u], replace=False, p=p / p.sum())
        users.append(np.full(counts[u], u))
        items.append(chosen)
    users_arr = np.concatenate(users)
    items_arr = np.concatenate(items)
    raw = 3.5 + user_bias[users_arr] + item_bias[items_arr]
    raw += 1.5 * np.sum(user_factors[users_arr] * item_factors[items_arr], axis=1) * np.sqrt(rank)
    raw += rng.normal(0, noise, len(raw))
    ratings = np.clip(np.rint(raw), 1, 5).astype(np.float32)
    timestamps = 1_000_000_000 + np.sort(rng.integers(0, 10_000_000, len(raw)))
    order = rng.permutation(len(raw))  # interleave users like a real log
    users_arr, items_arr, ratings = users_arr[order], items_arr[order], ratings[order]
    timestamps = np.sort(timestamps)
    age = (
        np.clip(np.digitize(user_factors[:, 0], np.quantile(user_factors[:, 0], [0.15, 0.3, 0.5, 0.7, 0.85])), 0, 6) + 1
    )
    gender = (user_factors[:, 1] > 0).astype(np.int64) + 1
    occupation = np.argmax(user_factors[:, : min(rank, 4)], axis=1) + 1
    tags = (item_factors[:, : min(rank, 6)] > 0.15).astype(np.float32)
    features = SideFeatures(
        np.stack([age, gender, occupation], axis=1).astype(np.int64),
        [8, 3, 5],
        ["age", "gender", "occupation"],
        tags,
        [f"tag_{t}" for t in range(tags.shape[1])],
    )
    data = Interactions(
        users_arr,
        items_arr,
        ratings,
        timestamps,
        IdMap(list(range(1, num_users + 1))),
        IdMap(list(range(1, num_items + 1))),
        rating_range=(1.0, 5.0),
        features=features,
        item_titles=[f"Synthetic item {i}" for i in range(1, num_items + 1)],
        source="synthetic",
    )
    return RecDataset("synthetic", data, {}, None)
