"""The CIFAR batch files in the official python-pickle layout (the one torchvision reads): reading
them (for ``cifar10`` and ``cifar100``) and writing tiny ones (for tests).

Layout: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``<root>/cifar-100-python/{train, test, meta}``; ``<root>`` may also be that folder itself.

The files are Python pickles, as published. They are read with :class:`DataOnlyUnpickler`, which
builds only plain containers (dict, list, tuple, str, bytes, numbers) and numpy arrays: a file
whose unpickling would import or call anything else (a ``__reduce__`` payload) is refused with a
:class:`~pentad_core.errors.DataError` before anything runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from pentad_core.errors import DataError, missing_file
from pentad_core.files import atomic_write_bytes
from pentad_vision.data.base import ImageData, ImageSplit, split_train_val


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that is not data (its name is the message)."""


class DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; every other global is refused (nothing can run).

    Plain containers and numbers need no global; numpy arrays need exactly the globals listed in
    :attr:`ALLOWED` (``_reconstruct``, ``_frombuffer``, ``ndarray``, ``dtype``, ``scalar`` and, for
    bytes pickled with protocol 2, ``_codecs.encode``). A pickle asking for any other (``os.system``, ``builtins.eval``,
    ...) raises :class:`pickle.UnpicklingError` before that global is even imported.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise RefusedGlobal(f"{module}.{name}")


def find_folder(root: Path, folder: str, name: str) -> Path:
    """The folder holding dataset ``name``'s batches: ``<root>/<folder>`` or ``root`` itself.

    Raises:
        DataError: If neither holds a meta file.
    """
    for candidate in (root / folder, root):
        if candidate.is_dir() and any((candidate / f).is_file() for f in ("batches.meta", "meta")):
            return candidate
    raise missing_file(
        root / folder, f"{name} folder", f"Run `uv run apps/vision data download {name}` or pass --data-dir."
    )


def unpickle(path: Path) -> dict:
    """One CIFAR batch or meta file, as published (a Python pickle, read with :class:`DataOnlyUnpickler`).

    Raises:
        DataError: If the file is missing or corrupt, or asks for anything but data (nothing of it runs).
    """
    if not path.is_file():
        raise missing_file(path, "CIFAR batch file", "The download is incomplete; run `data download` again.")
    try:
        with path.open("rb") as handle:
            content = DataOnlyUnpickler(handle, encoding="latin1").load()
    except RefusedGlobal as error:
        raise DataError(
            f"CIFAR file {path} asks to load {error}, not just arrays and lists: refused, nothing in it was run.",
            "Use the official archive (`data download`).",
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(
            f"CIFAR file {path} is corrupt ({error}).", "Delete it and run `data download` again."
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"CIFAR file {path} holds a {type(content).__name__}, not a dict.", "Is it a CIFAR batch file?")
    return content


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels (under ``label_key``) of one batch file."""
    entry = unpickle(path)
    if "data" not in entry or label_key not in entry:
        raise DataError(f"CIFAR file {path} lacks the 'data' or {label_key!r} entry.", "Is it a CIFAR batch file?")
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR file {path}: 'data' must have shape (N, 3072), got {data.shape}.")
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"CIFAR file {path}: {len(data)} images but {len(labels)} labels.")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(
    root, name, folder, train_files, test_files, meta_file, names_key, label_key, mean, std, val_fraction, seed
) -> ImageData:
    """Dataset ``name`` from its batch files: the class names from ``meta_file[names_key]``, the
    train and test splits from ``train_files`` and ``test_files``, a validation split carved from train.

    Raises:
        DataError: If the folder or a file is missing, corrupt or lacks an entry.
    """
    base = find_folder(Path(root), folder, name)
    meta = unpickle(base / meta_file)
    if names_key not in meta:
        raise DataError(f"CIFAR meta file {base / meta_file} lacks {names_key!r}.")
    classes = [str(c) for c in meta[names_key]]

    def read(files: list[str]) -> ImageSplit:
        parts = [read_batch(base / f, label_key) for f in files]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return ImageSplit(images, labels, classes)

    train, test = read(train_files), read(test_files)
    return split_train_val(name, train, test, val_fraction=val_fraction, seed=seed, mean=mean, std=std)


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
        atomic_write_bytes(base / name, pickle.dumps(entry))

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
