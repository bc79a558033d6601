"""CIFAR-10 re-encoded as JPEG: ``cifar10-jpeg.tar.gz`` (or its extracted folder), read as an image folder.

The archive is extracted once into ``$PENTAD_CACHE`` (or ``~/.cache/pentad``) ``/cifar10-jpeg/extracted``,
and the decoded images are cached as ``.npz`` next to it.
"""

from __future__ import annotations

from pathlib import Path

from pentad_core.data import cached_extract
from pentad_core.errors import missing_file
from pentad_vision.data.base import ImageData
from pentad_vision.data.imagefolder import cache_root, load_imagefolder
from pentad_vision.registry import DATASETS

CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract a tar archive into ``destination`` once, with core's safe extraction.

    Returns:
        ``destination``; a ``.complete`` marker, written last, records a finished extraction.
    """
    return cached_extract(archive, destination, marker=".complete")


@DATASETS.register("cifar10-jpeg")
def load_cifar10_jpeg(
    root: str | Path, *, val_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False
) -> ImageData:
    """CIFAR-10 re-encoded as JPEG (cifar10-jpeg.tar.gz, extracted to the cache), read as an image folder."""
    root = Path(root)
    if (root / "train").is_dir():
        folder = root
    elif (root / "cifar10-jpeg" / "train").is_dir():
        folder = root / "cifar10-jpeg"
    else:
        archive = root / CIFAR10_JPEG_ARCHIVE if root.is_dir() else root
        if not archive.is_file():
            raise missing_file(root / CIFAR10_JPEG_ARCHIVE, "CIFAR-10 JPEG archive", "Pass --data-dir holding it.")
        extracted = extract_archive(archive, cache_root() / "cifar10-jpeg" / "extracted")
        folder = extracted / "cifar10-jpeg" if (extracted / "cifar10-jpeg").is_dir() else extracted
    data = load_imagefolder(
        folder,
        val_fraction=val_fraction,
        seed=seed,
        image_size=32,
        channels=3,
        skip_bad=skip_bad,
        cache_dir=cache_root() / "cifar10-jpeg" / "decoded",
        name="cifar10-jpeg",
    )
    data.notes.append("cifar10-jpeg: CIFAR-10 re-encoded as JPEG (lossy); close to, not identical with, CIFAR-10")
    return data
