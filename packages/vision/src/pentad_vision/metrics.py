"""Classification metrics: top-k accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """How many of ``targets (B,)`` are among the ``k`` largest ``logits (B, classes)``."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == targets[:, None]).any(dim=1).sum())


class ClassificationMeter:
    """Accumulates predictions over batches.

    Args:
        num_classes: Number of classes.
        topk: The ``k`` of the top-k accuracy reported besides top-1.

    Example:
        >>> meter = ClassificationMeter(3)
        >>> meter.update(torch.tensor([[2.0, 1, 0], [0, 2, 1]]), torch.tensor([0, 2]))
        >>> meter.compute()["acc"]
        0.5
    """

    def __init__(self, num_classes: int, topk: int = 5) -> None:
        self.num_classes = num_classes
        self.topk = topk
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)  # rows: truth, columns: prediction
        self.topk_hits = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of ``logits (B, classes)`` and integer ``targets (B,)``."""
        logits, targets = logits.detach().cpu(), targets.detach().cpu().long()
        predictions = logits.argmax(dim=1)
        index = targets * self.num_classes + predictions
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        self.topk_hits += topk_correct(logits, targets, self.topk)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def per_class_accuracy(self) -> torch.Tensor:
        """Recall of each class (``nan`` for a class absent from the targets)."""
        totals = self.confusion.sum(dim=1).double()
        return self.confusion.diag().double() / totals.where(totals > 0, torch.tensor(float("nan")))

    def compute(self) -> dict[str, float]:
        """``acc`` (top-1), ``top{k}``, ``balanced_acc`` (mean per-class accuracy)."""
        total = max(self.count, 1)
        per_class = self.per_class_accuracy()
        return {
            "acc": float(self.confusion.diag().sum()) / total,
            f"top{self.topk}": self.topk_hits / total,
            "balanced_acc": float(per_class[~per_class.isnan()].mean()) if (~per_class.isnan()).any() else 0.0,
        }
