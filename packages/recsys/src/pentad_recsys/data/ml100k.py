"""MovieLens 100K in the official archive's layout (``u.data``, ``u.item``, ``u.user``, the u1..u5/ua/ub splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.errors import DataError
from pentad_recsys.data.interactions import RecDataset, SideFeatures
from pentad_recsys.data.movielens import AGE_BUCKETS, age_bucket, grouplens_archive, read_table, require_files
from pentad_recsys.data.readers import read_interactions
from pentad_recsys.registry import DATASETS

#: The official train/test file pairs (``<name>.base``, ``<name>.test``).
ML100K_OFFICIAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


@DATASETS.register(
    "ml-100k",
    description="MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies, side features",
    files=(grouplens_archive("ml-100k", md5="0e33842e24a9c977be4e0107933c0723"),),
)
def load_ml100k(root: str | Path) -> RecDataset:
    """Load ml-100k from the official archive's layout (``u.data``, ``u.item``, ``u.user``, splits).

    Side features: user age bucket, gender and occupation; item genres (19). Titles from ``u.item``
    (latin-1).

    Raises:
        DataError: Missing files or malformed lines (with file and line number).
    """
    root = Path(root)
    require_files(root, ["u.data"], "ml-100k")
    data = read_interactions(root / "u.data", sep="\t", rating_range=(1.0, 5.0))
    data.source = "ml-100k"
    num_users, num_items = data.num_users, data.num_items
    titles = [f"item {data.item_map.raw(i)}" for i in range(num_items)]
    genres = np.zeros((num_items, 19), np.float32)
    genre_names = [f"genre_{g}" for g in range(19)]
    if (root / "u.genre").is_file():
        names = [row[0] for row in read_table(root / "u.genre", "latin-1") if len(row) >= 2]
        if len(names) == 19:
            genre_names = names
    if (root / "u.item").is_file():
        for number, row in enumerate(read_table(root / "u.item", "latin-1"), start=1):
            if len(row) < 24:
                raise DataError(f"{root / 'u.item'}:{number}: expected 24 '|'-separated fields, got {len(row)}.")
            if int(row[0]) in data.item_map:
                index = data.item_map.index(int(row[0]))
                titles[index] = row[1]
                genres[index] = [float(x) for x in row[5:24]]
    user_fields = np.zeros((num_users, 3), np.int64)
    occupations: list[str] = []
    if (root / "u.occupation").is_file():
        occupations = [
            line.strip() for line in (root / "u.occupation").read_text("latin-1").splitlines() if line.strip()
        ]
    if (root / "u.user").is_file():
        for number, row in enumerate(read_table(root / "u.user", "latin-1"), start=1):
            if len(row) < 4 or not row[1].isdigit():
                raise DataError(f"{root / 'u.user'}:{number}: expected id|age|gender|occupation|zip.")
            if int(row[0]) in data.user_map:
                if row[3] not in occupations:
                    occupations.append(row[3])
                user_fields[data.user_map.index(int(row[0]))] = (
                    age_bucket(int(row[1])),
                    1 if row[2] == "M" else 2,
                    occupations.index(row[3]) + 1,
                )
    data.features = SideFeatures(
        user_fields,
        [len(AGE_BUCKETS) + 1, 3, len(occupations) + 1],
        ["age", "gender", "occupation"],
        genres,
        genre_names,
    )
    data.item_titles = titles
    splits = {
        s: (root / f"{s}.base", root / f"{s}.test")
        for s in ML100K_OFFICIAL_SPLITS
        if (root / f"{s}.base").is_file() and (root / f"{s}.test").is_file()
    }
    return RecDataset("ml-100k", data, splits, root)
