"""MNIST and Fashion-MNIST in torchvision's raw idx layout, and the ``mnist10k`` split.

Layout: ``<root>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (also accepted: the
files directly in ``<root>``, or torchvision's ``<root>/MNIST/raw``).

``mnist10k`` is for copies that hold only the official test split (10,000 images): it trains and
tests on a fixed stratified 80/20 split of them (per class, a seeded permutation; the first 80%
train) and says so in its notes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from pentad_core.data import RemoteFile
from pentad_core.errors import DataError, missing_file
from pentad_vision.data.base import ImageData, ImageSplit, split_train_val, stratified_split
from pentad_vision.registry import DATASETS

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
MNIST_CLASSES = [str(i) for i in range(10)]

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _idx_files(url: str, md5s: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(url + f"{stem}.gz", f"raw/{stem}.gz", md5=md5) for stem, md5 in md5s.items())


#: The official idx files (``data download``), stored under ``<root>/raw/``; train split first.
MNIST_FILES = _idx_files(
    _MNIST_URL,
    {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)
FASHION_FILES = _idx_files(
    _FASHION_URL,
    {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
)
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


def _idx_file(root: Path, stem: str, name: str) -> Path:
    for folder in (root / "raw", root, root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise missing_file(
        root / "raw" / f"{stem}.gz",
        f"{name} file",
        f"Run `uv run apps/vision data download --dataset {name}` or point --data-dir at the folder holding raw/.",
    )


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) into a ``uint8`` array.

    Args:
        path: The file.
        expected_magic: 2051 for images (N, H, W), 2049 for labels (N,).

    Raises:
        DataError: If the file is truncated or not of the expected kind.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"idx file {path} cannot be read ({error}).", "Delete it and download it again.") from None
    if len(raw) < 8:
        raise DataError(f"idx file {path} is truncated ({len(raw)} bytes).", "Delete it and download it again.")
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == 2051 else "labels"
        raise DataError(f"idx file {path} has magic number {magic}, not {expected_magic} ({kind}).")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    size = int(np.prod(shape))
    if len(raw) - offset != size:
        raise DataError(f"idx file {path} holds {len(raw) - offset} bytes of data, expected {size} for shape {shape}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _read_split(root: Path, prefix: str, name: str, classes: list[str]) -> ImageSplit:
    images = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte", name), 2051)
    labels = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte", name), 2049)
    if len(images) != len(labels):
        raise DataError(f"{name} {prefix} split: {len(images)} images but {len(labels)} labels.")
    return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), classes)


def _load_full(root, name, classes, mean, std, val_fraction, seed) -> ImageData:
    root = Path(root)
    try:
        train = _read_split(root, "train", name, classes)
    except DataError as error:
        if name == "mnist" and any(
            (f / "t10k-images-idx3-ubyte.gz").is_file() for f in (root / "raw", root, root / "MNIST" / "raw")
        ):
            raise DataError(
                f"{root} holds only MNIST's official test split.", "Use --dataset mnist10k, which splits it 80/20."
            ) from None
        raise error
    test = _read_split(root, "t10k", name, classes)
    return split_train_val(name, train, test, val_fraction=val_fraction, seed=seed, mean=mean, std=std)


@DATASETS.register("mnist", files=MNIST_FILES)
def load_mnist(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """MNIST digits (idx files): 60,000 train / 10,000 test, 28x28 grey, 10 classes."""
    return _load_full(root, "mnist", MNIST_CLASSES, MNIST_MEAN, MNIST_STD, val_fraction, seed)


@DATASETS.register("fashion-mnist", files=FASHION_FILES)
def load_fashion_mnist(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """Fashion-MNIST (idx files): 60,000 train / 10,000 test, 28x28 grey, 10 clothing classes."""
    return _load_full(root, "fashion-mnist", FASHION_CLASSES, FASHION_MEAN, FASHION_STD, val_fraction, seed)


@DATASETS.register("mnist10k", files=MNIST_FILES[2:])
def load_mnist10k(root: str | Path, *, val_fraction: float = 0.0, seed: int = 0) -> ImageData:
    """MNIST's official test split only, split 80/20 stratified: 8,000 train / 2,000 test."""
    everything = _read_split(Path(root), "t10k", "mnist10k", MNIST_CLASSES)
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


def write_fake_idx(root: str | Path, *, num_train: int, num_test: int, seed: int = 0, gz: bool = True) -> Path:
    """Write tiny MNIST-format idx files to ``<root>/raw`` (``num_train == 0`` writes the test split only)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def write(path: Path, array: np.ndarray, magic: int) -> None:
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        data = header + array.astype(np.uint8).tobytes()
        if gz:
            with gzip.open(f"{path}.gz", "wb") as handle:
                handle.write(data)
        else:
            path.write_bytes(data)

    for prefix, n in (("train", num_train), ("t10k", num_test)):
        if n == 0:
            continue
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, label in enumerate(labels):  # a bright bar whose row encodes the class
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        write(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write(raw / f"{prefix}-labels-idx1-ubyte", labels, 2049)
    return raw
