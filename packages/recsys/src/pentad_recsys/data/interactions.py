"""Interaction tables, id maps and side features.

An :class:`Interactions` table holds one row per (user, item) event with *internal* integer ids
(``0..num_users-1``, ``0..num_items-1``); the :class:`IdMap` objects translate raw ids (as found in
the files) to internal ids and back, and travel with a trained model so that raw ids go in and
come out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.errors import DataError

log = logging.getLogger("pentad_recsys")

RawId = int | str


class IdMap:
    """A bijection between raw ids and contiguous internal indices.

    Raw ids are kept in sorted order (numerically when all are integers), so internal index order
    equals raw id order; this makes ranking protocols that enumerate items by raw id reproducible.

    Args:
        raw_ids: The distinct raw ids (ints or strings), in internal-index order.
    """

    def __init__(self, raw_ids: Sequence[RawId]) -> None:
        self.raw_ids: list[RawId] = list(raw_ids)
        self._index = {raw: i for i, raw in enumerate(self.raw_ids)}
        if len(self._index) != len(self.raw_ids):
            raise ValueError("IdMap raw ids must be distinct")

    @classmethod
    def from_values(cls, values: Iterable[RawId]) -> IdMap:
        """Build a map over the distinct ``values``, sorted."""
        distinct = set(values)
        if all(isinstance(v, int | np.integer) for v in distinct):
            return cls(sorted(int(v) for v in distinct))
        return cls(sorted(str(v) for v in distinct))

    def __len__(self) -> int:
        return len(self.raw_ids)

    def __contains__(self, raw: object) -> bool:
        return self._normalise(raw) in self._index

    def _normalise(self, raw: Any) -> Any:
        if self.raw_ids and isinstance(self.raw_ids[0], int):
            if isinstance(raw, np.integer):
                return int(raw)
            if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
                return int(raw)
        elif isinstance(raw, int | np.integer):
            return str(raw)
        return raw

    def index(self, raw: RawId, what: str = "id") -> int:
        """Internal index of one raw id.

        Raises:
            DataError: If the raw id is unknown.
        """
        try:
            return self._index[self._normalise(raw)]
        except KeyError:
            raise DataError(f"unknown {what} {raw!r}: it does not occur in the training data.") from None

    def indices(self, raws: Iterable[RawId], what: str = "id") -> np.ndarray:
        """Internal indices of many raw ids, shape ``[N]``."""
        return np.fromiter((self.index(r, what) for r in raws), dtype=np.int64)

    def raw(self, index: int) -> RawId:
        """Raw id of one internal index."""
        return self.raw_ids[int(index)]

    def extend(self, raws: Iterable[RawId]) -> list[int]:
        """Append unseen raw ids (for incremental updates); returns the indices of the new ones."""
        added = []
        for raw in raws:
            key = self._normalise(raw)
            if key not in self._index:
                self._index[key] = len(self.raw_ids)
                self.raw_ids.append(key)
                added.append(self._index[key])
        return added

    def state(self) -> list[RawId]:
        """Plain list for checkpoints (loads with ``weights_only=True``)."""
        return list(self.raw_ids)


@dataclass
class SideFeatures:
    """Categorical side features of users and items.

    Attributes:
        user_fields: ``[num_users, F]`` int64, one categorical value per field (e.g. age bucket,
            gender, occupation); value 0 means unknown.
        user_cardinalities: Number of values of each user field (including the unknown 0).
        user_field_names: Names of the user fields.
        item_tags: ``[num_items, G]`` float32 multi-hot (e.g. genres).
        item_tag_names: Names of the ``G`` tags.
    """

    user_fields: np.ndarray
    user_cardinalities: list[int]
    user_field_names: list[str]
    item_tags: np.ndarray
    item_tag_names: list[str]

    @classmethod
    def empty(cls, num_users: int, num_items: int) -> SideFeatures:
        """No side features (zero fields, zero tags)."""
        return cls(np.zeros((num_users, 0), np.int64), [], [], np.zeros((num_items, 0), np.float32), [])

    @property
    def num_user_fields(self) -> int:
        return len(self.user_cardinalities)

    @property
    def num_item_tags(self) -> int:
        return int(self.item_tags.shape[1])


@dataclass
class Interactions:
    """One row per (user, item) event, with internal ids.

    Attributes:
        users: ``[N]`` int64 internal user ids.
        items: ``[N]`` int64 internal item ids.
        ratings: ``[N]`` float32 ratings (1.0 for implicit events).
        timestamps: ``[N]`` int64 times (line order when the source has none).
        user_map: Raw <-> internal user ids.
        item_map: Raw <-> internal item ids.
        rating_range: ``(low, high)`` of valid ratings, or ``None`` for implicit data.
        features: Side features, or empty ones.
        item_titles: Title per internal item id, or ``None``.
        source: Where the data came from, for messages.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    user_map: IdMap
    item_map: IdMap
    rating_range: tuple[float, float] | None = None
    features: SideFeatures | None = None
    item_titles: list[str] | None = None
    source: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.ratings = np.asarray(self.ratings, dtype=np.float32)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        n = len(self.users)
        if not (len(self.items) == len(self.ratings) == len(self.timestamps) == n):
            raise ValueError("users, items, ratings and timestamps must have the same length")
        if self.features is None:
            self.features = SideFeatures.empty(self.num_users, self.num_items)

    @property
    def num_users(self) -> int:
        return len(self.user_map)

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    @property
    def explicit(self) -> bool:
        """Whether ratings carry values (rather than implicit events)."""
        return self.rating_range is not None

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray, source: str | None = None) -> Interactions:
        """The rows ``rows`` (index array or boolean mask), sharing id maps and features."""
        return Interactions(
            self.users[rows],
            self.items[rows],
            self.ratings[rows],
            self.timestamps[rows],
            self.user_map,
            self.item_map,
            self.rating_range,
            self.features,
            self.item_titles,
            source if source is not None else self.source,
        )

    def user_item_sets(self) -> list[set[int]]:
        """Per internal user, the set of internal items interacted with."""
        sets: list[set[int]] = [set() for _ in range(self.num_users)]
        for u, i in zip(self.users.tolist(), self.items.tolist()):
            sets[u].add(i)
        return sets

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """User -> items adjacency as CSR ``(indptr [U+1], indices [N])``, items sorted per user."""
        order = np.lexsort((self.items, self.users))
        counts = np.bincount(self.users, minlength=self.num_users)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, self.items[order]

    def summary(self) -> str:
        """One line: counts and density."""
        density = len(self) / max(1, self.num_users * self.num_items)
        kind = f"ratings {self.rating_range[0]:g}-{self.rating_range[1]:g}" if self.rating_range else "implicit"
        return (
            f"{self.source}: {len(self):,} interactions, {self.num_users:,} users, {self.num_items:,} items "
            f"({kind}, density {density:.4f})"
        )


