"""Patch sampling for training: random crops, optionally centred on foreground pixels.

:class:`PatchDataset` is a map-style torch dataset of ``patches_per_epoch`` random patches. The patch
at index ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``, so runs are
reproducible with any number of DataLoader workers and resume exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pentad_core.errors import ConfigError
from pentad_medseg.data.base import SegImage
from pentad_medseg.transforms import Normalize, Transform


def pad_to(array: np.ndarray, height: int, width: int, mode: str = "reflect") -> np.ndarray:
    """Pad the last two axes of ``array`` at the bottom/right up to at least ``height`` x ``width``."""
    pad_h, pad_w = max(0, height - array.shape[-2]), max(0, width - array.shape[-1])
    if not (pad_h or pad_w):
        return array
    if mode == "reflect" and (pad_h >= array.shape[-2] or pad_w >= array.shape[-1]):
        mode = "symmetric" if pad_h < 2 * array.shape[-2] and pad_w < 2 * array.shape[-1] else "constant"
    widths = [(0, 0)] * (array.ndim - 2) + [(0, pad_h), (0, pad_w)]
    return np.pad(array, widths, mode=mode)


class PatchSampler:
    """Chooses crop windows.

    Args:
        images: The training images.
        patch_size: Side of the square patch.
        foreground_fraction: Share of patches centred on a random foreground pixel (the rest are uniform).
    """

    def __init__(self, images: Sequence[SegImage], patch_size: int, foreground_fraction: float = 0.0) -> None:
        if patch_size < 8:
            raise ConfigError(f"patch_size must be at least 8, got {patch_size}.")
        if not 0 <= foreground_fraction <= 1:
            raise ConfigError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}.")
        self.images = list(images)
        self.patch_size = patch_size
        self.foreground_fraction = foreground_fraction
        # Flat indices of foreground pixels, computed once: drawing from them is O(1) per patch.
        self.foreground = [
            np.flatnonzero((item.mask > 0) & item.fov) if item.mask is not None else np.empty(0, np.int64)
            for item in self.images
        ]

    def window(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """``(image index, top, left)`` of one patch (coordinates may need padding for small images)."""
        index = int(rng.integers(len(self.images)))
        height, width = self.images[index].shape
        size = self.patch_size
        max_top, max_left = max(0, height - size), max(0, width - size)
        candidates = self.foreground[index]
        if self.foreground_fraction > 0 and candidates.size and rng.random() < self.foreground_fraction:
            centre = int(candidates[rng.integers(candidates.size)])
            cy, cx = divmod(centre, width)
            top = int(np.clip(cy - size // 2, 0, max_top))
            left = int(np.clip(cx - size // 2, 0, max_left))
        else:
            top, left = int(rng.integers(max_top + 1)), int(rng.integers(max_left + 1))
        return index, top, left

    def crop(self, index: int, top: int, left: int) -> dict[str, np.ndarray]:
        """The patch at a window, padded when the image is smaller than the patch."""
        item, size = self.images[index], self.patch_size
        image = pad_to(item.image, top + size, left + size)[:, top : top + size, left : left + size]
        mask = pad_to(item.mask, top + size, left + size)[top : top + size, left : left + size]
        fov = pad_to(item.fov, top + size, left + size, mode="constant")[top : top + size, left : left + size]
        return {"image": image, "mask": mask, "fov": fov}


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches as tensors.

    Args:
        images: Training images (with masks).
        patch_size: Side of the square patch.
        patches_per_epoch: Length of one epoch.
        augment: Applied to each raw patch before normalisation.
        normalize: Per-channel normalisation.
        foreground_fraction: See :class:`PatchSampler`.
        seed: Base seed.

    Items are ``(image (C, P, P) float32, mask (P, P) int64, fov (P, P) bool)``.
    """

    def __init__(
        self,
        images: Sequence[SegImage],
        patch_size: int,
        patches_per_epoch: int,
        augment: Transform | None = None,
        normalize: Normalize | None = None,
        foreground_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if any(item.mask is None for item in images):
            raise ConfigError("training images need masks.")
        if patches_per_epoch < 1:
            raise ConfigError(f"patches_per_epoch must be positive, got {patches_per_epoch}.")
        self.sampler = PatchSampler(images, patch_size, foreground_fraction)
        self.patches_per_epoch = patches_per_epoch
        self.augment = augment
        self.normalize = normalize
        self.seed = seed

    def __len__(self) -> int:
        """Patches per epoch (item numbers beyond it address later epochs)."""
        return self.patches_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch ``index % patches_per_epoch`` of epoch ``index // patches_per_epoch``."""
        epoch, position = divmod(int(index), self.patches_per_epoch)
        rng = np.random.default_rng([self.seed, epoch, position])
        sample = self.sampler.crop(*self.sampler.window(rng))
        if self.augment is not None:
            sample = self.augment(sample, rng)
        if self.normalize is not None:
            sample = self.normalize(sample)
        return (
            torch.from_numpy(np.ascontiguousarray(sample["image"], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.int64)),
            torch.from_numpy(np.ascontiguousarray(sample["fov"], dtype=bool)),
        )


def process_share() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in a running ``torch.distributed`` group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class PatchOrder(torch.utils.data.Sampler):
    """The training loader's sampler: this process's item numbers of :class:`PatchDataset`, resumable.

    Epoch ``e`` yields ``e * patches_per_epoch + i`` for ``i = rank, rank + world_size, ...`` (one
    process: every ``i``; under DDP every process takes ``ceil(patches_per_epoch / world_size)``,
    wrapping around to the epoch's first patches when it does not divide evenly). The module reports
    each finished batch (:meth:`advance`), so the state (:meth:`state_dict`: the epoch and the patches
    of it already trained on) is exact at any checkpoint; after :meth:`load_state_dict` iteration
    continues with the next patch.

    Args:
        patches_per_epoch: Patches in one epoch (over all processes).
    """

    def __init__(self, patches_per_epoch: int) -> None:
        self.patches_per_epoch = patches_per_epoch
        self.epoch = 0
        self.consumed = 0

    def _share(self) -> list[int]:
        # Every process takes the same number of patches (DDP steps in lock-step): when the epoch does
        # not divide evenly, the last round wraps around to the epoch's first patches, as
        # Lightning's DistributedSampler pads.
        rank, world = process_share()
        rounds = -(-self.patches_per_epoch // world)
        return [(rank + world * k) % self.patches_per_epoch for k in range(rounds)]

    def __len__(self) -> int:
        return len(self._share())

    def __iter__(self):
        epoch, start = self.epoch, self.consumed
        offset = epoch * self.patches_per_epoch
        for position in self._share()[start:]:
            yield offset + position

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (Lightning calls this at each epoch start); a no-op when already there."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def advance(self, patches: int, epoch_done: bool) -> None:
        """Record ``patches`` trained on; after the epoch's last batch the next epoch begins."""
        if epoch_done:
            self.epoch, self.consumed = self.epoch + 1, 0
        else:
            self.consumed += patches

    def state_dict(self) -> dict[str, int]:
        """The epoch and the patches of it this process has trained on."""
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


class PatchLoader(torch.utils.data.DataLoader):
    """The training DataLoader; Lightning saves its :class:`PatchOrder` state in every checkpoint and
    restores it before the first batch is drawn on ``--resume``."""

    def state_dict(self) -> dict[str, int]:
        """The sampler's state."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the sampler's state."""
        self.sampler.load_state_dict(state)


class ImageShard(torch.utils.data.Sampler):
    """Whole-image indices of this process: ``rank, rank + world_size, ...`` (all of them in one process).

    Unlike Lightning's ``DistributedSampler`` it never pads, so no image is evaluated twice; the
    module gathers every process's images before computing metrics.
    """

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        rank, world = process_share()
        return len(range(rank, self.count, world))

    def __iter__(self):
        rank, world = process_share()
        return iter(range(rank, self.count, world))


class ImageDataset(torch.utils.data.Dataset):
    """Whole images for validation/testing: ``(image (C, H, W), mask (H, W), fov (H, W), index)``."""

    def __init__(self, images: Sequence[SegImage], normalize: Normalize | None = None) -> None:
        self.images = list(images)
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        item = self.images[index]
        image = self.normalize({"image": item.image})["image"] if self.normalize is not None else item.image
        mask = item.mask if item.mask is not None else np.zeros(item.shape, np.int64)
        return torch.from_numpy(image), torch.from_numpy(mask), torch.from_numpy(item.fov), index
