"""Readers shared by the MovieLens datasets (ml-100k, ml-1m, ml-latest-small): folder checks,
``|``/``::`` tables, the age buckets of the user features.

Reference: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and
Context. ACM TiiS 5(4). Released by GroupLens for research use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.data import RemoteFile
from pentad_core.errors import missing_file

#: Age buckets of ml-1m's users.dat, reused for ml-100k's exact ages.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)


def grouplens_archive(name: str, *, md5: str | None = None, sha256: str | None = None) -> RemoteFile:
    """The official GroupLens zip of ``name``, unpacked into the dataset folder by `data download`."""
    return RemoteFile(
        f"https://files.grouplens.org/datasets/movielens/{name}.zip",
        f"{name}.zip",
        md5=md5,
        sha256=sha256,
        extract=True,
    )


def age_bucket(age: int) -> int:
    """Index (1-based; 0 = unknown) of the ml-1m age bucket holding ``age``."""
    return int(np.searchsorted(AGE_BUCKETS, age, side="right"))


def flatten_archive(root: Path, name: str) -> None:
    """The archives unpack into ``<root>/<name>/``; move the files up so ``root`` holds them."""
    inner = root / name
    if inner.is_dir():
        for path in inner.iterdir():
            target = root / path.name
            if not target.exists():
                path.rename(target)


def require_files(root: Path, names: list[str], dataset: str) -> None:
    """Check that ``root`` holds ``names`` (after moving an unpacked archive's files up).

    Raises:
        DataError: Naming the missing folder or file and how to get it.
    """
    if not root.is_dir():
        raise missing_file(root, f"{dataset} folder", f"Run `data download {dataset}` or point --data-dir at it.")
    flatten_archive(root, dataset)
    for name in names:
        if not (root / name).is_file():
            raise missing_file(root / name, f"{dataset} file", "The folder should hold the official archive's files.")


def read_table(path: Path, encoding: str, sep: str = "|") -> list[list[str]]:
    """Non-empty lines of ``path`` split on ``sep``."""
    rows = []
    with path.open(encoding=encoding) as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line:
                rows.append(line.split(sep))
    return rows
