"""Classification metrics: top-k accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
        self.loss_sum = 0.0  # summed cross-entropy (float64)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of ``logits (B, classes)`` and integer ``targets (B,)``."""
        logits, targets = logits.detach().cpu(), targets.detach().cpu().long()
        predictions = logits.argmax(dim=1)
        index = targets * self.num_classes + predictions
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        self.topk_hits += topk_correct(logits, targets, self.topk)
        self.loss_sum += float(F.cross_entropy(logits.float(), targets, reduction="sum").double())

    def merge_ranks(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the counts of every process of a distributed run (``reduce``: an all-reduce sum).

        Afterwards each process holds the counts of the whole split, so :meth:`compute` gives the
        same values on every rank; call it once per evaluation (it is a collective: all ranks call it).
        """
        counts = torch.cat([self.confusion.flatten(), torch.tensor([self.topk_hits])])
        counts = reduce(counts).long()
        self.confusion = counts[:-1].view(self.num_classes, self.num_classes).clone()
        self.topk_hits = int(counts[-1])
        self.loss_sum = float(reduce(torch.tensor([self.loss_sum], dtype=torch.float64))[0])

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def per_class_accuracy(self) -> torch.Tensor:
        """Recall of each class (``nan`` for a class absent from the targets)."""
        totals = self.confusion.sum(dim=1).double()
        return self.confusion.diag().double() / totals.where(totals > 0, torch.tensor(float("nan")))

    def compute(self) -> dict[str, float]:
        """``acc`` (top-1), ``top{k}``, ``balanced_acc`` (mean per-class accuracy), ``loss`` (mean cross-entropy)."""
        total = max(self.count, 1)
        per_class = self.per_class_accuracy()
        return {
            "acc": float(self.confusion.diag().sum()) / total,
            f"top{self.topk}": self.topk_hits / total,
            "balanced_acc": float(per_class[~per_class.isnan()].mean()) if (~per_class.isnan()).any() else 0.0,
            "loss": self.loss_sum / total,
        }
