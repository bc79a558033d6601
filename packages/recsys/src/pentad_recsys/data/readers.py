"""Line-by-line readers for delimited interaction files, with file:line error messages."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pentad_core.errors import DataError, missing_file
from pentad_recsys.data.interactions import IdMap, Interactions, RawId, build_interactions


@dataclass(frozen=True)
class Columns:
    """Where the fields are in each row: 0-based column positions (or header names).

    Attributes:
        user: Column of the user id.
        item: Column of the item id.
        rating: Column of the rating, or ``None`` for implicit events (every row counts as 1).
        time: Column of the timestamp, or ``None`` (line order is used).
    """

    user: int | str = 0
    item: int | str = 1
    rating: int | str | None = 2
    time: int | str | None = 3


def _raw_id(text: str) -> RawId:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _resolve(columns: Columns, header: list[str] | None, path: Path) -> tuple[int, int, int | None, int | None]:
    def one(value: int | str | None, option: str) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if header is None:
            raise DataError(f"{path}: column {value!r} given to {option} needs a header row; pass a position.")
        names = [h.strip() for h in header]
        if value not in names:
            raise DataError(f"{path}: {option} {value!r} is not a column of the header ({', '.join(names)}).")
        return names.index(value)

    return (
        one(columns.user, "--user-col"),
        one(columns.item, "--item-col"),
        one(columns.rating, "--rating-col"),
        one(columns.time, "--time-col"),
    )


def read_interactions(
    path: str | Path,
    *,
    sep: str = "\t",
    columns: Columns = Columns(),
    header: bool = False,
    encoding: str = "utf-8",
    rating_range: tuple[float, float] | None = (1.0, 5.0),
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
) -> Interactions:
    """Read a delimited interactions file into :class:`Interactions`.

    Args:
        path: The file.
        sep: Field separator; multi-character separators such as ``"::"`` are allowed.
        columns: Column positions or header names.
        header: Whether the first line is a header.
        encoding: Text encoding.
        rating_range: Valid ``(low, high)`` ratings; ``None`` accepts any finite value.
        user_map: Existing user map (e.g. from the full file when reading an official split);
            a user not in it is an error.
        item_map: Existing item map, likewise.

    Raises:
        DataError: Missing file, malformed line (with its number), non-finite or out-of-range
            rating, unknown id against a given map, or no rows at all.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "interactions file", "Check --data-dir (or $PENTAD_DATA) and the file name.")
    users: list[RawId] = []
    items: list[RawId] = []
    ratings: list[float] = []
    times: list[int] = []
    use_csv = sep == "," or sep == ";"
    implicit = columns.rating is None
    with path.open(encoding=encoding, newline="") as handle:
        lines = csv.reader(handle, delimiter=sep) if use_csv else (line.rstrip("\r\n").split(sep) for line in handle)
        head = None
        if header:
            head = next(lines, None)
            if head is None:
                raise DataError(f"{path} is empty; it should start with a header row.")
        cu, ci, cr, ct = _resolve(columns, head, path)
        need = max(c for c in (cu, ci, cr, ct) if c is not None) + 1
        first = 2 if header else 1
        for number, fields in enumerate(lines, start=first):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) < need:
                raise DataError(
                    f"{path}:{number}: expected at least {need} fields separated by {sep!r}, "
                    f"got {len(fields)}: {sep.join(fields)[:80]!r}."
                )
            try:
                rating = 1.0 if implicit else float(fields[cr])
                stamp = int(float(fields[ct])) if ct is not None else number
            except ValueError:
                raise DataError(
                    f"{path}:{number}: rating or timestamp is not a number: {sep.join(fields)[:80]!r}."
                ) from None
            if not math.isfinite(rating):
                raise DataError(f"{path}:{number}: rating {fields[cr]!r} is not a finite number.")
            if rating_range is not None and not implicit and not rating_range[0] <= rating <= rating_range[1]:
                raise DataError(
                    f"{path}:{number}: rating {rating:g} is outside the valid range "
                    f"{rating_range[0]:g}-{rating_range[1]:g}; fix the line or pass the right rating range."
                )
            user, item = fields[cu].strip(), fields[ci].strip()
            if not user or not item:
                raise DataError(f"{path}:{number}: empty user or item id.")
            users.append(_raw_id(user))
            items.append(_raw_id(item))
            ratings.append(rating)
            times.append(stamp)
    try:
        return build_interactions(
            users,
            items,
            np.asarray(ratings, np.float32),
            np.asarray(times, np.int64),
            source=str(path),
            rating_range=None if implicit else rating_range,
            user_map=user_map,
            item_map=item_map,
        )
    except DataError as error:
        if user_map is None and item_map is None:
            raise
        raise DataError(f"{path}: {error.message}") from None
