"""Any delimited interactions file with a column mapping (explicit ratings or implicit events)."""

from __future__ import annotations

from pathlib import Path

from pentad_core.errors import ConfigError
from pentad_recsys.data.movielens import RecDataset
from pentad_recsys.data.readers import Columns, read_interactions


def load_csv(
    path: str | Path,
    *,
    user_col: int | str = 0,
    item_col: int | str = 1,
    rating_col: int | str | None = 2,
    time_col: int | str | None = None,
    sep: str = ",",
    header: bool = True,
    rating_min: float | None = None,
    rating_max: float | None = None,
    encoding: str = "utf-8",
) -> RecDataset:
    """Load a delimited file of interactions.

    Args:
        path: The file (``--data-dir`` may also point at the file itself).
        user_col: Column of user ids (position or header name).
        item_col: Column of item ids.
        rating_col: Column of ratings, or ``None`` for implicit events.
        time_col: Column of timestamps, or ``None`` (line order).
        sep: Field separator (``","``, ``"\\t"``, ``"::"`` ...).
        header: Whether the first line names the columns.
        rating_min: Lowest valid rating; with ``rating_max``, out-of-range lines raise.
        rating_max: Highest valid rating.
        encoding: Text encoding.
    """
    path = Path(path)
    if (rating_min is None) != (rating_max is None):
        raise ConfigError("give both --rating-min and --rating-max, or neither.")
    rating_range = None
    if rating_col is not None:
        rating_range = (
            (float(rating_min), float(rating_max)) if rating_min is not None else (float("-inf"), float("inf"))
        )
    data = read_interactions(
        path,
        sep=sep,
        header=header,
        columns=Columns(user_col, item_col, rating_col, time_col),
        encoding=encoding,
        rating_range=rating_range,
    )
    if rating_col is not None and rating_min is None:
        data.rating_range = (float(data.ratings.min()), float(data.ratings.max()))
    data.source = path.name
    return RecDataset("csv", data, {}, path.parent)
