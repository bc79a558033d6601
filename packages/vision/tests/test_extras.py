"""Attacks, Grad-CAM and compression on a small network with known behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pentad_core.errors import ConfigError
from pentad_vision.attacks import attack, parse_eps
from pentad_vision.compress import METHODS, compress, compressed_bytes, sparsity, state_dict_bytes
from pentad_vision.gradcam import GradCAM, overlay
from pentad_vision.models import build_model
from pentad_vision.module import Normalized


class MeanBrightness(nn.Module):
    """Logits (-m, m) where m is the mean pixel minus 0.5: class 1 = bright images."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-m, m], dim=1) * 100


def test_eps_parsing():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps(0.1) == pytest.approx(0.1)
    for bad in ("abc", "2", "1/0"):
        with pytest.raises(ConfigError, match="--eps"):
            parse_eps(bad)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_attacks_stay_in_the_ball_and_flip_a_fragile_prediction(name):
    model = MeanBrightness()
    images = torch.full((4, 1, 8, 8), 0.52)  # just bright enough for class 1
    labels = torch.ones(4, dtype=torch.long)
    adversarial = attack(name, model, images, labels, eps=0.05)
    assert (adversarial - images).abs().max() <= 0.05 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (model(adversarial).argmax(1) == 0).all(), "the attack should darken the images below 0.5"
    robust = torch.full((4, 1, 8, 8), 0.9)
    assert (model(attack(name, model, robust, labels, eps=0.05)).argmax(1) == 1).all()
    with pytest.raises(ConfigError, match="--attack"):
        attack("cw", model, images, labels, 0.1)


def test_gradcam_points_at_the_evidence():
    # One conv that sees brightness, then global max pooling: the evidence is where the bright blob is.
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[4].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[4].bias.zero_()
    images = torch.zeros(1, 1, 16, 16)
    images[0, 0, 2:5, 10:13] = 1.0
    heatmap, classes = GradCAM(model)(images)
    assert classes.tolist() == [1]
    assert heatmap.shape == (1, 16, 16) and heatmap.max() == pytest.approx(1.0)
    peak = divmod(int(heatmap[0].argmax()), 16)
    assert 1 <= peak[0] <= 5 and 9 <= peak[1] <= 13
    assert heatmap[0, 12:, :6].max() < 0.05
    picture = overlay(images[0], heatmap[0])
    assert picture.shape == (16, 16, 3) and picture.dtype.name == "uint8"


@pytest.mark.parametrize("method", METHODS)
def test_compression_keeps_outputs_close(method):
    torch.manual_seed(0)
    model = Normalized(
        build_model("seed-convnet", {"hidden": 32}, num_classes=4, in_channels=3, image_size=16),
        (0.5,) * 3,
        (0.25,) * 3,
    ).eval()
    x = torch.rand(8, 3, 16, 16)
    small = compress(model, method, amount=0.3, calibration=[x], example=x)
    with torch.no_grad():
        reference, out = model(x), small(x)
    assert out.shape == reference.shape
    assert (out - reference).abs().max() < 0.25 * reference.abs().max() + 0.05
    if method == "prune":
        assert sparsity(small) == pytest.approx(0.3, abs=0.01) and sparsity(model) < 0.01
        assert compressed_bytes(small) < compressed_bytes(model)
    else:
        assert state_dict_bytes(small) < state_dict_bytes(model)
    with pytest.raises(ConfigError, match="--method"):
        compress(model, "distill")
    with pytest.raises(ConfigError, match="--amount"):
        compress(model, "prune", amount=1.5)
