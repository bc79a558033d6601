"""Segmentation metrics inside a field of view: Dice/F1, IoU, sensitivity, specificity, accuracy,
pixel AUC-ROC and the 95th-percentile Hausdorff distance.

Conventions (documented in docs/medseg.md):

- Pixels outside the FOV are ignored everywhere.
- Dataset summaries pool the pixels of all images (the DRIVE convention of the published tables);
  per-image values go to the CSV, and ``dice_per_image`` is their mean.
- Dice and IoU of an image where both prediction and truth are empty are 1; sensitivity without
  positives, specificity without negatives and AUC with a single class are NaN.
- HD95 (MONAI's definition) is the larger of the two directed 95th percentiles of surface-to-surface
  distances in pixels; NaN when either side is empty.
- Multi-class values are the mean over foreground classes (one-vs-rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Summary keys written as ``<split>/<key>``.
METRIC_NAMES = ("auc", "dice", "f1", "iou", "sensitivity", "specificity", "accuracy", "hd95", "dice_per_image")


@dataclass(frozen=True)
class Counts:
    """Confusion counts of a binary prediction."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def confusion(prediction: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> Counts:
    """Confusion counts of boolean arrays (inside ``fov`` when given)."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if fov is not None:
        fov = np.asarray(fov, bool)
        prediction, truth = prediction[fov], truth[fov]
    tp = int(np.count_nonzero(prediction & truth))
    fp = int(np.count_nonzero(prediction & ~truth))
    fn = int(np.count_nonzero(~prediction & truth))
    return Counts(tp, fp, fn, int(prediction.size) - tp - fp - fn)


def _ratio(numerator: float, denominator: float, empty: float = float("nan")) -> float:
    return float(numerator) / float(denominator) if denominator else empty


def counts_metrics(counts: Counts) -> dict[str, float]:
    """Dice (= F1), IoU, sensitivity, specificity and accuracy from confusion counts."""
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    dice = _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0)
    return {
        "dice": dice,
        "f1": dice,
        "iou": _ratio(tp, tp + fp + fn, empty=1.0),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, exactly, via the Mann-Whitney U statistic with average ranks for ties.

    Args:
        scores: Predicted scores (any shape).
        labels: Matching booleans.

    Returns:
        AUC in ``[0, 1]``; NaN when only one class is present.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)


def hausdorff95(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance between the surfaces of two 2D masks.

    Surfaces are the mask pixels with a background 8-neighbour (or on the border); distances are
    Euclidean between pixel centres, scaled by ``spacing``.

    Returns:
        ``max(P95(d(pred -> truth)), P95(d(truth -> pred)))``; 0 when both are empty, NaN when one is.
    """
    from scipy.ndimage import distance_transform_edt

    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return float("nan")
    surface_p, surface_t = _surface(prediction), _surface(truth)
    to_truth = distance_transform_edt(~surface_t, sampling=spacing)
    to_prediction = distance_transform_edt(~surface_p, sampling=spacing)
    return float(max(np.percentile(to_truth[surface_p], 95), np.percentile(to_prediction[surface_t], 95)))


def best_f1_threshold(probabilities: np.ndarray, truth: np.ndarray, bins: int = 200) -> float:
    """The threshold (on a grid of ``bins`` steps in (0, 1)) that maximises pooled F1, for validation data."""
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    truth = np.asarray(truth, bool).ravel()
    edges = np.linspace(0, 1, bins + 1)
    positive_hist, _ = np.histogram(probabilities[truth], bins=edges)
    negative_hist, _ = np.histogram(probabilities[~truth], bins=edges)
    # Predicting positive for scores >= edges[i]: counts are reverse cumulative sums.
    tp = np.cumsum(positive_hist[::-1])[::-1]
    fp = np.cumsum(negative_hist[::-1])[::-1]
    fn = truth.sum() - tp
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0)
    best = int(np.argmax(f1[1:])) + 1  # threshold 0 would predict everything positive
    return float(edges[best])


def image_metrics(
    probabilities: np.ndarray,
    truth: np.ndarray,
    fov: np.ndarray | None = None,
    threshold: float = 0.5,
    hd95: bool = True,
) -> dict[str, float]:
    """Metrics of one image.

    Args:
        probabilities: ``(K, H, W)`` (``K == 1``: foreground probability; else class probabilities).
        truth: ``(H, W)`` integer labels.
        fov: ``(H, W)`` bool.
        threshold: Binary decision threshold.
        hd95: Also compute the Hausdorff distance (the slowest metric).
    """
    fov = np.ones(truth.shape, bool) if fov is None else np.asarray(fov, bool)
    results = []
    for truth_c, prob_c, pred_c in _per_class(probabilities, truth, threshold):
        values = counts_metrics(confusion(pred_c, truth_c, fov))
        values["auc"] = roc_auc(prob_c[fov], truth_c[fov])
        if hd95:
            values["hd95"] = hausdorff95(pred_c & fov, truth_c & fov)
        results.append(values)
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}


def _per_class(probabilities: np.ndarray, truth: np.ndarray, threshold: float):
    """Yield ``(truth_c, probability_c, prediction_c)`` for each foreground class."""
    if probabilities.shape[0] == 1:
        yield truth > 0, probabilities[0], probabilities[0] > threshold
        return
    labels = probabilities.argmax(axis=0)
    for c in range(1, probabilities.shape[0]):
        yield truth == c, probabilities[c], labels == c


def dataset_metrics(
    probabilities: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    fovs: Sequence[np.ndarray],
    names: Sequence[str],
    threshold: float = 0.5,
    hd95: bool = True,
) -> tuple[dict[str, float], list[dict[str, float | str]]]:
    """Pooled summary and per-image rows for a split.

    Returns:
        ``(summary, rows)``: the summary holds pooled ``auc dice f1 iou sensitivity specificity
        accuracy`` plus the per-image means ``hd95`` and ``dice_per_image``; rows hold ``image`` and
        the per-image metrics.
    """
    rows: list[dict[str, float | str]] = []
    for prob, truth, fov, name in zip(probabilities, truths, fovs, names):
        rows.append({"image": name, **image_metrics(prob, truth, fov, threshold, hd95)})
    classes = probabilities[0].shape[0]
    pooled = []
    for c in range(max(1, classes - 1)):
        counts = Counts(0, 0, 0, 0)
        scores, labels = [], []
        for prob, truth, fov in zip(probabilities, truths, fovs):
            class_iter = list(_per_class(prob, truth, threshold))
            truth_c, prob_c, pred_c = class_iter[c]
            counts = counts + confusion(pred_c, truth_c, fov)
            scores.append(prob_c[fov])
            labels.append(truth_c[fov])
        values = counts_metrics(counts)
        values["auc"] = roc_auc(np.concatenate(scores), np.concatenate(labels))
        pooled.append(values)
    summary = {key: float(np.mean([p[key] for p in pooled])) for key in pooled[0]}
    if hd95:
        summary["hd95"] = (
            float(np.nanmean([r["hd95"] for r in rows]))
            if any(np.isfinite([r["hd95"] for r in rows]))
            else float("nan")
        )
    summary["dice_per_image"] = float(np.mean([r["dice"] for r in rows]))
    summary["threshold"] = float(threshold)
    return summary, rows
