"""Image folders: the user's own images (and the reader the JPEG copy of CIFAR-10 uses).

Layouts:

* ``<root>/train/<class>/*.png`` + ``<root>/test/<class>/*`` (optionally ``<root>/val/<class>/*``);
* ``<root>/<class>/*``: one folder, split into train and test by ``test_fraction`` (stratified).

Every image is decoded once with Pillow into the in-memory ``uint8`` layout. An image that cannot
be decoded is reported with its path; it is skipped only when ``skip_bad`` is set.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_core.files import atomic_write_with
from pentad_vision.data.base import ImageData, ImageSplit, split_train_val, stratified_split
from pentad_vision.registry import DATASETS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def cache_root() -> Path:
    """Folder for extracted archives and decoded caches: ``$PENTAD_CACHE`` or ``~/.cache/pentad``."""
    return Path(os.environ.get("PENTAD_CACHE") or Path.home() / ".cache" / "pentad")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def decode_image(path: str | Path, image_size: int | None, channels: int) -> np.ndarray:
    """Decode one image file into ``uint8 (C, H, W)``.

    Args:
        path: The file.
        image_size: Resize to a square of this side (bilinear), or keep the size when ``None``.
        channels: 3 for RGB, 1 for greyscale.

    Raises:
        OSError, UnidentifiedImageError, ValueError: If Pillow cannot decode the file.
    """
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        if image_size is not None and image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_all(
    files: list[Path], labels: list[int], image_size: int | None, channels: int, skip_bad: bool, where: Path
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    arrays, kept_labels, kept_paths, bad = [], [], [], []
    for path, label in zip(files, labels):
        try:
            arrays.append(decode_image(path, image_size, channels))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            bad.append(f"{path} ({type(error).__name__})")
            continue
        kept_labels.append(label)
        kept_paths.append(str(path))
    if bad and not skip_bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(
            f"{len(bad)} image(s) under {where} cannot be read: {shown}.",
            "Fix or remove them, or pass --skip-bad to skip them.",
        )
    for entry in bad:
        log.warning("skipping unreadable image %s", entry)
    if not arrays:
        raise DataError(f"no readable images under {where}.")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ConfigError(
            f"images under {where} have different sizes ({len(shapes)} shapes, e.g. {sorted(shapes)[:3]}).",
            "Pass --image-size N (or image_size in the recipe) to resize them to NxN.",
        )
    return np.stack(arrays), np.asarray(kept_labels, dtype=np.int64), kept_paths, bad


def _class_files(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    if not folder.is_dir():
        raise missing_file(folder, "image folder", "Expected <dir>/<split>/<class>/*.jpg or <dir>/<class>/*.jpg.")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"image folder {folder} has no class sub-folders.", "Put images into <dir>/<class>/ folders.")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder} has classes that the training split lacks: {', '.join(unknown[:5])}.")
    files, labels = [], []
    for index, name in enumerate(classes):
        if (folder / name).is_dir():
            images = list_images(folder / name)
            files += images
            labels += [index] * len(images)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder}.")
    return classes, files, labels


def _cache_key(files: list[Path], image_size: int | None, channels: int) -> str:
    digest = hashlib.sha256(f"{image_size}:{channels}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _read_split(
    folder: Path,
    classes: list[str] | None,
    image_size: int | None,
    channels: int,
    skip_bad: bool,
    cache_dir: Path | None,
) -> tuple[ImageSplit, list[str]]:
    classes, files, labels = _class_files(folder, classes)
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"decoded-{_cache_key(files, image_size, channels)}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as cached:
                images, kept = cached["images"], cached["labels"]
                paths = [str(p) for p in cached["paths"]]
                bad = [str(p) for p in cached["bad"]]
            if bad and not skip_bad:
                raise DataError(f"{len(bad)} image(s) under {folder} cannot be read: {'; '.join(bad[:5])}.",
                                "Fix or remove them, or pass --skip-bad to skip them.")  # fmt: skip
            return ImageSplit(torch.from_numpy(images), torch.from_numpy(kept), classes, paths=paths), bad
    images, kept, paths, bad = _decode_all(files, labels, image_size, channels, skip_bad, folder)
    if cache_file is not None:
        arrays = {"images": images, "labels": kept, "paths": np.asarray(paths), "bad": np.asarray(bad, dtype=str)}
        atomic_write_with(cache_file, lambda handle: np.savez(handle, **arrays))
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(kept), classes, paths=paths), bad


@DATASETS.register("imagefolder")
def load_imagefolder(
    root: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | None = None,
    channels: int = 3,
    skip_bad: bool = False,
    cache_dir: str | Path | None = None,
    name: str = "imagefolder",
) -> ImageData:
    """Your own images: <dir>/<split>/<class>/* or <dir>/<class>/* split by ratio.

    Args:
        root: The folder.
        val_fraction: Share of the training images held out for validation (stratified).
        test_fraction: Share held out for testing when there are no split folders.
        seed: Seed of the stratified splits.
        image_size: Resize every image to this square side; required when sizes differ.
        channels: 3 (RGB) or 1 (greyscale).
        skip_bad: Skip unreadable images (listed in the log and ``ImageData.skipped``) instead of failing.
        cache_dir: Keep decoded arrays here (``.npz``) to skip decoding next time.
        name: Dataset name in messages and results.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}.")
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}.")
    root = Path(root)
    if not root.is_dir():
        raise missing_file(root, "image folder", "Pass --data-dir pointing at <dir> with <split>/<class>/ images.")
    cache = Path(cache_dir) if cache_dir is not None else None
    args = (image_size, channels, skip_bad, cache)
    notes: list[str] = []
    if (root / "train").is_dir():
        train, bad = _read_split(root / "train", None, *args)
        test_folder = root / "test" if (root / "test").is_dir() else root / "val"
        if not test_folder.is_dir():
            raise missing_file(root / "test", "test split folder", "Add <dir>/test/<class>/ images.")
        test, bad_test = _read_split(test_folder, train.classes, *args)
        bad += bad_test
        if test_folder.name == "test" and (root / "val").is_dir() and val_fraction > 0:
            val, bad_val = _read_split(root / "val", train.classes, *args)
            data = split_train_val(name, train, test, val_fraction=0.0, seed=seed, skipped=bad + bad_val)
            data.val = val
            data.notes.append(f"validation: {root / 'val'}")
            return data
    else:
        everything, bad = _read_split(root, None, *args)
        train_index, test_index = stratified_split(everything.labels.numpy(), 1.0 - test_fraction, seed)
        train, test = everything.subset(train_index), everything.subset(test_index)
        notes.append(f"test: a stratified {test_fraction:.0%} of the images in {root} (seed {seed})")
    return split_train_val(name, train, test, val_fraction=val_fraction, seed=seed, notes=notes, skipped=bad)
