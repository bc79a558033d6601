"""CIFAR-10 and CIFAR-100 in the official python-pickle layout (the one torchvision reads).

Layout: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``<root>/cifar-100-python/{train, test, meta}``; ``<root>`` may also be that folder itself.

The files are Python pickles, as published: only load copies from the official archive (``data
download`` checks its MD5).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from pentad_core.data import RemoteFile
from pentad_core.errors import DataError, missing_file
from pentad_vision.data.base import ImageData, ImageSplit, split_train_val
from pentad_vision.registry import DATASETS

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

#: The official archives (``data download``), unpacked into the dataset folder.
CIFAR10_FILES = (
    RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        extract=True,
    ),
)
CIFAR100_FILES = (
    RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        extract=True,
    ),
)


def _find_folder(root: Path, folder: str, name: str) -> Path:
    for candidate in (root / folder, root):
        if candidate.is_dir() and any((candidate / f).is_file() for f in ("batches.meta", "meta")):
            return candidate
    raise missing_file(
        root / folder, f"{name} folder", f"Run `uv run apps/vision data download --dataset {name}` or pass --data-dir."
    )


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise missing_file(path, "CIFAR batch file", "The download is incomplete; run `data download` again.")
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(
            f"CIFAR file {path} is corrupt ({error}).", "Delete it and run `data download` again."
        ) from None


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    if "data" not in entry or label_key not in entry:
        raise DataError(f"CIFAR file {path} lacks the 'data' or {label_key!r} entry.", "Is it a CIFAR batch file?")
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR file {path}: 'data' must have shape (N, 3072), got {data.shape}.")
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"CIFAR file {path}: {len(data)} images but {len(labels)} labels.")
    return data.reshape(-1, 3, 32, 32), labels


def _load(root, name, folder, train_files, test_files, meta_file, names_key, label_key, mean, std, val_fraction, seed):
    base = _find_folder(Path(root), folder, name)
    meta = _unpickle(base / meta_file)
    if names_key not in meta:
        raise DataError(f"CIFAR meta file {base / meta_file} lacks {names_key!r}.")
    classes = [str(c) for c in meta[names_key]]

    def read(files: list[str]) -> ImageSplit:
        parts = [_batch(base / f, label_key) for f in files]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return ImageSplit(images, labels, classes)

    train, test = read(train_files), read(test_files)
    return split_train_val(name, train, test, val_fraction=val_fraction, seed=seed, mean=mean, std=std)


@DATASETS.register("cifar10", files=CIFAR10_FILES)
def load_cifar10(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """CIFAR-10 (official pickles): 50,000 train / 10,000 test, 32x32 RGB, 10 classes."""
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    return _load(
        root, "cifar10", "cifar-10-batches-py", train_files, ["test_batch"], "batches.meta",
        "label_names", "labels", CIFAR10_MEAN, CIFAR10_STD, val_fraction, seed,
    )  # fmt: skip


@DATASETS.register("cifar100", files=CIFAR100_FILES)
def load_cifar100(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """CIFAR-100 (official pickles, fine labels): 50,000 train / 10,000 test, 32x32 RGB, 100 classes."""
    return _load(
        root, "cifar100", "cifar-100-python", ["train"], ["test"], "meta",
        "fine_label_names", "fine_labels", CIFAR100_MEAN, CIFAR100_STD, val_fraction, seed,
    )  # fmt: skip


def write_fake_cifar(root: str | Path, *, num_train: int, num_test: int, num_classes: int = 10, seed: int = 0) -> Path:
    """Write a tiny CIFAR in the exact official on-disk format (for tests and examples).

    CIFAR-10 layout when ``num_classes == 10``, CIFAR-100 layout otherwise. Each class gets a
    distinct mean colour so that a model can learn something.

    Returns:
        The folder that was written.
    """
    rng = np.random.default_rng(seed)
    hundred = num_classes != 10
    base = Path(root) / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    base.mkdir(parents=True, exist_ok=True)
    colours = rng.integers(0, 256, size=(num_classes, 3))

    def make(n: int) -> tuple[np.ndarray, list[int]]:
        labels = (np.arange(n) % num_classes).tolist()
        noise = rng.integers(-40, 40, size=(n, 3, 32, 32))
        images = np.clip(colours[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
        return images.reshape(n, -1), labels

    def dump(name: str, entry: dict) -> None:
        with (base / name).open("wb") as handle:
            pickle.dump(entry, handle)

    names = [f"class_{i}" for i in range(num_classes)]
    if hundred:
        dump("meta", {"fine_label_names": names, "coarse_label_names": ["all"]})
        for name, n in (("train", num_train), ("test", num_test)):
            data, labels = make(n)
            dump(name, {"data": data, "fine_labels": labels, "coarse_labels": [0] * n})
    else:
        dump("batches.meta", {"label_names": names, "num_cases_per_batch": num_train // 5})
        per_batch = np.array_split(np.arange(num_train), 5)
        data, labels = make(num_train)
        for i, index in enumerate(per_batch, start=1):
            dump(f"data_batch_{i}", {"data": data[index], "labels": [labels[j] for j in index]})
        data, labels = make(num_test)
        dump("test_batch", {"data": data, "labels": labels})
    return base
