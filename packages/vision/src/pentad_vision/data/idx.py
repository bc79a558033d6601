"""The IDX file format of MNIST and Fashion-MNIST: reading, locating and writing (for tests).

Layout: ``<root>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (also accepted: the
files directly in ``<root>``, or torchvision's ``<root>/MNIST/raw`` and ``<root>/FashionMNIST/raw``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from pentad_core.data import RemoteFile
from pentad_core.errors import DataError, missing_file
from pentad_core.files import atomic_write_bytes
from pentad_vision.data.base import ImageSplit


def idx_remote_files(url: str, md5s: dict[str, str], mirrors: tuple[str, ...] = ()) -> tuple[RemoteFile, ...]:
    """The gzip-compressed idx files ``<url><stem>.gz`` for ``data download``, stored under ``<root>/raw/``.

    ``mirrors`` are further base URLs (ending in ``/``) tried in order when ``url`` fails.
    """
    return tuple(
        RemoteFile(url + f"{stem}.gz", f"raw/{stem}.gz", md5=md5, mirrors=tuple(m + f"{stem}.gz" for m in mirrors))
        for stem, md5 in md5s.items()
    )


def find_idx_file(root: Path, stem: str, name: str) -> Path:
    """The idx file ``stem`` (plain or ``.gz``) of dataset ``name`` in one of the accepted folders.

    Raises:
        DataError: If it is in none of them; the message says how to download it.
    """
    for folder in (root / "raw", root, root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise missing_file(
        root / "raw" / f"{stem}.gz",
        f"{name} file",
        f"Run `uv run apps/vision data download {name}` or point --data-dir at the folder holding raw/.",
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


def read_idx_split(root: Path, prefix: str, name: str, classes: list[str]) -> ImageSplit:
    """The ``prefix`` split (``"train"`` or ``"t10k"``) of dataset ``name``: ``(N, 1, H, W)`` uint8 images.

    Raises:
        DataError: If a file is missing or malformed, or images and labels differ in number.
    """
    images = read_idx(find_idx_file(root, f"{prefix}-images-idx3-ubyte", name), 2051)
    labels = read_idx(find_idx_file(root, f"{prefix}-labels-idx1-ubyte", name), 2049)
    if len(images) != len(labels):
        raise DataError(f"{name} {prefix} split: {len(images)} images but {len(labels)} labels.")
    return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), classes)


def write_fake_idx(root: str | Path, *, num_train: int, num_test: int, seed: int = 0, gz: bool = True) -> Path:
    """Write tiny MNIST-format idx files to ``<root>/raw`` (``num_train == 0`` writes the test split only)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def write(path: Path, array: np.ndarray, magic: int) -> None:
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        data = header + array.astype(np.uint8).tobytes()
        if gz:
            atomic_write_bytes(f"{path}.gz", gzip.compress(data, mtime=0))
        else:
            atomic_write_bytes(path, data)

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
