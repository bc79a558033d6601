"""Any delimited interactions file with a column mapping (explicit ratings or implicit events)."""

from __future__ import annotations

from pathlib import Path

from pentad_core.errors import ConfigError
from pentad_recsys.data.interactions import RecDataset
from pentad_recsys.data.readers import Columns, read_interactions
from pentad_recsys.registry import DATASETS


def column(value: int | str | None) -> int | str | None:
    """A column as given on the command line: ``"3"`` -> position 3, ``"none"``/``""`` -> no column."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


@DATASETS.register("csv", description="any delimited interactions file with a column mapping")
def load_csv(
    root: str | Path,
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

    Column options may be given as the command line spells them (``"2"``, ``"none"``).

    Args:
        root: The interactions file (``--data-dir`` points at it).
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
    path = Path(root)
    user_col, item_col = column(user_col), column(item_col)
    rating_col, time_col = column(rating_col), column(time_col)
    if user_col is None or item_col is None:
        raise ConfigError("the csv dataset needs user_col and item_col.")
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
