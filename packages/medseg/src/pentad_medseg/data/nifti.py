"""NIfTI volumes with label volumes, cut into 2D slices along the last axis for slice-wise training."""

from __future__ import annotations

from pathlib import Path

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_medseg.data.base import SegImage, SegmentationData, ratio_split
from pentad_medseg.data.readers import nifti_files, nifti_slices
from pentad_medseg.registry import DATASETS


@DATASETS.register("nifti")
def nifti(
    root: str | Path,
    classes: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    skip_empty_slices: bool = False,
    clip: list[float] | None = None,
    zscore: bool = False,
) -> SegmentationData:
    """NIfTI volumes ``images/*.nii[.gz]`` with label volumes ``labels/*.nii[.gz]``, trained slice-wise in 2D.

    Volumes (not slices) are split into train/val/test so that no patient is in two splits.

    Args:
        root: The folder.
        classes: Label values including background.
        val_fraction: Share of volumes for validation.
        test_fraction: Share of volumes for testing.
        split_seed: Seed of the random split.
        skip_empty_slices: Leave training slices without foreground out.
        clip: ``[low, high]`` intensity window applied to every volume (self-configured for CT-like data).
        zscore: Z-score every volume with its own statistics (self-configured for other volumes).
    """
    if clip is not None and (len(clip) != 2 or float(clip[0]) >= float(clip[1])):
        raise ConfigError(f"dataset_options.clip must be [low, high] with low < high, got {clip}.")
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise missing_file(images_dir, "NIfTI image folder", "A nifti dataset holds images/ and labels/.")
    if not labels_dir.is_dir():
        raise missing_file(labels_dir, "NIfTI label folder", "A nifti dataset holds images/ and labels/.")
    images, labels = nifti_files(images_dir), nifti_files(labels_dir)
    if not images:
        raise DataError(f"no .nii or .nii.gz volumes in {images_dir}.")
    unpaired = sorted(set(images) - set(labels))
    if unpaired:
        raise DataError(f"volume {images[unpaired[0]]} has no label volume in {labels_dir} (paired by file name).")
    stems = sorted(images)
    train_s, val_s, test_s = ratio_split(stems, val_fraction, test_fraction, split_seed)

    def load(selected: list[str], skip: bool) -> list[SegImage]:
        return [
            s for stem in selected for s in nifti_slices(images[stem], labels[stem], classes, skip, clip, zscore)
        ]  # fmt: skip

    return SegmentationData(
        load(train_s, skip_empty_slices), load(val_s, False), load(test_s, False), classes, 1, name="nifti"
    )
