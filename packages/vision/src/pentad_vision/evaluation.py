"""Evaluation over a split, prediction on files, and the PNG reports (confusion matrix, mistakes, Grad-CAM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pentad_core.errors import DataError
from pentad_vision.attacks import attack
from pentad_vision.data.base import ImageSplit
from pentad_vision.data.imagefolder import IMAGE_EXTENSIONS, decode_image, list_images
from pentad_vision.metrics import ClassificationMeter
from pentad_vision.module import to_unit
from pentad_vision.transforms import TestTimeAugment


@dataclass
class Evaluation:
    """Predictions over a split.

    Attributes:
        meter: Top-1/top-k counts and the confusion matrix.
        probabilities: ``(N, classes)`` softmax outputs.
        labels: ``(N,)`` true classes.
    """

    meter: ClassificationMeter
    probabilities: torch.Tensor
    labels: torch.Tensor

    def worst_mistakes(self, count: int = 16) -> torch.Tensor:
        """Indices of the wrong predictions made with the highest confidence."""
        predicted = self.probabilities.argmax(1)
        wrong = (predicted != self.labels).nonzero().flatten()
        confidence = self.probabilities[wrong, predicted[wrong]]
        return wrong[confidence.argsort(descending=True)[:count]]


def predict_logits(
    net: nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    test_time_augment: TestTimeAugment | None = None,
    device: str = "cpu",
) -> torch.Tensor:
    """Logits ``(N, classes)`` of ``uint8`` or ``[0, 1]`` images ``(N, C, H, W)``, batch by batch."""
    net = net.to(device).eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_unit(images[start : start + batch_size]).to(device)
            outputs.append((test_time_augment or TestTimeAugment())(net, x).cpu())
    return torch.cat(outputs)


def evaluate_split(
    net: nn.Module,
    split: ImageSplit,
    *,
    batch_size: int = 256,
    test_time_augment: TestTimeAugment | None = None,
    attack_name: str | None = None,
    eps: float = 0.0,
    attack_steps: int = 10,
    device: str = "cpu",
) -> Evaluation:
    """Evaluate ``net`` (taking ``[0, 1]`` images) on ``split``, optionally under an attack."""
    meter = ClassificationMeter(len(split.classes))
    net = net.to(device).eval()
    probabilities = []
    for start in range(0, len(split), batch_size):
        x = to_unit(split.images[start : start + batch_size]).to(device)
        y = split.labels[start : start + batch_size].to(device)
        if attack_name:
            x = attack(attack_name, net, x, y, eps, attack_steps)
        with torch.no_grad():
            logits = (test_time_augment or TestTimeAugment())(net, x)
        meter.update(logits, y)
        probabilities.append(logits.softmax(1).cpu())
    return Evaluation(meter, torch.cat(probabilities), split.labels.clone())


def collect_image_files(inputs: list[str]) -> list[Path]:
    """Expand files and folders into image files (sorted within each folder).

    Raises:
        DataError: For a path that does not exist, or when no image is found.
    """
    files: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input not found: {path}.", "Give image files or folders of images.")
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}.")
    return files


def load_image_files(
    files: list[Path], image_size: int, channels: int, skip_bad: bool = False
) -> tuple[torch.Tensor, list[Path]]:
    """Decode and resize files to ``uint8 (N, C, S, S)``; unreadable files raise unless ``skip_bad``."""
    arrays, kept, bad = [], [], []
    for path in files:
        try:
            arrays.append(decode_image(path, image_size, channels))
            kept.append(path)
        except (OSError, ValueError, SyntaxError) as error:
            bad.append(f"{path} ({type(error).__name__})")
    if bad and not skip_bad:
        raise DataError(f"cannot read image(s): {'; '.join(bad[:5])}.", "Fix them or pass --skip-bad.")
    if not arrays:
        raise DataError("none of the input images could be read.")
    return torch.from_numpy(np.stack(arrays)), kept


def top_k(probabilities: torch.Tensor, classes: list[str], k: int) -> list[list[tuple[str, float]]]:
    """For each row, the ``k`` most probable ``(class name, probability)`` pairs."""
    k = min(k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [
        [(classes[i], float(v)) for v, i in zip(row_values, row_indices)]
        for row_values, row_indices in zip(values.tolist(), indices.tolist())
    ]


# ----------------------------------------------------------------------------- plots
def _image_for_display(image: torch.Tensor) -> np.ndarray:
    picture = to_unit(image).clamp(0, 1)
    return picture[0].numpy() if picture.shape[0] == 1 else picture.permute(1, 2, 0).numpy()


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: truth) with counts, as PNG."""
    from pentad_core.plotting import new_figure, save_figure

    n = len(classes)
    side = min(max(4.0, 0.45 * n + 2), 16)
    figure, axes = new_figure(side, side)
    totals = confusion.sum(1, keepdim=True).clamp_min(1)
    shares = (confusion / totals).numpy()
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        labels = [c[:12] for c in classes]
        axes.set_xticks(range(n), labels, rotation=45, ha="right")
        axes.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                count = int(confusion[i, j])
                if count:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    axes.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title or "confusion matrix")
    return save_figure(figure, path)


def plot_grid(
    images: torch.Tensor, captions: list[str], path: Path, title: str = "", overlays: list[np.ndarray] | None = None
) -> Path:
    """A grid of images (or ready-made ``uint8`` overlays) with one caption each, as PNG."""
    from pentad_core.plotting import new_figure, save_figure

    count = len(captions)
    columns = min(8, max(count, 1))
    rows = max(1, (count + columns - 1) // columns)
    figure, _axes = new_figure(1.7 * columns, 1.9 * rows + 0.4)
    figure.clf()
    for index in range(count):
        ax = figure.add_subplot(rows, columns, index + 1)
        picture = overlays[index] if overlays is not None else _image_for_display(images[index])
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0 if picture.ndim == 2 else None)
        ax.set_title(captions[index], fontsize=7)
        ax.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def plot_mistakes(evaluation: Evaluation, split: ImageSplit, path: Path, count: int = 16) -> Path | None:
    """Grid of the most confident mistakes (``true -> predicted (p)``); ``None`` when there is none."""
    worst = evaluation.worst_mistakes(count)
    if len(worst) == 0:
        return None
    predicted = evaluation.probabilities[worst].argmax(1)
    captions = [
        f"{split.classes[int(evaluation.labels[i])][:10]} -> {split.classes[int(p)][:10]} "
        f"({float(evaluation.probabilities[i, p]):.2f})"
        for i, p in zip(worst.tolist(), predicted.tolist())
    ]
    return plot_grid(split.images[worst], captions, path, title="most confident mistakes (true -> predicted)")
