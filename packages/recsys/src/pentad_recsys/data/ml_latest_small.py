"""MovieLens latest small (``ratings.csv`` with a header, ratings 0.5-5; ``movies.csv`` titles and genres)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pentad_core.errors import DataError
from pentad_recsys.data.interactions import RecDataset, SideFeatures
from pentad_recsys.data.movielens import grouplens_archive, require_files
from pentad_recsys.data.readers import Columns, read_interactions
from pentad_recsys.registry import DATASETS


@DATASETS.register(
    "ml-latest-small",
    description="MovieLens latest small: ~100,000 ratings 0.5-5 (CSV with header)",
    # The 2018 edition (100,836 ratings, 9,742 movies); GroupLens may republish this archive.
    files=(
        grouplens_archive("ml-latest-small", sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
    ),
)
def load_ml_latest_small(root: str | Path) -> RecDataset:
    """Load ml-latest-small (``ratings.csv`` with a header; ratings 0.5-5.0; ``movies.csv`` titles/genres)."""
    root = Path(root)
    require_files(root, ["ratings.csv"], "ml-latest-small")
    data = read_interactions(
        root / "ratings.csv",
        sep=",",
        header=True,
        columns=Columns("userId", "movieId", "rating", "timestamp"),
        rating_range=(0.5, 5.0),
    )
    data.source = "ml-latest-small"
    titles = [f"item {data.item_map.raw(i)}" for i in range(data.num_items)]
    genre_names: list[str] = []
    genre_rows: dict[int, list[str]] = {}
    if (root / "movies.csv").is_file():
        with (root / "movies.csv").open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for number, row in enumerate(reader, start=2):
                if len(row) < 3:
                    raise DataError(f"{root / 'movies.csv'}:{number}: expected movieId,title,genres.")
                if row[0].isdigit() and int(row[0]) in data.item_map:
                    index = data.item_map.index(int(row[0]))
                    titles[index] = row[1]
                    genre_rows[index] = [g for g in row[2].split("|") if g != "(no genres listed)"]
                    genre_names.extend(g for g in genre_rows[index] if g not in genre_names)
    genres = np.zeros((data.num_items, len(genre_names)), np.float32)
    for index, names in genre_rows.items():
        genres[index, [genre_names.index(g) for g in names]] = 1.0
    data.features = SideFeatures(np.zeros((data.num_users, 0), np.int64), [], [], genres, genre_names)
    data.item_titles = titles
    return RecDataset("ml-latest-small", data, {}, root)
