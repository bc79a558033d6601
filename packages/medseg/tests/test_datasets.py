"""Datasets: layouts, pairing, value checks and clear errors for bad files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pentad_core.errors import ConfigError, DataError
from pentad_core.testing import dataset_folder, requires_dataset
from pentad_medseg import load_dataset
from pentad_medseg.data import read_label


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def make_folder(root: Path, count: int = 5, size=(20, 24), mask_scale: int = 255, rgb: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        shape = (*size, 3) if rgb else size
        write_png(root / "images" / f"case{i}.png", rng.integers(0, 255, shape))
        write_png(root / "masks" / f"case{i}.png", (rng.random(size) > 0.7) * mask_scale)
    return root


def test_synthetic_vessels_and_cells():
    data = load_dataset("synthetic", None, image_size=64, train_images=3, val_images=1, test_images=1)
    item = data.train[0]
    assert item.image.shape == (3, 64, 64) and item.image.dtype == np.float32
    assert set(np.unique(item.mask)) <= {0, 1} and 0.01 < item.mask.mean() < 0.5
    assert not item.mask[~item.fov].any()  # vessels only inside the FOV
    cells = load_dataset("synthetic", None, kind="cells", classes=3, image_size=64, train_images=2, in_channels=1)
    assert cells.in_channels == 1 and cells.classes == 3
    assert set(np.unique(np.concatenate([c.mask.ravel() for c in cells.train]))) == {0, 1, 2}
    again = load_dataset("synthetic", None, image_size=64, train_images=3, val_images=1, test_images=1)
    assert np.array_equal(again.train[0].image, item.image)  # seeded


def test_folder_ratio_split_and_255_masks(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path, count=10), val_fraction=0.2, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    assert data.in_channels == 3 and data.classes == 2
    assert set(np.unique(data.train[0].mask)) <= {0, 1} and data.train[0].fov.all()


def test_folder_subfolders_grey_01_masks_and_fov(tmp_path):
    make_folder(tmp_path / "train", count=2, mask_scale=1, rgb=False)
    make_folder(tmp_path / "val", count=1, mask_scale=1, rgb=False)
    fov = np.zeros((20, 24), np.uint8)
    fov[2:18, 2:20] = 255
    for i in range(2):
        write_png(tmp_path / "train" / "fov" / f"case{i}.png", fov)
    data = load_dataset("folder", tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (2, 1, 0)
    assert data.in_channels == 1
    assert data.train[0].fov.sum() == 16 * 18


def test_folder_multiclass_and_jpeg(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[:4] = 2
    labels[4:, :4] = 1
    write_png(tmp_path / "m.png", labels)
    assert np.array_equal(read_label(tmp_path / "m.png", classes=3), labels)
    with pytest.raises(DataError, match=r"holds values \[0, 1, 2\], expected a binary mask"):
        read_label(tmp_path / "m.png", classes=2)
    write_png(tmp_path / "five.png", labels * 2 + 1)
    with pytest.raises(DataError, match=r"labels 1..5, expected 0..2 for 3 classes"):
        read_label(tmp_path / "five.png", classes=3)
    blurred = np.full((8, 8), 3, np.uint8)
    blurred[:, 4:] = 250
    Image.fromarray(blurred).save(tmp_path / "j.jpg", quality=60)
    mask = read_label(tmp_path / "j.jpg")
    assert mask[:, :3].sum() == 0 and mask[:, 5:].all()


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset("folder", tmp_path / "nothing")
    root = make_folder(tmp_path / "a", count=3)
    (root / "masks" / "case1.png").unlink()
    with pytest.raises(DataError, match="case1.png has no mask"):
        load_dataset("folder", root)
    root = make_folder(tmp_path / "b", count=3)
    write_png(root / "masks" / "case0.png", np.zeros((10, 10)))
    with pytest.raises(DataError, match="must have the same size"):
        load_dataset("folder", root)
    root = make_folder(tmp_path / "c", count=3)
    (root / "images" / "case2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset("folder", root)
    root = make_folder(tmp_path / "d", count=3)
    write_png(root / "masks" / "case0.png", np.full((20, 24), 7))
    with pytest.raises(DataError, match="expected a binary mask"):
        load_dataset("folder", root)
    with pytest.raises(ConfigError, match="--classes"):
        load_dataset("folder", make_folder(tmp_path / "e", count=3), classes=1)


def test_nifti_volumes(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    for name in ("p1", "p2", "p3", "p4", "p5"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "labels").mkdir(exist_ok=True)
        nib.save(
            nib.Nifti1Image(rng.normal(size=(16, 12, 4)).astype(np.float32), affine),
            tmp_path / "images" / f"{name}.nii.gz",
        )
        nib.save(
            nib.Nifti1Image((rng.random((16, 12, 4)) > 0.8).astype(np.uint8), affine),
            tmp_path / "labels" / f"{name}.nii.gz",
        )
    data = load_dataset("nifti", tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert len(data.train) == 3 * 4 and len(data.val) == 4 and len(data.test) == 4
    item = data.test[0]
    assert item.image.shape == (1, 16, 12) and np.allclose(item.meta["affine"], affine)
    volumes = {s.meta["volume"] for s in data.train} | {s.meta["volume"] for s in data.test}
    assert len(volumes) == 4  # slices of one volume never split across train and test
    (tmp_path / "labels" / "p3.nii.gz").unlink()
    with pytest.raises(DataError, match="no label volume"):
        load_dataset("nifti", tmp_path)
    (tmp_path / "images" / "p3.nii.gz").unlink()
    (tmp_path / "images" / "p2.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read NIfTI"):
        load_dataset("nifti", tmp_path)


def fake_drive(root: Path, count: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split, tag in (("training", "training"), ("test", "test")):
        for i in range(1, count + 1):
            number = f"{i:02d}"
            image = Image.fromarray(rng.integers(0, 255, (24, 20, 3)).astype(np.uint8))
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            image.save(root / split / "images" / f"{number}_{tag}.tif")
            write_png(root / split / "1st_manual" / f"{number}_manual1.gif", (rng.random((24, 20)) > 0.8) * 255)
            write_png(root / split / "mask" / f"{number}_{tag}_mask.gif", np.full((24, 20), 255))
    return root


def test_drive_layout_and_errors(tmp_path):
    root = fake_drive(tmp_path / "drive")
    data = load_dataset("drive", root, val_images=1)
    assert (len(data.train), len(data.val), len(data.test)) == (2, 1, 2)
    assert data.train[0].image.shape == (3, 24, 20)
    (root / "test" / "mask" / "02_test_mask.gif").unlink()
    with pytest.raises(DataError, match="field-of-view mask not found"):
        load_dataset("drive", root)
    with pytest.raises(DataError, match="DRIVE folder not found"):
        load_dataset("drive", tmp_path / "missing")


@requires_dataset("drive")
def test_real_drive():
    data = load_dataset("drive", dataset_folder("drive"))
    assert (len(data.train), len(data.test)) == (20, 20)
    item = data.test[0]
    assert item.image.shape == (3, 584, 565)
    assert 0.05 < item.mask[item.fov].mean() < 0.2  # vessels cover about 12% of the FOV
