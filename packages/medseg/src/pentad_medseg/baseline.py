"""The simple baseline beside every ``benchmark`` on a generic dataset: Otsu's threshold on one channel.

For each channel and polarity (foreground brighter or darker), every training image is thresholded
at its own Otsu threshold (Otsu 1979, inside the FOV) and the pooled training Dice is measured; the
best channel and polarity are then applied the same way to each test image. Nothing is chosen on
the test images. Binary datasets only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pentad_medseg.data import SegImage
from pentad_medseg.metrics import dataset_metrics


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the cut that maximises the between-class variance."""
    values = np.asarray(values, np.float64).ravel()
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mass = np.cumsum(counts * centres)
    total, total_mass = weight[-1], mass[-1]
    below, above = weight[:-1], total - weight[:-1]
    valid = (below > 0) & (above > 0)
    between = np.zeros_like(centres[:-1])
    mean_below = np.divide(mass[:-1], below, out=np.zeros_like(between), where=valid)
    mean_above = np.divide(total_mass - mass[:-1], above, out=np.zeros_like(between), where=valid)
    between[valid] = below[valid] * above[valid] * (mean_below[valid] - mean_above[valid]) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # a flat top (an empty gap): its middle
    return float(edges[1:-1][best].mean())


def _score(item: SegImage, channel: int, sign: float) -> np.ndarray:
    """Foreground score of one channel with the polarity ``sign`` (+1 brighter, -1 darker)."""
    return sign * item.image[channel].astype(np.float64)


def _masks(images: Sequence[SegImage], channel: int, sign: float) -> list[np.ndarray]:
    out = []
    for item in images:
        score = _score(item, channel, sign)
        cut = otsu_threshold(score[item.fov])
        out.append(((score > cut) & item.fov).astype(np.float32)[None])
    return out


def _dice(predictions: Sequence[np.ndarray], images: Sequence[SegImage]) -> float:
    overlap = total = 0.0
    for prediction, item in zip(predictions, images):
        truth = (item.mask > 0) & item.fov
        overlap += float((prediction[0] > 0.5)[truth].sum())
        total += float((prediction[0] > 0.5).sum() + truth.sum())
    return 2 * overlap / total if total else 1.0


def otsu_baseline(train: Sequence[SegImage], test: Sequence[SegImage]) -> tuple[dict[str, float], dict[str, Any]]:
    """Otsu on the best channel/polarity of the training images, measured on ``test``.

    Returns:
        ``(metrics, choice)``: ``metrics`` as :func:`~pentad_medseg.metrics.dataset_metrics` summarises
        them (``dice``, ``iou``, ... of the Otsu masks; ``auc`` of the raw channel score, rescaled to
        [0, 1] per image), ``choice`` ``{"channel", "polarity", "train_dice"}``.
    """
    channels = train[0].image.shape[0]
    options = [(c, s) for c in range(channels) for s in (1.0, -1.0)]
    scores = {option: _dice(_masks(train, *option), train) for option in options}
    channel, sign = max(scores, key=scores.get)
    masks = _masks(test, channel, sign)
    summary, _ = dataset_metrics(masks, [i.mask for i in test], [i.fov for i in test], [i.name for i in test],
                                 0.5, hd95=False)  # fmt: skip
    # the AUC of the thresholded masks says little; rank pixels by the chosen channel instead
    ranked = []
    for item in test:
        score = _score(item, channel, sign)
        low, high = score[item.fov].min(initial=0.0), score[item.fov].max(initial=1.0)
        ranked.append(((score - low) / max(high - low, 1e-12)).astype(np.float32)[None])
    auc, _ = dataset_metrics(ranked, [i.mask for i in test], [i.fov for i in test], [i.name for i in test], 0.5,
                             hd95=False)  # fmt: skip
    summary["auc"] = auc["auc"]
    polarity = "brighter" if sign > 0 else "darker"
    return summary, {"channel": channel, "polarity": polarity, "train_dice": round(scores[(channel, sign)], 4)}
