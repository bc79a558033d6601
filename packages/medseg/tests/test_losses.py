"""Losses: hand-computed values, FOV masking, binary and multi-class variants."""

import math

import pytest
import torch

from pentad_medseg import LOSSES


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_good_prediction_beats_bad_and_fov_masks(name, channels):
    torch.manual_seed(0)
    target = torch.randint(0, max(channels, 2), (2, 16, 16))
    classes = max(channels, 2)
    onehot = torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float()
    good = (onehot[:, 1:2] * 8 - 4) if channels == 1 else onehot * 8 - 4
    loss = LOSSES.build(name)
    assert loss(good, target) < loss(-good, target)
    # pixels outside the FOV get no gradient and cannot change the loss
    fov = torch.zeros(2, 16, 16, dtype=torch.bool)
    fov[:, 4:12, 4:12] = True
    logits = torch.randn(2, channels, 16, 16, requires_grad=True)
    value = loss(logits, target, fov)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad[:, :, ~fov[0]].abs().max() == 0
    changed = logits.detach().clone()
    changed[:, :, ~fov[0]] = 100.0
    assert loss(changed, target, fov).item() == pytest.approx(value.item(), abs=1e-6)


def test_bce_and_dice_by_hand():
    logits = torch.tensor([[[[0.0, 0.0]]]])  # p = 0.5 everywhere
    target = torch.tensor([[[1, 0]]])
    assert LOSSES.build("bce")(logits, target).item() == pytest.approx(math.log(2))
    # soft dice with smooth 1: 1 - (2*0.5 + 1) / (0.5 + 0.5 + 1 + 1) = 1 - 2/3
    assert LOSSES.build("dice")(logits, target).item() == pytest.approx(1 / 3)
    assert LOSSES.build("bce-dice")(logits, target).item() == pytest.approx(math.log(2) + 1 / 3)
    # tversky alpha=0.3 beta=0.7: tp .5 fp .5 fn .5 -> 1 - 1.5 / (0.5 + 0.15 + 0.35 + 1)
    assert LOSSES.build("tversky")(logits, target).item() == pytest.approx(1 - 1.5 / 2.0)
    # focal gamma 2: (1 - 0.5)^2 * log 2
    assert LOSSES.build("focal")(logits, target).item() == pytest.approx(0.25 * math.log(2))


def test_softmax_cross_entropy_matches_torch():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    expected = torch.nn.functional.cross_entropy(logits, target)
    assert LOSSES.build("ce")(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert LOSSES.build("focal", gamma=0.0)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)
