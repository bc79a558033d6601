"""MovieLens loaders: ml-100k (official layout and splits), ml-1m (``::`` files), ml-latest-small (CSV).

Reference: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and
Context. ACM TiiS 5(4). Released by GroupLens for research use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pentad_core.errors import DataError, missing_file
from pentad_recsys.data.interactions import Interactions, SideFeatures
from pentad_recsys.data.readers import Columns, read_interactions

#: Age buckets of ml-1m's users.dat, reused for ml-100k's exact ages.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
ML100K_OFFICIAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


@dataclass(frozen=True)
class Archive:
    """An official GroupLens archive (download URL and checksum)."""

    url: str
    filename: str
    md5: str | None
    folder: str
    sha256: str | None = None


ARCHIVES = {
    "ml-100k": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
        "ml-100k",
    ),
    "ml-1m": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
        "ml-1m",
    ),
    "ml-latest-small": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "ml-latest-small.zip",
        None,
        "ml-latest-small",
        # The 2018 edition (100,836 ratings, 9,742 movies); GroupLens may republish this archive.
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    ),
}


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


def age_bucket(age: int) -> int:
    """Index (1-based; 0 = unknown) of the ml-1m age bucket holding ``age``."""
    return int(np.searchsorted(AGE_BUCKETS, age, side="right"))


def _require(root: Path, names: list[str], dataset: str) -> None:
    if not root.is_dir():
        raise missing_file(
            root, f"{dataset} folder", f"Run `data download --dataset {dataset}` or point --data-dir at it."
        )
    for name in names:
        if not (root / name).is_file():
            raise missing_file(root / name, f"{dataset} file", "The folder should hold the official archive's files.")


def _read_pipe_table(path: Path, encoding: str, sep: str = "|") -> list[list[str]]:
    rows = []
    with path.open(encoding=encoding) as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line:
                rows.append(line.split(sep))
    return rows


def load_ml100k(root: str | Path) -> RecDataset:
    """Load ml-100k from the official archive's layout (``u.data``, ``u.item``, ``u.user``, splits).

    Side features: user age bucket, gender and occupation; item genres (19). Titles from ``u.item``
    (latin-1).

    Raises:
        DataError: Missing files or malformed lines (with file and line number).
    """
    root = Path(root)
    _require(root, ["u.data"], "ml-100k")
    data = read_interactions(root / "u.data", sep="\t", rating_range=(1.0, 5.0))
    data.source = "ml-100k"
    num_users, num_items = data.num_users, data.num_items
    titles = [f"item {data.item_map.raw(i)}" for i in range(num_items)]
    genres = np.zeros((num_items, 19), np.float32)
    genre_names = [f"genre_{g}" for g in range(19)]
    if (root / "u.genre").is_file():
        names = [row[0] for row in _read_pipe_table(root / "u.genre", "latin-1") if len(row) >= 2]
        if len(names) == 19:
            genre_names = names
    if (root / "u.item").is_file():
        for number, row in enumerate(_read_pipe_table(root / "u.item", "latin-1"), start=1):
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
        for number, row in enumerate(_read_pipe_table(root / "u.user", "latin-1"), start=1):
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


def load_ml1m(root: str | Path) -> RecDataset:
    """Load ml-1m (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated, latin-1)."""
    root = Path(root)
    _require(root, ["ratings.dat"], "ml-1m")
    data = read_interactions(root / "ratings.dat", sep="::", encoding="latin-1", rating_range=(1.0, 5.0))
    data.source = "ml-1m"
    titles = [f"item {data.item_map.raw(i)}" for i in range(data.num_items)]
    genre_names: list[str] = []
    genre_rows: dict[int, list[str]] = {}
    if (root / "movies.dat").is_file():
        for number, row in enumerate(_read_pipe_table(root / "movies.dat", "latin-1", "::"), start=1):
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
        for number, row in enumerate(_read_pipe_table(root / "users.dat", "latin-1", "::"), start=1):
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


def load_ml_latest_small(root: str | Path) -> RecDataset:
    """Load ml-latest-small (``ratings.csv`` with a header; ratings 0.5-5.0; ``movies.csv`` titles/genres)."""
    root = Path(root)
    _require(root, ["ratings.csv"], "ml-latest-small")
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
