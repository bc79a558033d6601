"""Reading images, masks and NIfTI volumes from disk, with checks that name the file.

Images become ``(C, H, W)`` float32 in ``[0, 1]`` (NIfTI: raw intensities), masks ``(H, W)`` int64
labels. Every problem with a file raises :class:`~pentad_core.errors.DataError` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.errors import DataError, missing_file
from pentad_medseg.data.base import SegImage

#: Image files a folder dataset and ``predict --input`` read.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
#: NIfTI volume files.
NIFTI_SUFFIXES = (".nii.gz", ".nii")


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
            return image_array(opened)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}.", "Replace or remove the file.") from None


def image_array(opened: Any) -> np.ndarray:
    """An opened Pillow image as ``(C, H, W)`` float32 in ``[0, 1]`` (what :func:`read_image` returns).

    Palette, RGBA, CMYK, YCbCr and grey-alpha images become RGB; 16-bit images are scaled by 65535.
    """
    if opened.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LA"):
        opened = opened.convert("RGB")
    array = np.asarray(opened).astype(np.float32)
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
            array = label_values(opened)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read mask {path}: {error}.", "Replace or remove the file.") from None
    return labels_from_values(array, path, classes, lossy=path.suffix.lower() in (".jpg", ".jpeg"))


def label_values(opened: Any) -> np.ndarray:
    """The raw ``(H, W)`` int64 values of an opened Pillow mask (colour masks are read as grey)."""
    if opened.mode not in ("L", "P", "1", "I", "I;16"):
        opened = opened.convert("L")
    return np.asarray(opened).astype(np.int64)


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


def check_same_size(image: np.ndarray, other: np.ndarray, image_path: Path, other_path: Path, what: str) -> None:
    """Raise :class:`DataError` unless ``other`` ``(H, W)`` (a mask or FOV) matches image ``(C, H, W)``."""
    if image.shape[1:] != other.shape:
        raise DataError(
            f"{what} {other_path} is {other.shape[0]}x{other.shape[1]} but image {image_path} is "
            f"{image.shape[1]}x{image.shape[2]}; they must have the same size."
        )


def file_stem(path: Path) -> str:
    """The file name without its suffix; ``.nii.gz`` counts as one suffix."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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


def normalize_volume(volume: np.ndarray, clip: list[float] | None = None, zscore: bool = False) -> np.ndarray:
    """``volume`` clipped to ``clip`` (``[low, high]``) and/or z-scored with its own mean and std."""
    if clip is not None:
        low, high = (float(v) for v in clip)
        volume = np.clip(volume, low, high)
    if zscore:
        volume = (volume - volume.mean()) / max(float(volume.std()), 1e-8)
    return volume.astype(np.float32)


def nifti_files(directory: Path) -> dict[str, Path]:
    """``stem -> path`` of the NIfTI volumes in ``directory``."""
    return {file_stem(p): p for p in sorted(directory.iterdir()) if p.name.lower().endswith(NIFTI_SUFFIXES)}


def nifti_slices(
    image_path: Path,
    label_path: Path | None,
    classes: int,
    skip_empty: bool = False,
    clip: list[float] | None = None,
    zscore: bool = False,
) -> list[SegImage]:
    """Cut a volume (and its label volume) into 2D slices along the last axis.

    Args:
        image_path: The volume.
        label_path: Its label volume, or ``None``.
        classes: Label values including background.
        skip_empty: Leave out slices without foreground.
        clip: ``[low, high]``: clip the intensities first (CT windows, nnU-Net's foreground percentiles).
        zscore: Subtract the volume's mean and divide by its standard deviation (after clipping).
    """
    volume, affine = read_nifti(image_path)
    volume = normalize_volume(volume, clip, zscore)
    labels = None
    if label_path is not None:
        raw, _ = read_nifti(label_path)
        if raw.shape != volume.shape:
            raise DataError(f"label volume {label_path} has shape {raw.shape} but {image_path} has {volume.shape}.")
        if not np.all(raw == np.round(raw)):
            raise DataError(f"label volume {label_path} holds non-integer values; labels must be 0..{classes - 1}.")
        labels = labels_from_values(raw.astype(np.int64), label_path, classes)
    stem = file_stem(image_path)
    items = []
    for z in range(volume.shape[2]):
        mask = labels[:, :, z] if labels is not None else None
        if skip_empty and mask is not None and not mask.any():
            continue
        meta = {"volume": stem, "slice": z, "affine": affine, "volume_shape": volume.shape}
        image = np.ascontiguousarray(volume[None, :, :, z])
        items.append(SegImage(f"{stem}_z{z:03d}", image, mask, np.ones(volume.shape[:2], bool), image_path, meta))
    return items


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
