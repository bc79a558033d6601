"""CIFAR-100 in the official python-pickle layout: ``<root>/cifar-100-python/{train, test, meta}``
(or that folder itself), read by :mod:`pentad_vision.data.cifar_pickle`; the fine labels."""

from __future__ import annotations

from pathlib import Path

from pentad_core.data import RemoteFile
from pentad_vision.data.base import ImageData
from pentad_vision.data.cifar_pickle import load_cifar
from pentad_vision.registry import DATASETS

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

#: The official archive (``data download``), unpacked into the dataset folder.
CIFAR100_FILES = (
    RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        extract=True,
    ),
)


@DATASETS.register("cifar100", files=CIFAR100_FILES)
def load_cifar100(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """CIFAR-100 (official pickles, fine labels): 50,000 train / 10,000 test, 32x32 RGB, 100 classes."""
    return load_cifar(
        root, "cifar100", "cifar-100-python", ["train"], ["test"], "meta",
        "fine_label_names", "fine_labels", CIFAR100_MEAN, CIFAR100_STD, val_fraction, seed,
    )  # fmt: skip
