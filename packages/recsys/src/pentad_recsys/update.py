"""Incremental updates: train on new interactions without retraining from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.errors import ConfigError
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.data.readers import Columns, read_interactions
from pentad_recsys.metrics import evaluate_ranking
from pentad_recsys.recommender import Recommender
from pentad_recsys.training import TrainSettings, evaluate_rating, fit


def _metrics(recommender: Recommender, known: Interactions, held: Interactions) -> dict[str, float]:
    if recommender.task == "rating":
        return evaluate_rating(recommender, held)
    return evaluate_ranking(recommender.score_all, known, held, ks=(10,), protocol="full")


def update_recommender(
    recommender: Recommender,
    path: Path,
    settings: TrainSettings,
    holdout: float = 0.2,
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Grow the model for new users/items in ``path`` and train on the new interactions.

    The new file is read with columns ``user,item,rating[,time]`` and a header (``options`` may
    override ``sep``, ``header``, ``user_col``, ``item_col``, ``rating_col``, ``time_col``). A random
    ``holdout`` fraction of it is kept aside; the report gives its metrics before and after the
    update. Training replays an equal-sized random sample of the old interactions alongside the
    new ones so that the old users are not forgotten.

    Returns:
        ``before/<metric>``, ``after/<metric>``, ``update/new_users``, ``update/new_items``,
        ``update/interactions``.

    Raises:
        ConfigError: For models whose input size is the number of users (glocal-k).
        DataError: Malformed file (with its line number) or ratings out of range.
    """
    options = dict(options or {})
    model = recommender.model
    if model.full_batch:
        raise ConfigError(f"model {recommender.model_name!r} cannot grow incrementally; retrain it with `train`.")
    rating_col = options.get("rating_col", 2 if recommender.task == "rating" else None)
    new = read_interactions(
        path,
        sep=options.get("sep", ","),
        header=bool(options.get("header", True)),
        columns=Columns(options.get("user_col", 0), options.get("item_col", 1), rating_col, options.get("time_col")),
        rating_range=recommender.rating_range if rating_col is not None else None,
    )
    raw_users = [new.user_map.raw(u) for u in new.users]
    raw_items = [new.item_map.raw(i) for i in new.items]
    old_users, old_items = len(recommender.user_map), len(recommender.item_map)
    recommender.user_map.extend(raw_users)
    added_items = recommender.item_map.extend(raw_items)
    num_users, num_items = len(recommender.user_map), len(recommender.item_map)
    model.grow(num_users, num_items)
    recommender.model_kwargs.update(num_users=num_users, num_items=num_items)
    if recommender.item_titles is not None:
        recommender.item_titles += [f"item {recommender.item_map.raw(i)}" for i in added_items]
    users = recommender.user_map.indices(raw_users, "user")
    items = recommender.item_map.indices(raw_items, "item")
    ratings = new.ratings if rating_col is not None else np.ones(len(users), np.float32)

    def table(u, i, r) -> Interactions:
        return Interactions(u, i, r, np.arange(len(u)), recommender.user_map, recommender.item_map,
                            recommender.rating_range, None, recommender.item_titles, str(path))  # fmt: skip

    rng = np.random.default_rng(settings.seed)
    held = np.zeros(len(users), bool)
    held[rng.permutation(len(users))[: int(holdout * len(users))]] = True
    old = table(recommender.seen_users, recommender.seen_items, recommender.seen_ratings)
    replay = rng.choice(len(old), size=min(len(old), int((~held).sum())), replace=False)
    train = table(
        np.concatenate([users[~held], old.users[replay]]),
        np.concatenate([items[~held], old.items[replay]]),
        np.concatenate([ratings[~held], old.ratings[replay]]),
    )
    known = table(np.concatenate([old.users, users[~held]]), np.concatenate([old.items, items[~held]]),
                  np.concatenate([old.ratings, ratings[~held]]))  # fmt: skip
    held_out = table(users[held], items[held], ratings[held])
    recommender.seen_users, recommender.seen_items, recommender.seen_ratings = known.users, known.items, known.ratings
    model.fit_statistics(known)  # graphs, counts and similarities include the new interactions
    report: dict[str, float] = {}
    if len(held_out):
        report.update({f"before/{k}": v for k, v in _metrics(recommender, known, held_out).items()})
    if model.trainable:
        fit(recommender, train, settings)
    if len(held_out):
        report.update({f"after/{k}": v for k, v in _metrics(recommender, known, held_out).items()})
    report.update({
        "update/new_users": float(num_users - old_users),
        "update/new_items": float(num_items - old_items),
        "update/interactions": float(len(users)),
    })  # fmt: skip
    return report
