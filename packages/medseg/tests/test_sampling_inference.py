"""Patch sampling and sliding-window inference."""

import numpy as np
import pytest
import torch

from pentad_medseg.data import SegImage
from pentad_medseg.inference import gaussian_importance, sliding_window_inference, window_starts
from pentad_medseg.sampling import PatchDataset, PatchSampler


def image_with_one_dot(size=(50, 60)):
    mask = np.zeros(size, np.int64)
    mask[40, 7] = 1
    return SegImage("dot", np.random.default_rng(0).random((3, *size), dtype=np.float32), mask, np.ones(size, bool))


def test_foreground_sampling_centres_on_foreground():
    sampler = PatchSampler([image_with_one_dot()], patch_size=16, foreground_fraction=1.0)
    for seed in range(10):
        patch = sampler.crop(*sampler.window(np.random.default_rng(seed)))
        assert patch["mask"].sum() == 1
    uniform = PatchSampler([image_with_one_dot()], patch_size=16, foreground_fraction=0.0)
    hits = sum(uniform.crop(*uniform.window(np.random.default_rng(s)))["mask"].sum() for s in range(40))
    assert hits < 20


def test_patch_dataset_shapes_padding_and_determinism():
    small = SegImage("small", np.ones((1, 10, 12), np.float32), np.ones((10, 12), np.int64), np.ones((10, 12), bool))
    dataset = PatchDataset([small], patch_size=16, patches_per_epoch=4)
    image, mask, fov = dataset[0]
    assert image.shape == (1, 16, 16) and mask.shape == (16, 16) and fov.dtype == torch.bool
    assert not fov[12:, :].any()  # padding is outside the FOV
    dataset = PatchDataset([image_with_one_dot()], patch_size=16, patches_per_epoch=4)
    assert torch.equal(dataset[1][0], dataset[1][0])
    assert not torch.equal(dataset[4 + 1][0], dataset[1][0])  # patch 1 of epoch 1 differs from that of epoch 0


def test_window_starts_cover_the_edges():
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert window_starts(20, 32, 16) == [0]


def test_gaussian_importance_peaks_in_centre():
    weights = gaussian_importance(9)
    assert weights[4, 4] == 1.0 and weights.min() > 0 and weights[0, 0] < weights[2, 2]


class PixelModel(torch.nn.Module):
    """A per-pixel model: its sliding-window output must equal whole-image output exactly."""

    def __init__(self, channels_out=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels_out, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("size", [(37, 53), (20, 20), (64, 64)])
@pytest.mark.parametrize("blending", ["gaussian", "constant"])
@pytest.mark.parametrize("tta", [False, True])
def test_sliding_window_equals_whole_image_for_pixelwise_model(size, blending, tta):
    torch.manual_seed(0)
    model = PixelModel(channels_out=1 if size[0] != 20 else 3).eval()
    images = torch.randn(2, 3, *size)
    out = sliding_window_inference(model, images, window=32, overlap=0.5, batch_size=3, blending=blending, tta=tta)
    logits = model(images)
    expected = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)


def test_sliding_window_with_unet_any_size():
    from pentad_medseg import MODELS

    model = MODELS.build("unet", in_channels=3, out_channels=1, depth=2, base_channels=4).eval()
    out = sliding_window_inference(model, torch.randn(1, 3, 45, 70), window=32, overlap=0.25, tta=True)
    assert out.shape == (1, 1, 45, 70) and (out >= 0).all() and (out <= 1).all()


def test_patch_order_shares_an_epoch_evenly_between_processes(monkeypatch):
    from pentad_medseg import sampling
    from pentad_medseg.sampling import PatchOrder

    shares = {}
    for rank in range(3):
        monkeypatch.setattr(sampling, "process_share", lambda rank=rank: (rank, 3))
        order = PatchOrder(patches_per_epoch=10)
        order.set_epoch(2)
        shares[rank] = list(order)
        assert len(order) == 4  # the same number of steps in every process, or DDP would wait forever
    assert shares[1] == [21, 24, 27, 20] and shares[2] == [22, 25, 28, 21]  # the last round wraps around
    assert set(shares[0]) | set(shares[1]) | set(shares[2]) == set(range(20, 30))  # the whole epoch 2
    monkeypatch.setattr(sampling, "process_share", lambda: (0, 1))
    order = PatchOrder(patches_per_epoch=10)
    order.load_state_dict({"epoch": 1, "consumed": 4})  # a checkpoint inside epoch 1
    assert list(order) == list(range(14, 20)) and len(order) == 10
    order.advance(6, epoch_done=True)
    assert order.state_dict() == {"epoch": 2, "consumed": 0} and next(iter(order)) == 20
