"""Train/test splits: official files, random by ratio, temporal per user, leave-one-out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pentad_core.errors import ConfigError, DataError
from pentad_recsys.data.interactions import Interactions, RecDataset
from pentad_recsys.data.ml100k import ML100K_OFFICIAL_SPLITS
from pentad_recsys.data.readers import read_interactions

SPLITS = ("random", "temporal", "loo", *ML100K_OFFICIAL_SPLITS)


@dataclass
class Split:
    """A train/test pair (and an optional validation part carved from train).

    Attributes:
        name: How it was made, e.g. ``"u1"`` or ``"loo"``.
        train: Training interactions.
        test: Held-out interactions.
        val: Validation interactions or ``None``.
    """

    name: str
    train: Interactions
    test: Interactions
    val: Interactions | None = None


def random_holdout(data: Interactions, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row masks ``(keep, held)`` holding out a random ``ratio`` of all rows."""
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"split ratio must be between 0 and 1, got {ratio}.")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(data), bool)
    held[rng.permutation(len(data))[: round(ratio * len(data))]] = True
    return ~held, held


def temporal_holdout(data: Interactions, n_last: int) -> tuple[np.ndarray, np.ndarray]:
    """Row masks ``(keep, held)`` holding out each user's last ``n_last`` events.

    Events are ordered by timestamp, ties by row (file line) order. Users with ``n_last`` events
    or fewer keep them all in training (they would otherwise have no history).
    """
    if n_last < 1:
        raise ConfigError(f"--n-test must be at least 1, got {n_last}.")
    order = np.lexsort((np.arange(len(data)), data.timestamps, data.users))
    users = data.users[order]
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, counts)
    from_end = np.repeat(counts, counts) - position
    held_sorted = (from_end <= n_last) & (np.repeat(counts, counts) > n_last)
    held = np.zeros(len(data), bool)
    held[order[held_sorted]] = True
    return ~held, held


def read_official_split(dataset: RecDataset, split: str) -> tuple[Interactions, Interactions]:
    """The official ``(train, test)`` pair of ``split`` (e.g. ``"u1"``), with the dataset's id maps.

    Raises:
        DataError: If the dataset has no such split or a split file is empty.
    """
    if split not in dataset.official_splits:
        known = ", ".join(dataset.official_splits) or "none"
        raise DataError(
            f"dataset {dataset.name} has no official split {split!r} (known: {known}); "
            "use --split random, temporal or loo."
        )
    parts = []
    full = dataset.interactions
    for path in dataset.official_splits[split]:
        part = read_interactions(
            path, sep="\t", rating_range=full.rating_range, user_map=full.user_map, item_map=full.item_map
        )
        part.features, part.item_titles, part.source = full.features, full.item_titles, f"{dataset.name}/{path.name}"
        parts.append(part)
    return parts[0], parts[1]


def _check(part: Interactions, what: str, split: str) -> Interactions:
    if len(part) == 0:
        raise DataError(
            f"the {what} part of split {split!r} of {part.source} is empty; "
            "use more data, a different ratio or a smaller --n-test."
        )
    return part


def make_split(
    dataset: RecDataset,
    split: str,
    *,
    ratio: float = 0.2,
    n_test: int = 1,
    val_ratio: float = 0.0,
    seed: int = 0,
) -> Split:
    """Split a dataset.

    Args:
        dataset: The loaded dataset.
        split: ``u1``..``u5``, ``ua``, ``ub`` (official files), ``random``, ``temporal`` or ``loo``.
        ratio: Test fraction for ``random``.
        n_test: Events per user held out by ``temporal``.
        val_ratio: If > 0, a validation part carved from train: a random fraction for ``random``
            and official splits, each user's last event of train for ``temporal``/``loo``.
        seed: Seed of random splits.

    Raises:
        ConfigError: Unknown split name or bad ratio.
        DataError: A part comes out empty.
    """
    data = dataset.interactions
    if split in dataset.official_splits:
        train, test = read_official_split(dataset, split)
    elif split in ML100K_OFFICIAL_SPLITS:
        read_official_split(dataset, split)  # raises the standard message
        raise AssertionError("unreachable")
    elif split == "random":
        keep, held = random_holdout(data, ratio, seed)
        train, test = data.subset(keep), data.subset(held)
    elif split in ("temporal", "loo"):
        keep, held = temporal_holdout(data, 1 if split == "loo" else n_test)
        train, test = data.subset(keep), data.subset(held)
    else:
        raise ConfigError(f"--split {split!r} is not one of {', '.join(SPLITS)}.")
    val = None
    if val_ratio > 0:
        if split in ("temporal", "loo"):
            keep, held = temporal_holdout(train, 1)
        else:
            keep, held = random_holdout(train, val_ratio, seed + 1)
        train, val = train.subset(keep), _check(train.subset(held), "validation", split)
    return Split(split, _check(train, "training", split), _check(test, "test", split), val)
