"""Datasets: DRIVE, the user's own image folders, NIfTI volumes and generated synthetic images.

Every dataset loads into a :class:`SegmentationData`: lists of :class:`SegImage` per split, each image
held in memory as ``(C, H, W)`` float32 in ``[0, 1]`` (NIfTI: raw intensities) with an integer label
mask ``(H, W)`` and a boolean field-of-view (FOV) mask ``(H, W)``. Losses and metrics only use pixels
inside the FOV; datasets without one use an all-true FOV.

Every problem with the files raises :class:`~pentad_core.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_medseg.registry import DATASETS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class SegImage:
    """One 2D image with its ground truth.

    Attributes:
        name: Identifier used in CSV rows and output file names.
        image: ``(C, H, W)`` float32.
        mask: ``(H, W)`` int64 labels in ``0..classes-1``, or ``None`` when unknown (prediction only).
        fov: ``(H, W)`` bool, pixels that count.
        source: The image file.
        meta: Extra information, e.g. ``{"volume": stem, "slice": z, "affine": 4x4, "shape": (X, Y, Z)}``
            for NIfTI slices.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    fov: np.ndarray
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.shape[1], self.image.shape[2]


@dataclass
class SegmentationData:
    """The splits of a dataset.

    Attributes:
        train: Training images.
        val: Validation images (threshold selection, checkpoint selection).
        test: Test images (reported numbers).
        classes: Number of label values including background (2 for binary).
        in_channels: Channels of every image.
        name: Dataset name.
    """

    train: list[SegImage]
    val: list[SegImage]
    test: list[SegImage]
    classes: int
    in_channels: int
    name: str = ""

    def split(self, name: str) -> list[SegImage]:
        """The images of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; use train, val or test.")
        return getattr(self, name)

    def summary(self) -> str:
        """One line: image counts, channels, classes and image size."""
        first = (self.train or self.val or self.test)[0]
        return (
            f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test images, "
            f"{self.in_channels} channel(s), {self.classes} classes, first image {first.shape[0]}x{first.shape[1]}"
        )


# -- reading files ---------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """Read a grey or colour image as ``(C, H, W)`` float32 in ``[0, 1]``.

    Raises:
        DataError: If the file is missing or cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise missing_file(path, "image file")
    try:
        with Image.open(path) as opened:
            if opened.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LA"):
                opened = opened.convert("RGB")
            array = np.asarray(opened)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}.", "Replace or remove the file.") from None
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    scale = 65535.0 if array.max(initial=0) > 255 else 255.0
    return np.ascontiguousarray(array / scale, dtype=np.float32)


