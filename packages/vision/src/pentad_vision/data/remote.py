"""Official download locations and checksums of the datasets (used by ``data download``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One file to download: where from, what to call it, its MD5, and whether to unpack it."""

    url: str
    filename: str
    md5: str
    extract: bool = False


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: dataset name -> files; paths are relative to the dataset folder (``raw/`` for the idx layouts).
SOURCES: dict[str, tuple[Source, ...]] = {
    "cifar10": (
        Source(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            extract=True,
        ),
    ),
    "cifar100": (
        Source(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            extract=True,
        ),
    ),
    "mnist": (
        Source(
            _MNIST + "train-images-idx3-ubyte.gz", "raw/train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"
        ),
        Source(
            _MNIST + "train-labels-idx1-ubyte.gz", "raw/train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"
        ),
        Source(
            _MNIST + "t10k-images-idx3-ubyte.gz", "raw/t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"
        ),
        Source(
            _MNIST + "t10k-labels-idx1-ubyte.gz", "raw/t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"
        ),
    ),
    "fashion-mnist": (
        Source(
            _FASHION + "train-images-idx3-ubyte.gz",
            "raw/train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        Source(
            _FASHION + "train-labels-idx1-ubyte.gz",
            "raw/train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        Source(
            _FASHION + "t10k-images-idx3-ubyte.gz", "raw/t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"
        ),
        Source(
            _FASHION + "t10k-labels-idx1-ubyte.gz", "raw/t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"
        ),
    ),
}
SOURCES["mnist10k"] = SOURCES["mnist"][2:]
