"""Metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pentad_traffic import metrics


def test_rmse_mae_mape_on_a_hand_computed_case() -> None:
    true = torch.tensor([1.0, 2.0, 4.0, 8.0])
    pred = torch.tensor([2.0, 2.0, 2.0, 8.0])  # errors 1, 0, -2, 0
    assert metrics.rmse(pred, true) == pytest.approx(math.sqrt(5 / 4))
    assert metrics.mae(pred, true) == pytest.approx(3 / 4)
    assert metrics.mape(pred, true) == pytest.approx((1 / 1 + 0 + 2 / 4 + 0) / 4 * 100)


def test_tgcn_accuracy_r2_and_explained_variance_on_a_hand_computed_case() -> None:
    true = np.array([[1.0, 2.0], [3.0, 4.0]])
    pred = np.array([[1.0, 3.0], [3.0, 5.0]])  # errors 0, 1, 0, 1
    assert metrics.accuracy(pred, true) == pytest.approx(1 - math.sqrt(2) / math.sqrt(30))
    # mean(true) = 2.5, total sum of squares = 5, residual sum of squares = 2
    assert metrics.r2(pred, true) == pytest.approx(1 - 2 / 5)
    # Var(true - pred) = Var([0, -1, 0, -1]) = 0.25, Var(true) = 1.25
    assert metrics.explained_variance(pred, true) == pytest.approx(1 - 0.25 / 1.25)


def test_a_constant_offset_keeps_explained_variance_but_not_r2() -> None:
    true = torch.tensor([1.0, 2.0, 3.0])
    assert metrics.explained_variance(true + 1, true) == pytest.approx(1.0)
    assert metrics.r2(true + 1, true) < 1.0


def test_masked_metrics_ignore_masked_entries_and_mape_ignores_zero_truth() -> None:
    true = torch.tensor([0.0, 2.0, 4.0])
    pred = torch.tensor([100.0, 3.0, 4.0])
    mask = metrics.null_mask(true, 0.0)
    assert mask.tolist() == [False, True, True]
    assert metrics.mae(pred, true, mask) == pytest.approx(0.5)
    assert metrics.rmse(pred, true, mask) == pytest.approx(math.sqrt(0.5))
    assert metrics.mape(pred, true) == pytest.approx((0.5 + 0) / 2 * 100)


def test_cumulative_horizons_score_steps_one_to_k_on_complete_windows() -> None:
    true = torch.tensor([[[1.0], [2.0], [3.0]], [[1.0], [2.0], [float("nan")]]])  # (S=2, H=3, N=1)
    pred = torch.tensor([[[2.0], [2.0], [5.0]], [[1.0], [4.0], [0.0]]])
    result = metrics.horizon_metrics(pred, true, (1, 3), ("mae",), reduction="cumulative")
    assert result["h1/mae"] == pytest.approx((1 + 0) / 2)
    assert result["h3/mae"] == pytest.approx((1 + 0 + 2) / 3)  # the second window lacks step 3


def test_step_horizons_score_only_step_k() -> None:
    true = torch.tensor([[[1.0], [2.0], [3.0]]])
    pred = torch.tensor([[[9.0], [2.0], [4.0]]])
    result = metrics.horizon_metrics(pred, true, (2, 3), ("mae",), reduction="step")
    assert result == {"h2/mae": 0.0, "h3/mae": 1.0}


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        metrics.rmse(torch.zeros(3), torch.zeros(4))