def read_label(path: Path, classes: int = 2) -> np.ndarray:
    """Read a mask image as ``(H, W)`` int64 labels.

    Binary masks (``classes == 2``) may hold 0/1 or 0/255; JPEG masks are thresholded at 128
    because compression blurs their edges. Multi-class masks hold the labels ``0..classes-1``.

    Raises:
        DataError: If the file is missing, unreadable, or holds unexpected values.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise missing_file(path, "mask file")
    try:
        with Image.open(path) as opened:
            if opened.mode not in ("L", "P", "1", "I", "I;16"):
                opened = opened.convert("L")
            array = np.asarray(opened).astype(np.int64)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read mask {path}: {error}.", "Replace or remove the file.") from None
    return labels_from_values(array, path, classes, lossy=path.suffix.lower() in (".jpg", ".jpeg"))


def labels_from_values(array: np.ndarray, path: Path | str, classes: int, lossy: bool = False) -> np.ndarray:
    """Map raw mask values to labels, checking them.

    Args:
        array: Raw integer values.
        path: File name for messages.
        classes: Number of classes including background.
        lossy: Threshold binary masks at half their maximum (JPEG).

    Raises:
        DataError: If values are outside what ``classes`` allows.
    """
    if classes == 2:
        if lossy:
            return (array >= 128).astype(np.int64) if array.max(initial=0) > 1 else (array > 0).astype(np.int64)
        values = set(np.unique(array).tolist())
        if values <= {0, 1}:
            return array.astype(np.int64)
        if values <= {0, 255}:
            return (array == 255).astype(np.int64)
        shown = sorted(values)[:6]
        raise DataError(
            f"mask {path} holds values {shown}{'...' if len(values) > 6 else ''}, "
            "expected a binary mask of 0/1 or 0/255.",
            "Use --classes N for label masks with N classes.",
        )
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high >= classes:
        raise DataError(
            f"mask {path} holds labels {low}..{high}, expected 0..{classes - 1} for {classes} classes.",
            "Set --classes to the number of labels (background included).",
        )
    return array.astype(np.int64)


def _check_same_size(image: np.ndarray, other: np.ndarray, image_path: Path, other_path: Path, what: str) -> None:
    if image.shape[1:] != other.shape:
        raise DataError(
            f"{what} {other_path} is {other.shape[0]}x{other.shape[1]} but image {image_path} is "
            f"{image.shape[1]}x{image.shape[2]}; they must have the same size."
        )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _channels(images: list[SegImage], where: Path) -> int:
    counts = {item.image.shape[0] for item in images}
    if len(counts) > 1:
        raise DataError(f"images under {where} mix {sorted(counts)} channels; convert them all to grey or all to RGB.")
    return counts.pop()


# -- DRIVE -----------------------------------------------------------------------------------------


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
        _check_same_size(image, mask, path, manual[0], "annotation")
        _check_same_size(image, fov, path, fov_files[0], "FOV mask")
        items.append(SegImage(f"{number}_{split}", image, mask, fov, path))
    return items


@DATASETS.register("drive")
def drive(root: str | Path, val_images: int = 2, holdout_val: bool = False, **_: Any) -> SegmentationData:
    """DRIVE retinal vessels: 20 training + 20 test fundus images with FOV masks (Staal et al. 2004).

    Args:
        root: Folder holding ``training/`` and ``test/``.
        val_images: Training images also used for validation (threshold and checkpoint selection).
        holdout_val: Remove the validation images from training (otherwise all 20 train, as in the
            published protocol, and validation only picks the threshold/checkpoint).
    """
    root = Path(root)
    if not root.is_dir():
        raise missing_file(root, "DRIVE folder", "Pass --data-dir or set PENTAD_DATA to the folder holding drive/.")
    train = _drive_split(root, "training")
    test = _drive_split(root, "test")
    val = train[-val_images:] if val_images > 0 else []
    if holdout_val and val_images > 0:
        train = train[:-val_images]
    return SegmentationData(train, val, test, classes=2, in_channels=3, name="drive")


# -- folder ----------------------------------------------------------------------------------------


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
        _check_same_size(image, mask, path, masks[stem], "mask")
        if fov_dir.is_dir():
            if stem not in fovs:
                raise missing_file(
                    fov_dir / f"{stem}.png", "FOV mask", "Every image needs a FOV mask when fov/ exists."
                )
            fov = read_label(fovs[stem]).astype(bool)
            _check_same_size(image, fov, path, fovs[stem], "FOV mask")
        else:
            fov = np.ones(mask.shape, dtype=bool)
        items.append(SegImage(stem, image, mask, fov, path))
    return items


def _ratio_split(items: list, val_fraction: float, test_fraction: float, seed: int) -> tuple[list, list, list]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) and sum below 1."
        )
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = round(len(items) * val_fraction)
    n_test = round(len(items) * test_fraction)
    if len(items) - n_val - n_test < 1:
        raise DataError(f"only {len(items)} image(s): too few to split into train/val/test; add images.")
    val = [items[i] for i in order[:n_val]]
    test = [items[i] for i in order[n_val : n_val + n_test]]
    train = [items[i] for i in order[n_val + n_test :]]
    return train, val, test


@DATASETS.register("folder")
def folder(
    root: str | Path,
    classes: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    **_: Any,
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
        train, val, test = _ratio_split(_pair_folder(root, classes), val_fraction, test_fraction, split_seed)
    channels = _channels(train + val + test, root)
    return SegmentationData(train, val, test, classes=classes, in_channels=channels, name="folder")


# -- NIfTI -----------------------------------------------------------------------------------------


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D volume ``(X, Y, Z)`` as float32 with its 4x4 affine.

    Raises:
        DataError: If the file is missing, unreadable or not 3D.
    """
    import nibabel as nib

    if not path.is_file():
        raise missing_file(path, "NIfTI volume")
    try:
        volume = nib.load(str(path))
        data = np.asarray(volume.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise DataError(f"cannot read NIfTI file {path}: {error}.", "Replace or remove the file.") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"NIfTI file {path} has shape {data.shape}; expected a 3D volume.")
    if not np.isfinite(data).all():
        raise DataError(f"NIfTI file {path} contains NaN or infinite values; clean the volume first.")
    return data, np.asarray(volume.affine, dtype=np.float64)


