"""Forecast metrics, masked, in the definitions of T-GCN and DCRNN.

All functions take ``pred`` and ``true`` of equal shape (any shape) and an optional boolean
``mask`` of the same shape; only entries where the mask is true count. Results are Python floats.

* ``rmse``, ``mae``: as usual.
* ``mape``: mean of ``|pred - true| / |true|`` over entries with ``true != 0`` (in percent).
* ``accuracy`` (T-GCN): ``1 - ||true - pred||_F / ||true||_F``.
* ``r2`` (T-GCN): ``1 - sum((true - pred)^2) / sum((true - mean(true))^2)``.
* ``explained_variance`` (T-GCN's "var"): ``1 - Var(true - pred) / Var(true)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _select(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float64)
    true = torch.as_tensor(true, dtype=torch.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and true {tuple(true.shape)} differ in shape")
    if mask is None:
        return pred.reshape(-1), true.reshape(-1)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    return pred[mask], true[mask]


def rmse(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Root mean squared error over the selected entries."""
    p, t = _select(pred, true, mask)
    return float(torch.sqrt(torch.mean((p - t) ** 2))) if p.numel() else float("nan")


def mae(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean absolute error over the selected entries."""
    p, t = _select(pred, true, mask)
    return float(torch.mean(torch.abs(p - t))) if p.numel() else float("nan")


def mape(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean absolute percentage error (in %) over selected entries with a non-zero truth."""
    p, t = _select(pred, true, mask)
    keep = t != 0
    p, t = p[keep], t[keep]
    return float(torch.mean(torch.abs(p - t) / torch.abs(t)) * 100.0) if p.numel() else float("nan")


def accuracy(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """T-GCN accuracy ``1 - ||true - pred||_F / ||true||_F``."""
    p, t = _select(pred, true, mask)
    return float(1.0 - torch.linalg.norm(t - p) / torch.linalg.norm(t)) if p.numel() else float("nan")


def r2(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Coefficient of determination over all selected entries pooled."""
    p, t = _select(pred, true, mask)
    if not p.numel():
        return float("nan")
    return float(1.0 - torch.sum((t - p) ** 2) / torch.sum((t - t.mean()) ** 2))


def explained_variance(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> float:
    """``1 - Var(true - pred) / Var(true)`` (population variances)."""
    p, t = _select(pred, true, mask)
    if not p.numel():
        return float("nan")
    return float(1.0 - torch.var(t - p, unbiased=False) / torch.var(t, unbiased=False))


METRICS: dict[str, Callable[..., float]] = {
    "rmse": rmse,
    "mae": mae,
    "mape": mape,
    "accuracy": accuracy,
    "r2": r2,
    "explained_variance": explained_variance,
}


def null_mask(true: torch.Tensor, null_value: float | None) -> torch.Tensor:
    """True where ``true`` is a real reading: finite and not equal to ``null_value``."""
    mask = torch.isfinite(true)
    if null_value is not None:
        mask &= true != null_value
    return mask


def horizon_metrics(
    pred: ArrayLike,
    true: ArrayLike,
    horizons: Sequence[int],
    metrics: Sequence[str],
    reduction: str = "cumulative",
    null_value: float | None = None,
) -> dict[str, float]:
    """Metrics per forecast horizon, keyed ``h<k>/<metric>``.

    Args:
        pred: ``(S, H, N)`` forecasts.
        true: ``(S, H, N)`` truths; NaN marks steps beyond the end of the series (those windows do
            not count for horizons that need them).
        horizons: Horizons in steps, e.g. ``(3, 6, 9, 12)``.
        metrics: Names from :data:`METRICS`.
        reduction: ``"cumulative"`` (T-GCN): horizon ``k`` scores steps ``1..k`` of the windows
            that have all ``k`` future steps. ``"step"`` (DCRNN): horizon ``k`` scores step ``k``.
        null_value: Truth value that marks a missing reading (masked), or None.

    Returns:
        ``{"h3/rmse": ..., "h3/mae": ..., ...}``.
    """
    pred = torch.as_tensor(pred, dtype=torch.float64)
    true = torch.as_tensor(true, dtype=torch.float64)
    results: dict[str, float] = {}
    for horizon in horizons:
        if horizon > true.shape[1]:
            raise ValueError(f"horizon {horizon} exceeds the {true.shape[1]} predicted steps")
        if reduction == "cumulative":
            complete = torch.isfinite(true[:, :horizon]).flatten(1).all(dim=1)
            p, t = pred[complete, :horizon], true[complete, :horizon]
        elif reduction == "step":
            p, t = pred[:, horizon - 1], true[:, horizon - 1]
        else:
            raise ValueError(f"unknown reduction {reduction!r}")
        mask = null_mask(t, null_value)
        for name in metrics:
            results[f"h{horizon}/{name}"] = METRICS[name](p, t, mask)
    return results
