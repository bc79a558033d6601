"""Segmentation losses with field-of-view masking.

Every loss is called as ``loss(logits, target, fov=None)`` with

- ``logits``: ``(B, K, H, W)``; ``K == 1`` is binary (sigmoid), ``K > 1`` is multi-class (softmax);
- ``target``: ``(B, H, W)`` int64 labels in ``0..max(K, 2) - 1``;
- ``fov``: ``(B, H, W)`` bool, pixels that count (``None``: all).

Region losses (Dice, Tversky) sum over the batch (the "batch Dice" of nnU-Net), which stays defined
for patches without foreground. Multi-class region losses average over the foreground classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pentad_medseg.registry import LOSSES


def _weights(target: torch.Tensor, fov: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(target, dtype=torch.float32) if fov is None else fov.to(torch.float32)


def _probabilities_and_onehot(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground probabilities and one-hot targets ``(B, K', H, W)`` (``K' = 1`` binary, else ``K - 1``)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits), (target[:, None] > 0).to(logits.dtype)
    probabilities = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return probabilities[:, 1:], onehot[:, 1:]


def _pixel_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


class CrossEntropyLoss(nn.Module):
    """Binary cross-entropy on sigmoid logits, or softmax cross-entropy for ``K > 1``, inside the FOV.

    Args:
        pos_weight: Weight of foreground pixels in the binary case (class imbalance).
    """

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        weights = _weights(target, fov)
        if logits.shape[1] == 1:
            pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
            values = F.binary_cross_entropy_with_logits(
                logits[:, 0], (target > 0).to(logits.dtype), reduction="none", pos_weight=pos_weight
            )
        else:
            values = F.cross_entropy(logits, target, reduction="none")
        return _pixel_mean(values, weights)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_t) ** gamma``.

    Args:
        gamma: Focusing parameter (0 gives cross-entropy).
        alpha: Foreground weight in the binary case (``1 - alpha`` for background); ``None`` disables.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        weights = _weights(target, fov)
        if logits.shape[1] == 1:
            truth = (target > 0).to(logits.dtype)
            log_p = F.logsigmoid(logits[:, 0])
            log_not_p = F.logsigmoid(-logits[:, 0])
            log_pt = truth * log_p + (1 - truth) * log_not_p
            values = -((1 - log_pt.exp()) ** self.gamma) * log_pt
            if self.alpha is not None:
                values = values * (truth * self.alpha + (1 - truth) * (1 - self.alpha))
        else:
            log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
            values = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        return _pixel_mean(values, weights)


class TverskyLoss(nn.Module):
    """Tversky loss (Salehi et al. 2017): ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` on soft counts.

    ``alpha = beta = 0.5`` is the soft Dice loss.

    Args:
        alpha: Weight of false positives.
        beta: Weight of false negatives (> alpha favours sensitivity, e.g. for thin vessels).
        smooth: Added to numerator and denominator; keeps empty patches defined.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        probabilities, truth = _probabilities_and_onehot(logits, target)
        weights = _weights(target, fov)[:, None]
        dims = (0, 2, 3)
        tp = (probabilities * truth * weights).sum(dims)
        fp = (probabilities * (1 - truth) * weights).sum(dims)
        fn = ((1 - probabilities) * truth * weights).sum(dims)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1 - index.mean()


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - (2 TP + s) / (2 TP + FP + FN + s)`` on soft counts (Milletari et al. 2016).

    Args:
        smooth: Added to numerator and denominator; keeps empty patches defined.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        probabilities, truth = _probabilities_and_onehot(logits, target)
        weights = _weights(target, fov)[:, None]
        dims = (0, 2, 3)
        intersection = (probabilities * truth * weights).sum(dims)
        total = ((probabilities + truth) * weights).sum(dims)
        return 1 - ((2 * intersection + self.smooth) / (total + self.smooth)).mean()


class CombinedLoss(nn.Module):
    """Weighted sum of a pixel loss and a region loss, e.g. BCE + Dice."""

    def __init__(self, first: nn.Module, second: nn.Module, first_weight: float = 1.0, second_weight: float = 1.0):
        super().__init__()
        self.first, self.second = first, second
        self.first_weight, self.second_weight = first_weight, second_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        return self.first_weight * self.first(logits, target, fov) + self.second_weight * self.second(
            logits, target, fov
        )


@LOSSES.register("bce")
def bce(pos_weight: float = 1.0) -> nn.Module:
    """Binary cross-entropy (softmax cross-entropy for more than 2 classes), inside the FOV."""
    return CrossEntropyLoss(pos_weight)


@LOSSES.register("ce")
def ce() -> nn.Module:
    """Softmax cross-entropy (binary cross-entropy for one logit), inside the FOV."""
    return CrossEntropyLoss()


@LOSSES.register("dice")
def dice(smooth: float = 1.0) -> nn.Module:
    """Soft Dice loss (mean over foreground classes), inside the FOV."""
    return DiceLoss(smooth)


@LOSSES.register("bce-dice")
def bce_dice(pos_weight: float = 1.0, smooth: float = 1.0, dice_weight: float = 1.0) -> nn.Module:
    """BCE (or softmax CE) + soft Dice, inside the FOV."""
    return CombinedLoss(CrossEntropyLoss(pos_weight), DiceLoss(smooth), 1.0, dice_weight)


@LOSSES.register("ce-dice")
def ce_dice(smooth: float = 1.0, dice_weight: float = 1.0) -> nn.Module:
    """Softmax cross-entropy + soft Dice (nnU-Net's default), inside the FOV."""
    return CombinedLoss(CrossEntropyLoss(), DiceLoss(smooth), 1.0, dice_weight)


@LOSSES.register("focal")
def focal(gamma: float = 2.0, alpha: float | None = None) -> nn.Module:
    """Focal loss (sigmoid or softmax), inside the FOV."""
    return FocalLoss(gamma, alpha)


@LOSSES.register("tversky")
def tversky(alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0) -> nn.Module:
    """Tversky loss (alpha weights false positives, beta false negatives), inside the FOV."""
    return TverskyLoss(alpha, beta, smooth)


def build_loss(name: str, loss_options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build registered loss ``name`` with the user's ``loss_options``.

    Raises:
        ConfigError: If the name is unknown or an option is not one the loss takes.
    """
    return LOSSES.build(name, options=loss_options)
