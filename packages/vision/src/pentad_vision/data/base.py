"""In-memory image datasets shared by every loader.

Images are held as one ``uint8`` tensor of shape ``(N, C, H, W)``: small (CIFAR-10 is 184 MB),
fast to index batch-wise, and the same layout whatever the file format was. Batch augmentations
run on the float batch inside the training step (see :mod:`pentad_vision.transforms`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pentad_core.errors import DataError

log = logging.getLogger(__name__)


class ImageSplit(Dataset):
    """One split of a classification dataset, in memory.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        labels: ``int64`` tensor ``(N,)`` with values in ``[0, len(classes))``.
        classes: Class names, index = label.
        transform: Optional per-sample transform on a ``uint8`` ``(C, H, W)`` tensor (e.g. TrivialAugment).
        paths: Optional source file of each image (for reports of mistakes).

    Indexing one item returns ``(image uint8 (C, H, W), label)``; fetching a list of indices (what
    :class:`~torch.utils.data.DataLoader` does through ``__getitems__``) returns the stacked batch
    ``(uint8 (B, C, H, W), int64 (B,))`` without a Python loop over samples.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}.")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}.")
        labels = labels.to(torch.int64)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise DataError(
                f"labels must lie in [0, {len(classes) - 1}] for {len(classes)} classes, "
                f"found {int(labels.min())}..{int(labels.max())}."
            )
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.transform = transform
        self.paths = list(paths) if paths is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.transform is not None:
            images = torch.stack([self.transform(image) for image in images])
        return images, self.labels[index]

    def subset(self, indices: np.ndarray | Sequence[int]) -> ImageSplit:
        """A new split holding ``indices`` (shares nothing mutable with this one)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return ImageSplit(self.images[index], self.labels[index], self.classes, self.transform, paths)

    def class_counts(self) -> list[int]:
        """Number of images per class."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


def _passthrough(batch):
    return batch


class ShardSampler(DistributedSampler):
    """Rank ``rank``'s share of an evaluation split: indices ``rank, rank + world, ...``, none repeated.

    :class:`~torch.utils.data.DistributedSampler` pads every rank to the same length with
    duplicates, which an evaluation would count twice; the shares here add up to the split exactly
    (the ranks' counts may differ by one). Lightning keeps a sampler of this class as it is.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


def make_loader(
    split: ImageSplit,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader that fetches whole batches through :meth:`ImageSplit.__getitems__`.

    Its ``generator`` (seeded with ``seed``) draws the shuffles; ``sampler`` replaces the default
    order (then ``shuffle`` must be False).
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        split,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=_passthrough,
        generator=generator,
        persistent_workers=num_workers > 0,
    )


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per class: the first ``round(fraction * n_c)`` of a seeded permutation go left.

    Args:
        labels: ``(N,)`` integer labels.
        fraction: Share of each class in the first part, in ``[0, 1]``.
        seed: Seed of ``numpy.random.default_rng``; the classes are visited in increasing order.

    Returns:
        ``(first, second)`` index arrays, each ordered class by class.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"split fraction must lie in [0, 1], got {fraction}.")
    rng = np.random.default_rng(seed)
    first: list[int] = []
    second: list[int] = []
    for label in np.unique(labels):
        index = rng.permutation(np.where(labels == label)[0])
        k = round(fraction * len(index))
        first += index[:k].tolist()
        second += index[k:].tolist()
    return np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)


@dataclass
class ImageData:
    """A classification dataset ready for training: splits, classes and normalisation.

    Attributes:
        name: Registry name.
        train: Training split.
        val: Validation split, or ``None`` when the recipe trains on all training images.
        test: Test split.
        classes: Class names.
        mean: Per-channel mean of the training images in ``[0, 1]`` units.
        std: Per-channel standard deviation in ``[0, 1]`` units.
        notes: Lines the CLI prints (e.g. how a split was made).
        skipped: Paths of unreadable images that were skipped (``skip_bad``).
    """

    name: str
    train: ImageSplit
    val: ImageSplit | None
    test: ImageSplit
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images; the larger side for non-square ones."""
        return int(max(self.train.images.shape[2:]))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        """One line: sizes of the splits and the image shape."""
        val = len(self.val) if self.val is not None else 0
        c, h, w = self.train.images.shape[1:]
        return (
            f"{self.name}: {len(self.train)} train / {val} val / {len(self.test)} test images, "
            f"{c}x{h}x{w}, {self.num_classes} classes"
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``uint8 (N, C, H, W)`` images in ``[0, 1]`` units."""
    mean = torch.zeros(images.shape[1], dtype=torch.float64)
    square = torch.zeros(images.shape[1], dtype=torch.float64)
    count = 0
    for start in range(0, len(images), 4096):  # chunks keep the float copy small
        chunk = images[start : start + 4096].to(torch.float64) / 255.0
        mean += chunk.sum(dim=(0, 2, 3))
        square += (chunk**2).sum(dim=(0, 2, 3))
        count += chunk.numel() // chunk.shape[1]
    mean /= max(count, 1)
    std = (square / max(count, 1) - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(max(v, 1e-3), 4) for v in std.tolist())


def split_train_val(
    name: str,
    train: ImageSplit,
    test: ImageSplit,
    *,
    val_fraction: float,
    seed: int,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    notes: list[str] | None = None,
    skipped: list[str] | None = None,
) -> ImageData:
    """Hold out a stratified ``val_fraction`` of ``train`` for validation and wrap everything up."""
    notes = list(notes or [])
    val = None
    if val_fraction > 0:
        rest, held = stratified_split(train.labels.numpy(), 1.0 - val_fraction, seed)
        train, val = train.subset(rest), train.subset(held)
        notes.append(f"validation: a stratified {val_fraction:.0%} of the training images (seed {seed})")
    if mean is None or std is None:
        mean, std = channel_stats(train.images)
    return ImageData(name, train, val, test, train.classes, tuple(mean), tuple(std), notes, list(skipped or []))