def _nifti_files(directory: Path) -> dict[str, Path]:
    return {_stem(p): p for p in sorted(directory.iterdir()) if p.name.lower().endswith(NIFTI_SUFFIXES)}


def nifti_slices(image_path: Path, label_path: Path | None, classes: int, skip_empty: bool = False) -> list[SegImage]:
    """Cut a volume (and its label volume) into 2D slices along the last axis."""
    volume, affine = read_nifti(image_path)
    labels = None
    if label_path is not None:
        raw, _ = read_nifti(label_path)
        if raw.shape != volume.shape:
            raise DataError(f"label volume {label_path} has shape {raw.shape} but {image_path} has {volume.shape}.")
        if not np.all(raw == np.round(raw)):
            raise DataError(f"label volume {label_path} holds non-integer values; labels must be 0..{classes - 1}.")
        labels = labels_from_values(raw.astype(np.int64), label_path, classes)
    stem = _stem(image_path)
    items = []
    for z in range(volume.shape[2]):
        mask = labels[:, :, z] if labels is not None else None
        if skip_empty and mask is not None and not mask.any():
            continue
        meta = {"volume": stem, "slice": z, "affine": affine, "volume_shape": volume.shape}
        image = np.ascontiguousarray(volume[None, :, :, z])
        items.append(SegImage(f"{stem}_z{z:03d}", image, mask, np.ones(volume.shape[:2], bool), image_path, meta))
    return items


@DATASETS.register("nifti")
def nifti(
    root: str | Path,
    classes: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    skip_empty_slices: bool = False,
    **_: Any,
) -> SegmentationData:
    """NIfTI volumes ``images/*.nii[.gz]`` with label volumes ``labels/*.nii[.gz]``, trained slice-wise in 2D.

    Volumes (not slices) are split into train/val/test so that no patient is in two splits.
    """
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise missing_file(images_dir, "NIfTI image folder", "A nifti dataset holds images/ and labels/.")
    if not labels_dir.is_dir():
        raise missing_file(labels_dir, "NIfTI label folder", "A nifti dataset holds images/ and labels/.")
    images, labels = _nifti_files(images_dir), _nifti_files(labels_dir)
    if not images:
        raise DataError(f"no .nii or .nii.gz volumes in {images_dir}.")
    unpaired = sorted(set(images) - set(labels))
    if unpaired:
        raise DataError(f"volume {images[unpaired[0]]} has no label volume in {labels_dir} (paired by file name).")
    stems = sorted(images)
    train_s, val_s, test_s = _ratio_split(stems, val_fraction, test_fraction, split_seed)

    def load(selected: list[str], skip: bool) -> list[SegImage]:
        return [s for stem in selected for s in nifti_slices(images[stem], labels[stem], classes, skip)]

    return SegmentationData(
        load(train_s, skip_empty_slices), load(val_s, False), load(test_s, False), classes, 1, name="nifti"
    )


