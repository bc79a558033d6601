"""MNIST digits in torchvision's raw idx layout (read by :mod:`pentad_vision.data.idx`)."""

from __future__ import annotations

from pathlib import Path

from pentad_core.errors import DataError
from pentad_vision.data.base import ImageData, split_train_val
from pentad_vision.data.idx import idx_remote_files, read_idx_split
from pentad_vision.registry import DATASETS

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
MNIST_CLASSES = [str(i) for i in range(10)]

#: The official idx files (``data download``), stored under ``<root>/raw/``; train split first.
MNIST_FILES = idx_remote_files(
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)


@DATASETS.register("mnist", files=MNIST_FILES)
def load_mnist(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """MNIST digits (idx files): 60,000 train / 10,000 test, 28x28 grey, 10 classes."""
    root = Path(root)
    try:
        train = read_idx_split(root, "train", "mnist", MNIST_CLASSES)
    except DataError as error:
        if any((f / "t10k-images-idx3-ubyte.gz").is_file() for f in (root / "raw", root, root / "MNIST" / "raw")):
            raise DataError(
                f"{root} holds only MNIST's official test split.", "Use --dataset mnist10k, which splits it 80/20."
            ) from None
        raise error
    test = read_idx_split(root, "t10k", "mnist", MNIST_CLASSES)
    return split_train_val("mnist", train, test, val_fraction=val_fraction, seed=seed, mean=MNIST_MEAN, std=MNIST_STD)
