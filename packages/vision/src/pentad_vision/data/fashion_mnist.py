"""Fashion-MNIST in torchvision's raw idx layout (read by :mod:`pentad_vision.data.idx`)."""

from __future__ import annotations

from pathlib import Path

from pentad_vision.data.base import ImageData, split_train_val
from pentad_vision.data.idx import idx_remote_files, read_idx_split
from pentad_vision.registry import DATASETS

FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

#: The official idx files (``data download``), stored under ``<root>/raw/``; train split first. Over https
#: only: Zalando's S3 bucket through its REST endpoint (the website endpoint in the project's README
#: serves plain http only), then the same files in Zalando's GitHub repository; the MD5s are checked.
FASHION_FILES = idx_remote_files(
    "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
    {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",),
)


@DATASETS.register("fashion-mnist", files=FASHION_FILES)
def load_fashion_mnist(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """Fashion-MNIST (idx files): 60,000 train / 10,000 test, 28x28 grey, 10 clothing classes."""
    root = Path(root)
    train = read_idx_split(root, "train", "fashion-mnist", FASHION_CLASSES)
    test = read_idx_split(root, "t10k", "fashion-mnist", FASHION_CLASSES)
    return split_train_val(
        "fashion-mnist", train, test, val_fraction=val_fraction, seed=seed, mean=FASHION_MEAN, std=FASHION_STD
    )
