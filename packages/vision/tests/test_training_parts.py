"""Augmentations, optimiser groups, schedules, EMA and metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pentad_core.errors import ConfigError
from pentad_vision.ema import Lookahead, ModelEMA
from pentad_vision.metrics import ClassificationMeter, topk_correct
from pentad_vision.optim import build_optimizer, lr_factor, param_groups
from pentad_vision.transforms import (
    Cutout,
    MixBatch,
    RandomCropPad,
    RandomFlip,
    TestTimeAugment,
    TrivialAugment,
    build_batch_augment,
)


def test_random_crop_pad_shifts_each_image_within_the_padding():
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    out = RandomCropPad(2, "constant")(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    shifts = set()
    for image in out:
        # The original pixel (3, 3) = 27 must appear at a position shifted by at most 2 in each direction.
        where = (image[0] == 27).nonzero()
        assert len(where) == 1
        dy, dx = (where[0] - 3).tolist()
        assert abs(dy) <= 2 and abs(dx) <= 2
        shifts.add((dy, dx))
    assert len(shifts) > 5, "crops are not random per image"


def test_flip_and_cutout():
    x = torch.arange(6.0).view(1, 1, 2, 3).repeat(100, 1, 1, 1)
    out = RandomFlip(0.5)(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).all(dim=(1, 2, 3))
    kept = (out == x).all(dim=(1, 2, 3))
    assert (flipped | kept).all() and 20 < flipped.sum() < 80
    ones = torch.ones(50, 3, 16, 16)
    cut = Cutout(4)(ones, torch.Generator().manual_seed(0))
    zeros = (cut == 0).all(dim=1).sum(dim=(1, 2))  # zeroed pixels per image, all channels together
    assert zeros.max() == 16 and zeros.min() >= 4  # a full 4x4 square, or clipped at the border
    assert len(build_batch_augment()) == 0 and len(build_batch_augment(4, flip=True, cutout=8)) == 3
    with pytest.raises(ConfigError):
        RandomCropPad(2, "wrap")


def test_test_time_augment_on_a_hand_computed_case():
    # The "network" reads the top-left pixel. Image [[0,1,2],[3,4,5],[6,7,8]]: its mirror starts with 2;
    # shifted by one pixel with reflect padding, both the up-left and the down-right copy start with 4
    # (and so do their mirrors).
    image = torch.arange(9.0).view(1, 1, 3, 3)
    top_left = lambda x: x[:, :, 0, 0]  # noqa: E731
    assert TestTimeAugment()(top_left, image).item() == 0.0
    assert TestTimeAugment(flip=True)(top_left, image).item() == 1.0
    assert TestTimeAugment(translate=1)(top_left, image).item() == 0.5 * 0 + 0.25 * (4 + 4)
    assert TestTimeAugment(flip=True, translate=1)(top_left, image).item() == 0.5 * 1 + 0.25 * (4 + 4)
    with pytest.raises(ConfigError, match="tta_translate"):
        TestTimeAugment(translate=-1)


def test_trivial_augment_keeps_shape_and_dtype():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    out = TrivialAugment()(image)
    assert out.shape == image.shape and out.dtype == torch.uint8


def test_mixup_and_cutmix_give_soft_targets_that_match_the_mix():
    x = torch.zeros(8, 1, 10, 10)
    x[:4] = 1.0  # first half white, second half black
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    mixed, target = MixBatch(2, cutmix_alpha=1.0)(x, y, generator)
    assert torch.allclose(target.sum(1), torch.ones(8))
    # With CutMix the share of white pixels equals the weight of class 0.
    assert torch.allclose(mixed.mean(dim=(1, 2, 3)), target[:, 0], atol=1e-6)
    mixed, target = MixBatch(2, mixup_alpha=0.4)(x, y, generator)
    assert torch.allclose(mixed.mean(dim=(1, 2, 3)), target[:, 0], atol=1e-6)
    same, hard = MixBatch(2)(x, y)
    assert torch.equal(same, x) and torch.equal(hard.argmax(1), y)


def test_no_weight_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, plain = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(plain["params"]) == 4  # conv bias, BN weight and bias, linear bias
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.1, momentum=0.9, nesterov=True)
    assert optimizer.defaults["nesterov"] is True
    assert isinstance(build_optimizer(model, "adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="not one of"):
        build_optimizer(model, "lion")


def test_schedules():
    assert lr_factor(0, 100, "cosine", warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(9, 100, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(10, 100, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(55, 100, "cosine", warmup_steps=10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 100, "cosine", warmup_steps=10) == pytest.approx(0.0)
    assert lr_factor(55, 100, "onecycle", warmup_steps=10, final_factor=0.1) == pytest.approx(1 - 0.9 * 0.5)
    assert lr_factor(70, 100, "constant") == 1.0
    with pytest.raises(ConfigError):
        lr_factor(0, 10, "step")


def test_ema_follows_the_formula():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    ema = ModelEMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.5)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.75)
    warm = ModelEMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)
    assert not any(p.requires_grad for p in ema.parameters())


def test_metrics_on_a_hand_computed_case():
    logits = torch.tensor(
        [[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0], [3.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 0.0, 1.0]]
    )
    targets = torch.tensor([0, 1, 2, 3, 0])
    assert topk_correct(logits, targets, 1) == 3
    assert topk_correct(logits, targets, 2) == 4
    meter = ClassificationMeter(4, topk=2)
    meter.update(logits[:2], targets[:2])
    meter.update(logits[2:], targets[2:])
    values = meter.compute()
    assert values["acc"] == pytest.approx(3 / 5)
    assert values["top2"] == pytest.approx(4 / 5)
    assert meter.per_class_accuracy().tolist() == [0.5, 1.0, 0.0, 1.0]
    assert values["balanced_acc"] == pytest.approx(2.5 / 4)
    assert meter.confusion.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def test_norm_lr_scale_gives_norms_a_group_of_their_own():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.01, norm_lr_scale=64.0)
    norms = next(g for g in optimizer.param_groups if any(p is model[1].bias for p in g["params"]))
    assert {id(p) for p in norms["params"]} == {id(model[1].weight), id(model[1].bias)}
    assert norms["lr"] == pytest.approx(6.4) and norms["weight_decay"] == pytest.approx(0.01 / 64)
    # shrinkage per step lr * weight_decay is the same as the weights'
    weights = next(g for g in optimizer.param_groups if any(p is model[0].weight for p in g["params"]))
    assert norms["lr"] * norms["weight_decay"] == pytest.approx(weights["lr"] * weights["weight_decay"])
    assert len(optimizer.param_groups) == 3  # conv and linear weights; conv and linear biases; the norm
    with pytest.raises(ConfigError, match="norm_lr_scale"):
        param_groups(model, 0.1, norm_lr_scale=0.0)


def test_warmup_starts_at_its_start_factor():
    assert lr_factor(0, 100, "onecycle", warmup_steps=10, start_factor=0.2) == pytest.approx(0.2 + 0.8 * 0.1)
    assert lr_factor(9, 100, "onecycle", warmup_steps=10, start_factor=0.2) == pytest.approx(1.0)
    assert lr_factor(100, 100, "onecycle", warmup_steps=10, final_factor=0.07, start_factor=0.2) == pytest.approx(0.07)


def test_lookahead_follows_the_formula_and_ends_on_the_slow_copy():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    nn.init.constant_(model[0].weight, 0.0)
    lookahead = Lookahead(model, every=5, base=0.9)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(2.0)
    assert not lookahead.step(model, 3, 10)  # not a multiple of 5: nothing happens
    assert model[0].weight.item() == 1.0
    decay = 0.9**5 * 0.5**3
    assert lookahead.decay(5, 10) == pytest.approx(decay)
    assert lookahead.step(model, 5, 10)
    expected = (1 - decay) * 1.0
    assert model[0].weight.item() == pytest.approx(expected)  # the weights are set to the slow copy
    assert lookahead.module[0].weight.item() == pytest.approx(expected)
    assert model[1].running_mean.item() == pytest.approx((1 - decay) * 2.0)  # float buffers too
    assert int(model[1].num_batches_tracked) == 0  # integer buffers are left alone
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    assert lookahead.step(model, 10, 10)  # the last step: the weights take the slow copy unchanged
    assert model[0].weight.item() == pytest.approx(expected)


def test_cifar_fast_airbench_initialisation_is_an_option():
    from pentad_vision.models import build_model

    options = {"widths": (16, 32, 32), "dirac_init": True, "bn_momentum": 0.4}
    net = build_model("cifar-fast", options, num_classes=10)
    conv = net.groups[1].conv1  # 16 -> 32 channels
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(conv(x)[:, :16], x, atol=1e-6)
    assert net.groups[0].norm1.momentum == pytest.approx(0.4)
    plain = build_model("cifar-fast", {"widths": (16, 32, 32)}, num_classes=10).groups[1].conv1
    assert not torch.allclose(plain(x)[:, :16], x, atol=1e-2)  # off by default: the measured recipes' network