# -- synthetic -------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape), sigma)
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def synthetic_image(
    rng: np.random.Generator, size: int = 128, kind: str = "vessels", channels: int = 3, classes: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one textured image with ground truth.

    ``vessels``: thin, branching, curved dark lines inside a circular FOV, as in fundus images.
    ``cells``: bright elliptic blobs; with ``classes == 3`` small blobs are class 1 and large ones class 2.

    Returns:
        ``(image (C, H, W) float32 in [0, 1], mask (H, W) int64, fov (H, W) bool)``.
    """
    from scipy.ndimage import distance_transform_edt

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2
    radius = np.hypot(yy - centre, xx - centre)
    mask = np.zeros((size, size), dtype=np.int64)
    if kind == "vessels":
        fov = radius <= size * 0.48
        lines = np.zeros((size, size), dtype=bool)
        width = np.zeros((size, size), dtype=np.float32)
        for _ in range(rng.integers(4, 8)):
            position = rng.uniform(0.15 * size, 0.85 * size, 2)
            angle = rng.uniform(0, 2 * np.pi)
            thickness = rng.uniform(0.8, 2.2)
            for _ in range(int(size * 1.2)):
                angle += rng.normal(0, 0.12)
                position = position + np.array([np.sin(angle), np.cos(angle)])
                y, x = round(position[0]), round(position[1])
                if not (0 <= y < size and 0 <= x < size):
                    break
                lines[y, x] = True
                width[y, x] = max(width[y, x], thickness)
        distance, (iy, ix) = distance_transform_edt(~lines, return_indices=True)
        vessel = distance <= width[iy, ix]
        mask[vessel & fov] = 1
        intensity = 0.55 + 0.08 * _smooth_noise(rng, (size, size), 6) - 0.25 * vessel
        intensity -= 0.15 * (radius / size) ** 2  # vignetting, like a fundus camera
        intensity = np.where(fov, intensity, 0.02)
    elif kind == "cells":
        fov = np.ones((size, size), dtype=bool)
        intensity = 0.3 + 0.06 * _smooth_noise(rng, (size, size), 4)
        for _ in range(rng.integers(5, 12)):
            large = rng.random() < 0.5
            r = rng.uniform(9, 14) if large else rng.uniform(4, 7)
            cy, cx = rng.uniform(r, size - r, 2)
            a = rng.uniform(0.7, 1.3)
            blob = ((yy - cy) / (r * a)) ** 2 + ((xx - cx) / (r / a)) ** 2 <= 1
            mask[blob] = (2 if large else 1) if classes >= 3 else 1
            intensity = np.where(blob, intensity + 0.35, intensity)
    else:
        raise ConfigError(f"synthetic kind must be 'vessels' or 'cells', got {kind!r}.")
    intensity = intensity + rng.normal(0, 0.04, (size, size))
    tint = np.linspace(1.0, 0.6, channels, dtype=np.float32) if channels > 1 else np.ones(1, np.float32)
    image = np.clip(intensity[None] * tint[:, None, None], 0, 1).astype(np.float32)
    return image, mask, fov


@DATASETS.register("synthetic")
def synthetic(
    root: str | Path | None = None,
    kind: str = "vessels",
    image_size: int = 128,
    train_images: int = 16,
    val_images: int = 4,
    test_images: int = 4,
    in_channels: int = 3,
    classes: int = 2,
    split_seed: int = 0,
    **_: Any,
) -> SegmentationData:
    """Generated vessel-like curves (or cell-like blobs) on textured noise, with ground truth; offline."""
    if kind == "vessels" and classes != 2:
        raise ConfigError("synthetic vessels are binary; use classes=2 or kind=cells for 3 classes.")
    if classes not in (2, 3):
        raise ConfigError(f"synthetic data has 2 or 3 classes, got {classes}.")
    rng = np.random.default_rng(split_seed)

    def make(count: int, prefix: str) -> list[SegImage]:
        out = []
        for index in range(count):
            image, mask, fov = synthetic_image(rng, image_size, kind, in_channels, classes)
            out.append(SegImage(f"{prefix}{index:03d}", image, mask, fov))
        return out

    return SegmentationData(
        make(train_images, "train"), make(val_images, "val"), make(test_images, "test"), classes, in_channels,
        name="synthetic",
    )  # fmt: skip


def load_dataset(name: str, root: str | Path | None, **options: Any) -> SegmentationData:
    """Build dataset ``name`` from ``root`` with dataset-specific options (unknown options are ignored)."""
    data = DATASETS.build(name, root=root, **options)
    if not data.train:
        raise DataError(f"dataset {name!r} at {root} has no training images.")
    for item in data.train + data.val + data.test:
        if not np.isfinite(item.image).all():
            raise DataError(f"image {item.source or item.name} contains NaN or infinite values.")
    return data


def list_images(directory: Path) -> list[Path]:
    """Image and NIfTI files in ``directory`` (for ``predict --input``), sorted by name."""
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise missing_file(directory, "input folder or file")
    files = [
        p for p in sorted(directory.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES or p.name.lower().endswith(NIFTI_SUFFIXES)
    ]  # fmt: skip
    if not files:
        raise DataError(f"no images or NIfTI volumes in {directory}.")
    return files
