"""``mnist10k``: for copies of MNIST that hold only the official test split (10,000 images).

It trains and tests on a fixed stratified 80/20 split of them (per class, a seeded permutation; the
first 80% train) and says so in its notes. Same idx layout as ``mnist`` (:mod:`pentad_vision.data.idx`).
"""

from __future__ import annotations

from pathlib import Path

from pentad_vision.data.base import ImageData, split_train_val, stratified_split
from pentad_vision.data.idx import read_idx_split
from pentad_vision.data.mnist import MNIST_CLASSES, MNIST_FILES, MNIST_MEAN, MNIST_STD
from pentad_vision.registry import DATASETS


@DATASETS.register("mnist10k", files=MNIST_FILES[2:])
def load_mnist10k(root: str | Path, *, val_fraction: float = 0.0, seed: int = 0) -> ImageData:
    """MNIST's official test split only, split 80/20 stratified: 8,000 train / 2,000 test."""
    everything = read_idx_split(Path(root), "t10k", "mnist10k", MNIST_CLASSES)
    train_index, test_index = stratified_split(everything.labels.numpy(), 0.8, seed)
    note = (
        f"mnist10k: trains and tests on a stratified 80/20 split (seed {seed}) of MNIST's official "
        "10,000-image test split; accuracies are not comparable to the official MNIST test protocol"
    )
    return split_train_val(
        "mnist10k",
        everything.subset(train_index),
        everything.subset(test_index),
        val_fraction=val_fraction,
        seed=seed,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        notes=[note],
    )
