"""Dataset loaders: the official on-disk formats (written here in miniature) and their errors."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pentad_core.errors import ConfigError, DataError
from pentad_core.testing import dataset_folder, requires_dataset
from pentad_vision.data import load_dataset, make_loader, stratified_split
from pentad_vision.data.cifar_pickle import read_batch, write_fake_cifar
from pentad_vision.data.idx import read_idx, write_fake_idx
from pentad_vision.registry import DATASETS


def test_registry_lists_every_dataset():
    assert set(DATASETS.names()) >= {
        "cifar10", "cifar100", "mnist", "fashion-mnist", "mnist10k", "imagefolder", "cifar10-jpeg", "synthetic",
    }  # fmt: skip


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_pickles_load_with_shapes_classes_and_split(tmp_path, num_classes):
    write_fake_cifar(
        tmp_path, num_train=200 if num_classes == 10 else 400, num_test=num_classes * 2, num_classes=num_classes
    )
    name = "cifar10" if num_classes == 10 else "cifar100"
    data = load_dataset(name, tmp_path, val_fraction=0.1)
    n_train = 200 if num_classes == 10 else 400
    assert len(data.train) + len(data.val) == n_train
    assert len(data.val) == pytest.approx(0.1 * n_train, abs=num_classes)
    assert data.test.images.shape == (num_classes * 2, 3, 32, 32)
    assert data.test.images.dtype == torch.uint8
    assert data.num_classes == num_classes and data.classes[1] == "class_1"
    assert data.in_channels == 3 and data.image_size == 32


def test_cifar_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="cifar10 folder not found"):
        load_dataset("cifar10", tmp_path)
    base = write_fake_cifar(tmp_path, num_train=50, num_test=10)
    (base / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        load_dataset("cifar10", tmp_path)
    (base / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


class _OpensAFile:
    """Unpickling this creates ``path``: the smallest payload that shows whether code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_cifar_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys):
    from pentad_vision.cli import app

    marker = tmp_path / "code-ran"
    base = write_fake_cifar(tmp_path / "data", num_train=50, num_test=10)
    honest = pickle.loads((base / "data_batch_2").read_bytes())
    (base / "data_batch_2").write_bytes(pickle.dumps({**honest, "labels": _OpensAFile(marker)}))
    with pytest.raises(DataError, match=r"data_batch_2 asks to load (io|builtins)\.open.*nothing in it was run"):
        load_dataset("cifar10", tmp_path / "data")
    assert not marker.exists()

    capsys.readouterr()
    out = tmp_path / "run"
    code = app.main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ".open, not just arrays" in err[0], err
    assert not marker.exists()


class _Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), as the published CIFAR pickles (cPickle) hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def test_cifar_pickles_written_by_python2_and_by_each_protocol_load(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [0, 1, 2, 0, 1, 2], b"data": data,
             b"filenames": [b"a.png"] * 6}  # fmt: skip
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(batch)  # the official files: Python 2 str keys and array bytes
    path = tmp_path / "py2"
    path.write_bytes(buffer.getvalue())
    images, labels = read_batch(path, "labels")
    assert np.array_equal(images.reshape(6, -1), data) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"protocol{protocol}"
        path.write_bytes(pickle.dumps({"labels": np.arange(6) % 3, "data": data}, protocol=protocol))
        images, labels = read_batch(path, "labels")
        assert np.array_equal(images.reshape(6, -1), data) and labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_mnist_and_fashion_idx_layout(tmp_path):
    write_fake_idx(tmp_path, num_train=60, num_test=20)
    data = load_dataset("mnist", tmp_path, val_fraction=0.0)
    assert data.train.images.shape == (60, 1, 28, 28) and len(data.test) == 20
    assert data.val is None and data.mean == (0.1307,)
    fashion = load_dataset("fashion-mnist", tmp_path, val_fraction=0.5)
    assert len(fashion.train) == 30 and len(fashion.val) == 30
    assert fashion.classes[0] == "T-shirt/top"


def test_mnist_with_only_the_test_split_points_to_mnist10k(tmp_path):
    write_fake_idx(tmp_path, num_train=0, num_test=100)
    with pytest.raises(DataError, match="mnist10k"):
        load_dataset("mnist", tmp_path)
    data = load_dataset("mnist10k", tmp_path)
    assert len(data.train) == 80 and len(data.test) == 20
    assert data.train.class_counts() == [8] * 10 and data.test.class_counts() == [2] * 10
    assert "80/20" in data.notes[0]
    train_paths = set(map(bytes, data.train.images.flatten(1).numpy()))
    assert not train_paths & set(map(bytes, data.test.images.flatten(1).numpy())), "train and test overlap"


def test_idx_errors(tmp_path):
    raw = write_fake_idx(tmp_path, num_train=0, num_test=10, gz=False)
    images = raw / "t10k-images-idx3-ubyte"
    with pytest.raises(DataError, match="magic number 2051, not 2049"):
        read_idx(images, 2049)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist10k", tmp_path)
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DataError, match="expected 7840"):
        read_idx(images, 2051)


def test_stratified_split_is_exact_and_reproducible():
    labels = np.repeat(np.arange(3), [10, 5, 7])
    first, second = stratified_split(labels, 0.8, seed=0)
    assert np.bincount(labels[first]).tolist() == [8, 4, 6]
    assert np.bincount(labels[second]).tolist() == [2, 1, 1]
    assert sorted(first.tolist() + second.tolist()) == list(range(22))
    again, _ = stratified_split(labels, 0.8, seed=0)
    assert np.array_equal(first, again)


