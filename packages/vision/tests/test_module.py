"""The LightningModule: a short run learns, and a checkpoint rebuilds the same network."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

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
        model_kwargs={"hidden": 64},
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
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    restored = ImageClassifier.from_checkpoint_dict(checkpoint)
    module.eval()
    images = data.test.images[:8]
    with torch.no_grad():
        assert torch.equal(restored(images), module(images))
    assert restored.classes == data.classes


def test_cifar_fast_whitening_is_initialised_from_the_data(tmp_path):
    data = load_dataset("synthetic", num_train=64, num_test=32, image_size=16, val_fraction=0.0)
    module = ImageClassifier(
        "cifar-fast", data.num_classes, 3, 16, data.mean, data.std, model_kwargs={"widths": (8, 16, 16)}
    )
    before = module.net.model.whiten.weight.clone()
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module, VisionDataModule(data, batch_size=32))
    assert module.whitened and not torch.equal(before, module.net.model.whiten.weight)
