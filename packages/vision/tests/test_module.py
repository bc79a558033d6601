"""The LightningModule: a short run learns, and a checkpoint rebuilds the same network."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from pentad_core.checkpoint import load_module
from pentad_vision.data import load_dataset
from pentad_vision.module import ImageClassifier, VisionDataModule


def _trainer(tmp_path, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_short_training_beats_chance_and_round_trips(tmp_path):
    torch.manual_seed(0)
    data = load_dataset("synthetic", num_train=480, num_test=160, image_size=16, num_classes=4, val_fraction=0.1)
    module = ImageClassifier(
        "seed-convnet", data.num_classes, data.in_channels, data.image_size, data.mean, data.std, data.classes,
        optim={"lr": 0.05, "schedule": "onecycle", "warmup_epochs": 0.5, "label_smoothing": 0.1, "ema_decay": 0.9},
        augment={"crop_padding": 2, "flip": True, "tta_flip": True},
        model_options={"hidden": 64},
    )  # fmt: skip
    datamodule = VisionDataModule(data, batch_size=32)
    trainer = _trainer(tmp_path, 4)
    trainer.fit(module, datamodule)
    losses = trainer.callback_metrics
    assert torch.isfinite(losses["train/loss"])
    result = trainer.test(module, datamodule, verbose=False)[0]
    assert result["test/acc"] > 0.45, result  # chance is 0.25
    assert 0.0 <= result["test/top5"] <= 1.0

    trainer.save_checkpoint(tmp_path / "last.ckpt")
    restored = load_module(ImageClassifier, tmp_path / "last.ckpt")
    module.eval()
    images = data.test.images[:8]
    with torch.no_grad():
        assert torch.equal(restored(images), module(images))
    assert restored.classes == data.classes


def test_cifar_fast_whitening_is_initialised_from_the_data(tmp_path):
    data = load_dataset("synthetic", num_train=64, num_test=32, image_size=16, val_fraction=0.0)
    module = ImageClassifier(
        "cifar-fast", data.num_classes, 3, 16, data.mean, data.std, model_options={"widths": (8, 16, 16)}
    )
    before = module.net.model.whiten.weight.clone()
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module, VisionDataModule(data, batch_size=32))
    assert module.whitened and not torch.equal(before, module.net.model.whiten.weight)


def test_cifar_recipe_path_bf16_channels_last_learns_and_matches_float32(tmp_path):
    # The CIFAR recipe trains in bf16 autocast with a channels-last network on the CPU: the network
    # must then see channels-last inputs, learn, and predict like its float32 self.
    from pentad_core.devices import is_channels_last
    from pentad_core.runs import RunDir
    from pentad_core.training import TrainerConfig, build_trainer

    torch.manual_seed(0)
    data = load_dataset("synthetic", num_train=256, num_test=64, image_size=16, num_classes=4, val_fraction=0.0)
    module = ImageClassifier(
        "cifar-fast", data.num_classes, 3, 16, data.mean, data.std, data.classes,
        optim={"lr": 0.4, "schedule": "onecycle", "warmup_epochs": 0.5, "label_smoothing": 0.2},
        augment={"flip": True, "tta_flip": True, "tta_translate": 1}, model_options={"widths": (8, 16, 16)},
    )  # fmt: skip
    seen = []
    conv = module.net.model.groups[0].conv1
    conv.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].is_contiguous()))
    config = TrainerConfig(
        accelerator="cpu", precision="bf16-mixed", channels_last=True, max_epochs=4, monitor="", progress_bar=False
    )
    trainer = build_trainer(config, RunDir(tmp_path))
    trainer.fit(module, VisionDataModule(data, batch_size=32))
    assert is_channels_last(module.net.model) and seen and not any(seen)  # channels-last all the way
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    module.eval()
    with torch.no_grad():
        logits = module(data.test.images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_precision = module(data.test.images).float()
    accuracy = (logits.argmax(1) == data.test.labels).float().mean().item()
    assert accuracy > 0.4, accuracy  # chance is 0.25
    assert (low_precision - logits).abs().max() < 0.1 * logits.abs().max()


def test_pretrained_copies_the_backbone_keeps_the_new_head_and_statistics(tmp_path):
    from pentad_core.errors import CheckpointError

    torch.manual_seed(0)
    source = ImageClassifier("seed-convnet", 4, 3, 16, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), model_options={"hidden": 8})
    path = tmp_path / "source.ckpt"
    torch.save({"hyper_parameters": dict(source.hparams), "state_dict": source.state_dict()}, path)

    target = ImageClassifier("seed-convnet", 3, 3, 16, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2), model_options={"hidden": 8})
    fresh = target.load_pretrained(path)
    assert set(fresh) == {"mean", "std", "model.classifier.2.weight", "model.classifier.2.bias"}
    assert torch.equal(target.net.model.features[0].weight, source.net.model.features[0].weight)
    assert torch.allclose(target.net.mean.flatten(), torch.tensor([0.4, 0.4, 0.4]))
    assert target.net.model.classifier[2].weight.shape == (3, 8)

    other = ImageClassifier("resnet18-cifar", 3, 3, 16, model_options={"width": 4})
    with pytest.raises(CheckpointError, match="same --model"):
        other.load_pretrained(path)
