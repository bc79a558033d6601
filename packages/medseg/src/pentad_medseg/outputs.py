"""Writing predictions: probability maps, masks and overlays as PNG, volumes as NIfTI, and figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pentad_core.files import atomic_write_bytes

#: Overlay colours (RGB in [0, 1]).
PREDICTION_COLOUR = (1.0, 0.15, 0.15)
TRUTH_COLOUR = (0.1, 0.9, 0.2)
BOTH_COLOUR = (1.0, 0.9, 0.1)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(array: np.ndarray, path: Path) -> Path:
    """Write a ``(H, W)`` or ``(H, W, 3)`` uint8 array as PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _png_bytes(np.ascontiguousarray(array)))
    return path


def display_image(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` raw image -> ``(H, W, 3)`` float in [0, 1] for display (min-max per image)."""
    rgb = image[:3].transpose(1, 2, 0) if image.shape[0] >= 3 else np.repeat(image[:1].transpose(1, 2, 0), 3, axis=2)
    low, high = np.percentile(rgb, 0.5), np.percentile(rgb, 99.5)
    return np.clip((rgb - low) / max(high - low, 1e-8), 0, 1)


def contour(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (pixels with a background 4-neighbour)."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, bool)
    return mask & ~binary_erosion(mask, border_value=0)


def overlay(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image with the prediction's contour (red), the truth's (green), both (yellow)."""
    canvas = display_image(image).copy()
    predicted = contour(prediction > 0)
    canvas[predicted] = PREDICTION_COLOUR
    if truth is not None:
        true = contour(truth > 0)
        canvas[true & ~predicted] = TRUTH_COLOUR
        canvas[true & predicted] = BOTH_COLOUR
    return (canvas * 255).round().astype(np.uint8)


def labels_from_probabilities(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """``(K, H, W)`` -> ``(H, W)`` labels."""
    if probabilities.shape[0] == 1:
        return (probabilities[0] > threshold).astype(np.int64)
    return probabilities.argmax(axis=0).astype(np.int64)


def prediction_images(
    image: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    truth: np.ndarray | None = None,
    fov: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The pictures of one prediction as uint8 arrays: ``prob`` (foreground probability x 255), ``mask``
    (0/255 binary, labels otherwise), ``overlay`` (the prediction's contour on the image), and ``labels``
    (``(H, W)`` int64); outside the FOV, if given, the probability and labels are 0."""
    labels = labels_from_probabilities(probabilities, threshold)
    foreground = probabilities[0] if probabilities.shape[0] == 1 else 1 - probabilities[0]
    if fov is not None:  # outside the field of view the model was never trained: show nothing there
        labels, foreground = labels * fov, foreground * fov
    return {
        "prob": (np.clip(foreground, 0, 1) * 255).round().astype(np.uint8),
        "mask": (labels * 255).astype(np.uint8) if probabilities.shape[0] == 1 else labels.astype(np.uint8),
        "overlay": overlay(image, labels, truth),
        "labels": labels,
    }


def png_bytes(array: np.ndarray) -> bytes:
    """A ``(H, W)`` or ``(H, W, 3)`` uint8 array as PNG bytes."""
    return _png_bytes(np.ascontiguousarray(array))


def save_prediction_pngs(
    name: str,
    image: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    out: Path,
    truth: np.ndarray | None = None,
    fov: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``<name>_prob.png`` (foreground probability x 255), ``<name>_mask.png`` (0/255 binary, labels
    otherwise) and ``<name>_overlay.png`` under ``out``."""
    pictures = prediction_images(image, probabilities, threshold, truth, fov)
    return {kind: save_png(pictures[kind], out / f"{name}_{kind}.png") for kind in ("prob", "mask", "overlay")}


def save_nifti(volume: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Write a volume with the input's affine as NIfTI (gzip-compressed for ``.nii.gz``), atomically:
    the bytes are made in memory and written through a temporary file, fsync and rename."""
    import gzip

    import nibabel as nib

    data = nib.Nifti1Image(volume, affine).to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)
    return path


def plot_examples(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray | None],
    probabilities: Sequence[np.ndarray],
    names: Sequence[str],
    threshold: float,
    path: Path,
    fovs: Sequence[np.ndarray] | None = None,
) -> Path:
    """A grid: image | ground truth | probability | overlay, one row per example (masked to the FOVs)."""
    from pentad_core.plotting import new_figure, save_figure

    rows = len(images)
    figure, axes = new_figure(12, 3 * rows)
    figure.clf()
    axes = figure.subplots(rows, 4, squeeze=False)
    for row, (image, truth, prob, name) in enumerate(zip(images, truths, probabilities, names)):
        labels = labels_from_probabilities(prob, threshold)
        foreground = prob[0] if prob.shape[0] == 1 else 1 - prob[0]
        if fovs is not None:
            labels, foreground = labels * fovs[row], foreground * fovs[row]
        panels = [
            (display_image(image), f"{name}"),
            (truth if truth is not None else np.zeros_like(labels), "ground truth"),
            (foreground, "probability"),
            (overlay(image, labels, truth), "red: prediction, green: truth, yellow: both"),
        ]
        for column, (picture, title) in enumerate(panels):
            axis = axes[row][column]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=max(1, picture.max()))
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    return save_figure(figure, path)
