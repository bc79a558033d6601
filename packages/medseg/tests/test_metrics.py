"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest

from pentad_medseg.metrics import (
    Counts,
    best_f1_threshold,
    confusion,
    counts_metrics,
    dataset_metrics,
    hausdorff95,
    image_metrics,
    roc_auc,
)


def test_confusion_and_counts_metrics_by_hand():
    prediction = np.array([[1, 1, 0], [0, 1, 0]], bool)
    truth = np.array([[1, 0, 0], [1, 1, 0]], bool)
    counts = confusion(prediction, truth)
    assert counts == Counts(tp=2, fp=1, fn=1, tn=2)
    values = counts_metrics(counts)
    assert values["dice"] == pytest.approx(4 / 6)
    assert values["f1"] == values["dice"]
    assert values["iou"] == pytest.approx(2 / 4)
    assert values["sensitivity"] == pytest.approx(2 / 3)
    assert values["specificity"] == pytest.approx(2 / 3)
    assert values["accuracy"] == pytest.approx(4 / 6)


def test_fov_excludes_pixels():
    prediction = np.array([1, 1, 0, 0], bool)
    truth = np.array([1, 0, 0, 1], bool)
    fov = np.array([1, 0, 1, 0], bool)  # drops the false positive and the false negative
    assert confusion(prediction, truth, fov) == Counts(1, 0, 0, 1)
    assert counts_metrics(confusion(prediction, truth, fov))["dice"] == 1.0


def test_empty_conventions():
    values = counts_metrics(Counts(0, 0, 0, 5))
    assert values["dice"] == 1.0 and values["iou"] == 1.0
    assert math.isnan(values["sensitivity"])
    assert values["specificity"] == 1.0


def test_auc_exact_with_ties():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1], bool)
    # positive/negative pairs ordered correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) -> 3 of 4
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    # a tie counts one half: pairs (0.5 vs 0.5) = 0.5, (0.9 vs 0.5) = 1 -> 1.5 / 2
    assert roc_auc(np.array([0.5, 0.5, 0.9]), np.array([0, 1, 1], bool)) == pytest.approx(0.75)
    assert roc_auc(np.array([0.2, 0.3]), np.array([1, 1], bool)) != roc_auc(
        np.array([0.2, 0.3]), np.array([1, 1], bool)
    )


def test_auc_matches_pairwise_definition_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 10, 200) / 10  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert roc_auc(scores, labels) == pytest.approx(expected)


def test_hausdorff95_by_hand():
    truth = np.zeros((20, 20), bool)
    truth[5:10, 5:10] = True
    assert hausdorff95(truth, truth) == 0.0
    shifted = np.zeros_like(truth)
    shifted[5:10, 8:13] = True  # the square moved 3 pixels right
    # every surface pixel of one square is at most 3 pixels from the other's surface; the far column
    # (and its counterpart) sits exactly 3 away, so the 95th percentile is 3.
    assert hausdorff95(shifted, truth) == pytest.approx(3.0)
    assert math.isnan(hausdorff95(np.zeros_like(truth), truth))
    assert hausdorff95(np.zeros_like(truth), np.zeros_like(truth)) == 0.0


def test_hausdorff95_single_pixels():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[1, 1] = True
    b[4, 5] = True
    assert hausdorff95(a, b) == pytest.approx(5.0)  # 3-4-5 triangle
    assert hausdorff95(a, b, spacing=(2.0, 1.0)) == pytest.approx(math.hypot(6, 4))


def test_best_threshold_separates_perfectly():
    probabilities = np.array([0.1, 0.2, 0.3, 0.62, 0.7, 0.9])
    truth = np.array([0, 0, 0, 1, 1, 1], bool)
    threshold = best_f1_threshold(probabilities, truth, bins=100)
    assert 0.3 < threshold <= 0.62
    assert ((probabilities >= threshold) == truth).all()


def test_dataset_metrics_pool_pixels():
    prob_a = np.array([[[0.9, 0.1], [0.8, 0.2]]])
    truth_a = np.array([[1, 0], [0, 0]])
    prob_b = np.array([[[0.6, 0.7], [0.1, 0.3]]])
    truth_b = np.array([[1, 1], [1, 0]])
    fov = np.ones((2, 2), bool)
    summary, rows = dataset_metrics([prob_a, prob_b], [truth_a, truth_b], [fov, fov], ["a", "b"], 0.5)
    # a: tp1 fp1 fn0 tn2 ; b: tp2 fp0 fn1 tn1 -> pooled tp3 fp1 fn1 tn3
    assert summary["dice"] == pytest.approx(6 / 8)
    assert summary["accuracy"] == pytest.approx(6 / 8)
    assert rows[0]["image"] == "a" and rows[0]["dice"] == pytest.approx(2 / 3)
    assert rows[1]["dice"] == pytest.approx(4 / 5)
    assert summary["dice_per_image"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    scores = np.concatenate([prob_a.ravel(), prob_b.ravel()])
    labels = np.concatenate([truth_a.ravel(), truth_b.ravel()]).astype(bool)
    assert summary["auc"] == pytest.approx(roc_auc(scores, labels))


def test_multiclass_mean_over_foreground_classes():
    truth = np.array([[0, 1], [2, 2]])
    probabilities = np.zeros((3, 2, 2))
    probabilities[0, 0, 0] = probabilities[1, 0, 1] = probabilities[2, 1, 0] = 1.0
    probabilities[1, 1, 1] = 1.0  # pixel of class 2 predicted as class 1
    values = image_metrics(probabilities, truth, hd95=False)
    # class 1: tp1 fp1 fn0 -> dice 2/3 ; class 2: tp1 fp0 fn1 -> dice 2/3
    assert values["dice"] == pytest.approx(2 / 3)
    assert values["iou"] == pytest.approx(0.5)
