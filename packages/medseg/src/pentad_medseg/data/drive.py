"""DRIVE retinal vessels (Staal et al. 2004): 20 training + 20 test fundus images with FOV masks.

DRIVE has no public download without registration, so it lists no official files: put them in
``$PENTAD_DATA/drive`` (or pass ``--data-dir``) in the published layout
``training|test/{images,1st_manual,mask}``.
"""

from __future__ import annotations

from pathlib import Path

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_medseg.data.base import SegImage, SegmentationData
from pentad_medseg.data.readers import check_same_size, read_image, read_label
from pentad_medseg.registry import DATASETS

#: Published DRIVE results (AUC, F1 inside the FOV) and the plain-PyTorch probe measured in this
#: project, which the ``benchmark`` verb sets beside its own numbers.
DRIVE_ANCHORS = (
    {"method": "U-Net (R2U-Net paper)", "auc": 0.9755, "f1": 0.8142, "source": "published"},
    {"method": "orobix retina-unet", "auc": 0.9790, "f1": 0.8161, "source": "published"},
    {"method": "R2U-Net", "auc": 0.9784, "f1": 0.8171, "source": "published"},
    {"method": "SA-UNet", "auc": 0.9864, "f1": 0.8263, "source": "published"},
    {"method": "plain PyTorch U-Net probe, 15 min 2 CPU cores", "auc": 0.9750, "f1": 0.8149, "source": "anchor"},
)


def _drive_split(root: Path, split: str) -> list[SegImage]:
    folder = root / split
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise missing_file(
            images_dir,
            "DRIVE image folder",
            "Put DRIVE in the layout training|test/{images,1st_manual,mask} or pass --data-dir.",
        )
    paths = sorted(images_dir.glob("*.tif"))
    if not paths:
        raise DataError(f"no .tif images in {images_dir}.", "Check --data-dir points at the DRIVE folder.")
    items = []
    for path in paths:
        number = path.name.split("_")[0]
        manual = sorted((folder / "1st_manual").glob(f"{number}_manual1.*"))
        fov_files = sorted((folder / "mask").glob(f"{number}_*mask.*"))
        if not manual:
            raise missing_file(folder / "1st_manual" / f"{number}_manual1.gif", "DRIVE manual annotation")
        if not fov_files:
            raise missing_file(folder / "mask" / f"{number}_{split}_mask.gif", "DRIVE field-of-view mask")
        image = read_image(path)
        mask = read_label(manual[0])
        fov = read_label(fov_files[0]).astype(bool)
        check_same_size(image, mask, path, manual[0], "annotation")
        check_same_size(image, fov, path, fov_files[0], "FOV mask")
        items.append(SegImage(f"{number}_{split}", image, mask, fov, path))
    return items


@DATASETS.register("drive")
def drive(root: str | Path, classes: int = 2, val_images: int = 2, holdout_val: bool = False) -> SegmentationData:
    """DRIVE retinal vessels: 20 training + 20 test fundus images with FOV masks (Staal et al. 2004).

    Args:
        root: Folder holding ``training/`` and ``test/``.
        classes: Must be 2: DRIVE's annotations are binary (vessel / background).
        val_images: Training images also used for validation (threshold and checkpoint selection).
        holdout_val: Remove the validation images from training (otherwise all 20 train, as in the
            published protocol, and validation only picks the threshold/checkpoint).
    """
    if classes != 2:
        raise ConfigError(f"DRIVE is binary (vessel / background); --classes must be 2, got {classes}.")
    root = Path(root)
    if not root.is_dir():
        raise missing_file(root, "DRIVE folder", "Pass --data-dir or set PENTAD_DATA to the folder holding drive/.")
    train = _drive_split(root, "training")
    test = _drive_split(root, "test")
    val = train[-val_images:] if val_images > 0 else []
    if holdout_val and val_images > 0:
        train = train[:-val_images]
    return SegmentationData(train, val, test, classes=2, in_channels=3, name="drive")