def _write_images(folder: Path, per_class: int, size=(12, 12), classes=("cat", "dog")) -> None:
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
            pixels[..., index] = 255
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def test_imagefolder_with_split_folders_and_flat(tmp_path):
    _write_images(tmp_path / "split" / "train", 10)
    _write_images(tmp_path / "split" / "test", 3)
    data = load_dataset("imagefolder", tmp_path / "split", val_fraction=0.2)
    assert data.classes == ["cat", "dog"]
    assert (len(data.train), len(data.val), len(data.test)) == (16, 4, 6)
    assert data.train.images.shape[1:] == (3, 12, 12)
    assert data.test.paths[0].endswith("cat/0.png")
    _write_images(tmp_path / "flat", 10)
    flat = load_dataset("imagefolder", tmp_path / "flat", val_fraction=0.0, test_fraction=0.3, image_size=8, channels=1)
    assert (len(flat.train), len(flat.test)) == (14, 6)
    assert flat.train.images.shape[1:] == (1, 8, 8)


def test_imagefolder_reports_corrupt_images_and_skips_only_when_asked(tmp_path):
    _write_images(tmp_path, 5)
    bad = tmp_path / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"1 image\(s\).*broken\.jpg.*--skip-bad"):
        load_dataset("imagefolder", tmp_path)
    data = load_dataset("imagefolder", tmp_path, skip_bad=True, val_fraction=0.0)
    assert len(data.train) + len(data.test) == 10
    assert any("broken.jpg" in path for path in data.skipped)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    _write_images(tmp_path, 3, size=(12, 12))
    Image.new("RGB", (20, 10)).save(tmp_path / "cat" / "wide.png")
    with pytest.raises(ConfigError, match="--image-size"):
        load_dataset("imagefolder", tmp_path)
    data = load_dataset("imagefolder", tmp_path, image_size=16, val_fraction=0.0, test_fraction=0.25)
    assert data.train.images.shape[2:] == (16, 16)
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset("imagefolder", tmp_path / "missing")


def test_cifar10_jpeg_archive_is_extracted_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PENTAD_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "src" / "cifar10-jpeg"
    _write_images(source / "train", 6, size=(32, 32), classes=("airplane", "bird"))
    _write_images(source / "test", 2, size=(32, 32), classes=("airplane", "bird"))
    archive_dir = tmp_path / "data"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar10-jpeg")
    data = load_dataset("cifar10-jpeg", archive_dir, val_fraction=0.0)
    assert (len(data.train), len(data.test)) == (12, 4)
    assert (tmp_path / "cache" / "cifar10-jpeg" / "extracted" / ".complete").is_file()
    assert list((tmp_path / "cache" / "cifar10-jpeg" / "decoded").glob("*.npz")), "decoded cache not written"
    again = load_dataset("cifar10-jpeg", archive_dir, val_fraction=0.0)  # from the caches
    assert torch.equal(again.train.images, data.train.images)
    with pytest.raises(DataError, match="CIFAR-10 JPEG archive not found"):
        load_dataset("cifar10-jpeg", tmp_path / "nowhere")


def test_synthetic_is_deterministic_balanced_and_batches_without_a_loop():
    a = load_dataset("synthetic", num_train=80, num_test=40, num_classes=4, seed=3)
    b = load_dataset("synthetic", num_train=80, num_test=40, num_classes=4, seed=3)
    assert torch.equal(a.train.images, b.train.images)
    assert sum(a.test.class_counts()) == 40 and min(a.train.class_counts() + a.val.class_counts()) > 0
    loader = make_loader(a.train, batch_size=16, shuffle=True)
    images, labels = next(iter(loader))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (16,)
    with pytest.raises(ConfigError, match="num_classes"):
        load_dataset("synthetic", num_classes=1)
    with pytest.raises(ConfigError, match="unknown option 'skip_bad'"):
        load_dataset("synthetic", skip_bad=True, num_train=10, num_test=10)


def test_bad_labels_are_rejected():
    from pentad_vision.data import ImageSplit

    with pytest.raises(DataError, match="labels must lie"):
        ImageSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]), ["a", "b"])
    with pytest.raises(DataError, match="uint8"):
        ImageSplit(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), ["a", "b"])


@requires_dataset("mnist")
def test_real_mnist10k_matches_the_anchor_protocol():
    folder = dataset_folder("mnist")
    data = load_dataset("mnist10k", folder)
    assert (len(data.train), len(data.test)) == (8000, 2000)
    with gzip.open(folder / "raw" / "t10k-labels-idx1-ubyte.gz") as handle:
        raw = handle.read()[8:]
    labels = np.frombuffer(raw, np.uint8)
    assert data.test.class_counts() == [int(n - round(0.8 * n)) for n in np.bincount(labels)]


def test_every_download_is_https_with_a_checksum():
    files = [(name, remote) for name in DATASETS.names() for remote in DATASETS.info(name).files]
    assert {name for name, _ in files} >= {"cifar10", "cifar100", "mnist", "mnist10k", "fashion-mnist"}
    for name, remote in files:
        assert remote.md5 or remote.sha256, f"{name}: {remote.filename} has no checksum"
        for url in (remote.url, *remote.mirrors):
            assert url.startswith("https://"), f"{name}: {url} is not https"


def test_missing_files_name_the_download_command_that_works(tmp_path):
    for name in ("cifar10", "fashion-mnist"):
        with pytest.raises(DataError) as error:
            load_dataset(name, tmp_path)
        assert f"data download {name}`" in str(error.value) and "--dataset" not in str(error.value)
