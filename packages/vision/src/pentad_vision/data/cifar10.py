"""CIFAR-10 in the official python-pickle layout: ``<root>/cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}`` (or that folder itself), read by :mod:`pentad_vision.data.cifar_pickle`."""

from __future__ import annotations

from pathlib import Path

from pentad_core.data import RemoteFile
from pentad_vision.data.base import ImageData
from pentad_vision.data.cifar_pickle import load_cifar
from pentad_vision.registry import DATASETS

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.2435, 0.2616)

#: The official archive (``data download``), unpacked into the dataset folder.
CIFAR10_FILES = (
    RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        extract=True,
    ),
)


@DATASETS.register("cifar10", files=CIFAR10_FILES)
def load_cifar10(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """CIFAR-10 (official pickles): 50,000 train / 10,000 test, 32x32 RGB, 10 classes."""
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    return load_cifar(
        root, "cifar10", "cifar-10-batches-py", train_files, ["test_batch"], "batches.meta",
        "label_names", "labels", CIFAR10_MEAN, CIFAR10_STD, val_fraction, seed,
    )  # fmt: skip
