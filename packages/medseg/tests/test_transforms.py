"""Augmentations keep image, mask and FOV aligned; normalisation statistics."""

import numpy as np
import pytest

from pentad_core.errors import ConfigError
from pentad_medseg.transforms import (
    AUGMENTATIONS,
    Compose,
    Normalize,
    RandomAffine,
    RandomElastic,
    RandomFlip,
    RandomRotate90,
    build_augmentation,
    channel_stats,
)


def aligned_sample(size=32):
    rng = np.random.default_rng(0)
    mask = (rng.random((size, size)) > 0.6).astype(np.int64)
    image = np.stack([mask.astype(np.float32), mask.astype(np.float32) * 0.5])
    return {"image": image, "mask": mask, "fov": mask.astype(bool)}


@pytest.mark.parametrize("transform", [RandomFlip(p=1), RandomRotate90(p=1), RandomAffine(p=1), RandomElastic(p=1)])
def test_geometric_transforms_keep_alignment(transform):
    for seed in range(3):
        out = transform(aligned_sample(), np.random.default_rng(seed))
        assert out["image"].shape == (2, 32, 32) and out["mask"].shape == (32, 32)
        assert out["mask"].dtype == np.int64 and out["fov"].dtype == bool
        # the image was a copy of the mask: interpolated values agree with the nearest label
        assert (np.abs(out["image"][0] - out["mask"]) < 0.5 + 1e-6).mean() > 0.9
        assert np.array_equal(out["fov"], out["mask"].astype(bool))


def test_flip_and_rotation_are_exact():
    sample = aligned_sample()
    flipped = RandomFlip(p=1)(sample, np.random.default_rng(0))
    assert np.array_equal(flipped["image"][0], flipped["mask"].astype(np.float32))
    assert np.array_equal(flipped["mask"], sample["mask"][::-1, ::-1])


def test_intensity_transforms_leave_mask_alone():
    sample = aligned_sample()
    out = build_augmentation(["brightness", "contrast", "gamma"])
    for transform in out.transforms:
        transform.p = 1.0
    result = out(sample, np.random.default_rng(1))
    assert np.array_equal(result["mask"], sample["mask"])
    assert not np.array_equal(result["image"], sample["image"])
    assert isinstance(build_augmentation(list(AUGMENTATIONS)), Compose)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_augmentation(["flip", "mixup"])


def test_channel_stats_inside_fov_and_normalize():
    images = [np.stack([np.full((4, 4), 2.0), np.arange(16.0).reshape(4, 4)]).astype(np.float32)]
    fov = np.zeros((4, 4), bool)
    fov[0] = True  # values 0..3 in channel 1
    mean, std = channel_stats(images, [fov])
    assert mean == pytest.approx([2.0, 1.5])
    assert std == pytest.approx([1.0, np.std([0, 1, 2, 3])])  # constant channel gets std 1
    out = Normalize(mean, std)({"image": images[0]})
    assert out["image"][1, 0] == pytest.approx((np.arange(4) - 1.5) / np.std([0, 1, 2, 3]))
