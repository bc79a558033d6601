"""Your own images: ``images/`` + ``masks/`` (+ ``fov/``) paired by file stem, or ``train|val|test/`` sub-folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_medseg.data.base import SegImage, SegmentationData, common_channels, ratio_split
from pentad_medseg.data.readers import IMAGE_SUFFIXES, check_same_size, read_image, read_label
from pentad_medseg.registry import DATASETS


def _pair_folder(folder: Path, classes: int) -> list[SegImage]:
    images_dir, masks_dir, fov_dir = folder / "images", folder / "masks", folder / "fov"
    if not images_dir.is_dir():
        raise missing_file(images_dir, "image folder", "A folder dataset holds images/ and masks/ (optional fov/).")
    if not masks_dir.is_dir():
        raise missing_file(masks_dir, "mask folder", "A folder dataset holds images/ and masks/ (optional fov/).")

    def by_stem(directory: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(directory.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    images, masks = by_stem(images_dir), by_stem(masks_dir)
    fovs = by_stem(fov_dir) if fov_dir.is_dir() else {}
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}.")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(
            f"image {images[missing[0]]} has no mask in {masks_dir} (masks pair with images by file stem; "
            f"{len(missing)} image(s) unpaired)."
        )
    items = []
    for stem, path in images.items():
        image = read_image(path)
        mask = read_label(masks[stem], classes)
        check_same_size(image, mask, path, masks[stem], "mask")
        if fov_dir.is_dir():
            if stem not in fovs:
                raise missing_file(
                    fov_dir / f"{stem}.png", "FOV mask", "Every image needs a FOV mask when fov/ exists."
                )
            fov = read_label(fovs[stem]).astype(bool)
            check_same_size(image, fov, path, fovs[stem], "FOV mask")
        else:
            fov = np.ones(mask.shape, dtype=bool)
        items.append(SegImage(stem, image, mask, fov, path))
    return items


@DATASETS.register("folder")
def folder(
    root: str | Path,
    classes: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> SegmentationData:
    """Your own images: ``images/`` + ``masks/`` (+ ``fov/``) paired by stem, or ``train|val|test/`` sub-folders.

    Args:
        root: The folder.
        classes: Label values including background (2: binary 0/1 or 0/255 masks).
        val_fraction: Share of images for validation when there are no sub-folders.
        test_fraction: Share of images for testing when there are no sub-folders.
        split_seed: Seed of the random split.
    """
    root = Path(root)
    if not root.is_dir():
        raise missing_file(root, "dataset folder", "Pass --data-dir DIR holding images/ and masks/.")
    if classes < 2:
        raise ConfigError(f"--classes must be at least 2 (background + foreground), got {classes}.")
    if (root / "train").is_dir():
        train = _pair_folder(root / "train", classes)
        val = _pair_folder(root / "val", classes) if (root / "val").is_dir() else []
        test = _pair_folder(root / "test", classes) if (root / "test").is_dir() else []
    else:
        train, val, test = ratio_split(_pair_folder(root, classes), val_fraction, test_fraction, split_seed)
    channels = common_channels(train + val + test, root)
    return SegmentationData(train, val, test, classes=classes, in_channels=channels, name="folder")


def write_folder(data: SegmentationData, root: str | Path) -> Path:
    """Write ``data`` in the ``folder`` layout: ``train|val|test/{images,masks,fov}/<name>.png`` (8-bit).

    Images are expected in ``[0, 1]``; masks are written 0/255 for binary data, as labels otherwise;
    an empty split is left out. Reading the folder back gives the same splits.
    """
    from PIL import Image

    root = Path(root)
    for split in ("train", "val", "test"):
        for item in data.split(split):
            for sub in ("images", "masks", "fov"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            pixels = np.round(np.clip(item.image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(
                root / split / "images" / f"{item.name}.png"
            )
            mask = item.mask * (255 if data.classes == 2 else 1)
            Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{item.name}.png")
            Image.fromarray(item.fov.astype(np.uint8) * 255).save(root / split / "fov" / f"{item.name}.png")
    return root
