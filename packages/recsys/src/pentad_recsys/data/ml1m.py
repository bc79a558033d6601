"""MovieLens 1M (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated, latin-1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.errors import DataError
from pentad_recsys.data.interactions import RecDataset, SideFeatures
from pentad_recsys.data.movielens import AGE_BUCKETS, age_bucket, grouplens_archive, read_table, require_files
from pentad_recsys.data.readers import read_interactions
from pentad_recsys.registry import DATASETS


@DATASETS.register(
    "ml-1m",
    description="MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies (:: files)",
    files=(grouplens_archive("ml-1m", md5="c4d9eecfca2ab87c1945afe126590906"),),
)
def load_ml1m(root: str | Path) -> RecDataset:
    """Load ml-1m (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated, latin-1)."""
    root = Path(root)
    require_files(root, ["ratings.dat"], "ml-1m")
    data = read_interactions(root / "ratings.dat", sep="::", encoding="latin-1", rating_range=(1.0, 5.0))
    data.source = "ml-1m"
    titles = [f"item {data.item_map.raw(i)}" for i in range(data.num_items)]
    genre_names: list[str] = []
    genre_rows: dict[int, list[str]] = {}
    if (root / "movies.dat").is_file():
        for number, row in enumerate(read_table(root / "movies.dat", "latin-1", "::"), start=1):
            if len(row) < 3:
                raise DataError(f"{root / 'movies.dat'}:{number}: expected MovieID::Title::Genres.")
            if int(row[0]) in data.item_map:
                index = data.item_map.index(int(row[0]))
                titles[index] = row[1]
                genre_rows[index] = row[2].split("|")
                genre_names.extend(g for g in genre_rows[index] if g not in genre_names)
    genres = np.zeros((data.num_items, len(genre_names)), np.float32)
    for index, names in genre_rows.items():
        genres[index, [genre_names.index(g) for g in names]] = 1.0
    user_fields = np.zeros((data.num_users, 3), np.int64)
    if (root / "users.dat").is_file():
        for number, row in enumerate(read_table(root / "users.dat", "latin-1", "::"), start=1):
            if len(row) < 4 or not row[2].isdigit() or not row[3].isdigit():
                raise DataError(f"{root / 'users.dat'}:{number}: expected UserID::Gender::Age::Occupation::Zip.")
            if int(row[0]) in data.user_map:
                user_fields[data.user_map.index(int(row[0]))] = (
                    age_bucket(int(row[2])),
                    1 if row[1] == "M" else 2,
                    int(row[3]) + 1,
                )
    data.features = SideFeatures(
        user_fields, [len(AGE_BUCKETS) + 1, 3, 22], ["age", "gender", "occupation"], genres, genre_names
    )
    data.item_titles = titles
    return RecDataset("ml-1m", data, {}, root)