def resolve_duplicates(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, source: str
) -> tuple[np.ndarray, int]:
    """Rows to keep when a (user, item) pair occurs more than once.

    Rule: the latest event wins (largest timestamp; on equal timestamps the later line). The
    number of dropped rows is logged as a warning.

    Returns:
        ``(keep, dropped)``: sorted row indices to keep and the number of dropped rows.
    """
    n = len(users)
    line = np.arange(n)
    order = np.lexsort((line, timestamps, items, users))
    u, i = users[order], items[order]
    last_of_pair = np.r_[(u[1:] != u[:-1]) | (i[1:] != i[:-1]), True]
    keep = np.sort(order[last_of_pair])
    dropped = n - len(keep)
    if dropped:
        log.warning(
            "%s: %d duplicate (user, item) rows; kept the latest event of each pair (by timestamp, then line).",
            source,
            dropped,
        )
    return keep, dropped


def build_interactions(
    raw_users: Sequence[RawId],
    raw_items: Sequence[RawId],
    ratings: np.ndarray,
    timestamps: np.ndarray,
    *,
    source: str,
    rating_range: tuple[float, float] | None,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
) -> Interactions:
    """Map raw ids to internal ids, drop duplicate pairs by the stated rule, check emptiness.

    Raises:
        DataError: If there are no rows.
    """
    if len(raw_users) == 0:
        raise DataError(f"{source} holds no interactions; check the file and the column options.")
    user_map = user_map or IdMap.from_values(raw_users)
    item_map = item_map or IdMap.from_values(raw_items)
    users = user_map.indices(raw_users, "user")
    items = item_map.indices(raw_items, "item")
    timestamps = np.asarray(timestamps, dtype=np.int64)
    keep, dropped = resolve_duplicates(users, items, timestamps, source)
    result = Interactions(
        users[keep],
        items[keep],
        np.asarray(ratings, np.float32)[keep],
        timestamps[keep],
        user_map,
        item_map,
        rating_range,
        source=source,
    )
    result.notes["duplicates_dropped"] = dropped
    return result


@dataclass
class RecDataset:
    """A loaded dataset: all interactions plus the files of its official splits (if any).

    Attributes:
        name: Registry name.
        interactions: Every event, with id maps covering all users and items.
        official_splits: Split name -> ``(train_file, test_file)``.
        root: Folder the data came from.
    """

    name: str
    interactions: Interactions
    official_splits: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    root: Path | None = None
