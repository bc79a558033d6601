"""The LightningModule and DataModule of image classification."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.devices import is_channels_last
from pentad_core.ensemble import build_ensemble, each_member, members
from pentad_core.training import PentadModule
from pentad_vision.config import AugmentConfig, OptimConfig
from pentad_vision.data.base import ImageData, ShardSampler, make_loader
from pentad_vision.ema import Lookahead, ModelEMA
from pentad_vision.metrics import ClassificationMeter
from pentad_vision.models import build_model
from pentad_vision.optim import build_optimizer, build_scheduler
from pentad_vision.transforms import MixBatch, TestTimeAugment, TrivialAugment, build_batch_augment


class Normalized(nn.Module):
    """``model((x - mean) / std)``: the network as users see it, taking images in ``[0, 1]``.

    Attacks, Grad-CAM, prediction and ONNX export all work on this wrapper, so none of them needs
    to know a dataset's statistics.

    Shapes:
        input ``(B, C, H, W)`` in ``[0, 1]`` -> logits ``(B, classes)``.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` to the network's input: standardised, channels-last when the network is."""
        x = (x - self.mean) / self.std
        if is_channels_last(self.model):  # the trainer converted the network (trainer.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))

    def each(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every ensemble member, ``(K, B, classes)`` (``K = 1`` for a single network)."""
        return each_member(self.model, self.normalize(x))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to ``float32`` in ``[0, 1]`` (floats pass through)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


class ImageClassifier(PentadModule):
    """Trains any registered model on an :class:`~pentad_vision.data.ImageData`.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/top5`` and the same under
    ``test/``. Every constructor argument is a plain value, saved in the checkpoint's
    ``hyper_parameters`` (class names and normalisation included), so
    :func:`pentad_core.checkpoint.load_module` rebuilds the module from the checkpoint alone.

    Args:
        model: Registered model name.
        num_classes: Number of classes.
        in_channels: Image channels.
        image_size: Image side.
        mean: Per-channel mean of the training images (``[0, 1]`` units).
        std: Per-channel standard deviation.
        classes: Class names (stored for prediction).
        optim: :class:`~pentad_vision.config.OptimConfig` fields.
        augment: :class:`~pentad_vision.config.AugmentConfig` fields.
        model_options: Options of the model factory (``model_options`` of the config).
        freeze_backbone_epochs: Train only the classification head for this many epochs (fine-tuning).
        ensemble: Independently initialised copies of the network, each trained on its own loss,
            whose logits are averaged (:mod:`pentad_core.ensemble`; 1: one network).
    """

    def __init__(
        self,
        model: str,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.25, 0.25, 0.25),
        classes: list[str] | None = None,
        optim: dict[str, Any] | None = None,
        augment: dict[str, Any] | None = None,
        model_options: dict[str, Any] | None = None,
        freeze_backbone_epochs: int = 0,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.optim = OptimConfig(**(optim or {}))
        self.augment = AugmentConfig(**(augment or {}))
        self.classes = list(classes) if classes else [str(i) for i in range(num_classes)]
        mean, std = tuple(mean), tuple(std)
        self.save_hyperparameters(
            {
                "model": model,
                "num_classes": num_classes,
                "in_channels": in_channels,
                "image_size": image_size,
                "mean": list(mean),
                "std": list(std),
                "classes": self.classes,
                "optim": dataclasses.asdict(self.optim),
                "augment": dataclasses.asdict(self.augment),
                "model_options": dict(model_options or {}),
                "freeze_backbone_epochs": freeze_backbone_epochs,
                "ensemble": ensemble,
            },
            logger=False,  # config.yaml records the settings; core's CSV writer has no log_hparams
        )
        backbone = build_ensemble(
            lambda: build_model(
                model, model_options, num_classes=num_classes, in_channels=in_channels, image_size=image_size
            ),
            ensemble,
        )
        self.net = Normalized(backbone, mean, std)
        self._trainable = {id(p) for p in backbone.parameters() if p.requires_grad}  # some stay frozen by design
        self.ema = ModelEMA(self.net, self.optim.ema_decay) if self.optim.ema_decay > 0 else None
        every = self.optim.lookahead_every
        self.lookahead = Lookahead(self.net, every) if every > 0 else None
        self.batch_augment = build_batch_augment(
            self.augment.crop_padding, self.augment.crop_mode, self.augment.flip, self.augment.cutout
        )
        self.mix = MixBatch(num_classes, self.augment.mixup_alpha, self.augment.cutmix_alpha)
        self.test_time_augment = TestTimeAugment(self.augment.tta_flip, self.augment.tta_translate)
        self.meters: dict[str, ClassificationMeter] = {}
        self.whitened = False

    # ----------------------------------------------------------------- inference
    @property
    def eval_net(self) -> nn.Module:
        """The network used for evaluation: the EMA weights when enabled."""
        return self.ema.module if self.ema is not None else self.net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of images ``(B, C, H, W)`` (``uint8`` or ``[0, 1]`` floats), with TTA if set."""
        return self.test_time_augment(self.eval_net, to_unit(images))

    # ----------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and datamodule is not None:
            self.init_from_data(datamodule.data)

    def init_from_data(self, data: ImageData) -> None:
        """Data-dependent initialisation (the whitening stem of ``cifar-fast``); done once."""
        backbones = [m for m in members(self.net.model) if hasattr(m, "init_whitening")]
        if backbones and not self.whitened:
            sample = to_unit(data.train.images[:5000])
            for backbone in backbones:
                backbone.init_whitening((sample - self.net.mean) / self.net.std)
            self._sync_copies()
            self.whitened = True

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        images, labels = batch
        x = to_unit(images)
        if len(self.batch_augment):
            x = self.batch_augment(x)
        smoothing = self.optim.label_smoothing
        target = labels
        if self.mix.enabled:
            x, target = self.mix(x, labels)
        # each ensemble member on its own loss, summed: members train as they would alone
        each = self.net.each(x)
        losses = [F.cross_entropy(logits, target, label_smoothing=smoothing) for logits in each]
        loss = torch.stack(losses).sum()
        self.log_training("train/loss", loss.detach() / len(each), len(labels), on_step=True, prog_bar=True)
        accuracy = (each.detach().mean(0).argmax(1) == labels).float().mean()
        self.log_training("train/acc", accuracy, len(labels))
        return loss

    def on_train_epoch_start(self) -> None:
        frozen_epochs = self.hparams.get("freeze_backbone_epochs", 0)
        if frozen_epochs <= 0:
            return
        from pentad_vision.models.torchvision_models import last_linear

        head = {id(p) for net in members(self.net.model) for p in last_linear(net)[2].parameters()}
        train_backbone = self.current_epoch >= frozen_epochs
        for parameter in self.net.model.parameters():
            if id(parameter) not in head and id(parameter) in self._trainable:
                parameter.requires_grad_(train_backbone)

    def _sync_copies(self) -> None:
        """Start the EMA and lookahead copies from the current weights (after a data-dependent init)."""
        if self.ema is not None:
            self.ema.module.load_state_dict(self.net.state_dict())
        if self.lookahead is not None:
            self.lookahead.sync(self.net)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_index: int) -> None:
        if self.lookahead is not None:  # the same step count as the learning-rate schedule's
            self.lookahead.step(self.net, self.trainer.global_step, self.total_steps)
        if self.ema is not None:
            self.ema.update(self.net)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(
            self.net,
            self.optim.name,
            self.optim.lr,
            self.optim.weight_decay,
            self.optim.momentum,
            self.optim.nesterov,
            norm_lr_scale=self.optim.norm_lr_scale,
        )
        total = self.total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        warmup = round(self.optim.warmup_epochs * total / epochs)
        scheduler = build_scheduler(
            optimizer, total, self.optim.schedule, warmup, self.optim.final_lr_factor, self.optim.warmup_start_factor
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        images, labels = batch
        meter = self.meters.setdefault(split, ClassificationMeter(self.hparams.num_classes))
        meter.update(self(images), labels)

    def _eval_epoch_end(self, split: str) -> None:
        """Log the split's metrics over every rank's share (the counts are summed across processes first)."""
        meter = self.meters.pop(split, None) or ClassificationMeter(self.hparams.num_classes)
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank calls it: a collective
            meter.merge_ranks(lambda tensor: self.trainer.strategy.reduce(tensor, reduce_op="sum"))
        if meter.count == 0:
            return
        values = {f"{split}/{key}": value for key, value in meter.compute().items()}
        if split == "test":
            for name, value in zip(self.classes, meter.per_class_accuracy().tolist()):
                if value == value:  # not nan: the class occurs in the test split
                    values[f"test/acc_class/{name}"] = value
        with warnings.catch_warnings():
            # Every rank holds the same, complete values: nothing is left for Lightning to reduce
            # (its advice to pass sync_dist=True is for per-rank values).
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            for key, value in values.items():
                self.log(key, value, prog_bar=key == f"{split}/acc")
        self.last_meters = getattr(self, "last_meters", {})
        self.last_meters[split] = meter

    def validation_step(self, batch, batch_index: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_index: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ----------------------------------------------------------------- loading
    def load_pretrained(self, path: str | Path) -> list[str]:
        """Start from the network of another run's checkpoint (fine-tuning, ``--pretrained``).

        Tensors whose shape differs (the head, when the class count changes) keep their fresh
        initialisation, and so do the normalisation buffers (the new dataset's statistics).

        Returns:
            The names (inside the network) of the tensors that were not taken from the checkpoint.

        Raises:
            CheckpointError: When the checkpoint holds another model, or nothing that fits.
        """
        from pentad_core.checkpoint import copy_matching_weights, load_checkpoint
        from pentad_core.errors import CheckpointError

        stored = load_checkpoint(path)
        hparams = stored.get("hyper_parameters", {}) if isinstance(stored, dict) else {}
        if hparams.get("model") != self.hparams.model:
            raise CheckpointError(
                f"--pretrained holds a {hparams.get('model')!r} network, not {self.hparams.model!r}.",
                "Use the same --model as the pretrained run.",
            )
        if hparams.get("ensemble", 1) != self.hparams.ensemble:
            raise CheckpointError(
                f"--pretrained holds an ensemble of {hparams.get('ensemble', 1)}, not {self.hparams.ensemble}.",
                "Use the same ensemble size as the pretrained run.",
            )
        fresh = copy_matching_weights(self, path, prefix="net.", exclude=("net.mean", "net.std"))
        self._sync_copies()
        self.whitened = True
        return [key.removeprefix("net.") for key in fresh if key.startswith("net.")]


class VisionDataModule(pl.LightningDataModule):
    """Loaders over an :class:`ImageData`; TrivialAugment (if set) runs on the training images only.

    In a distributed run each rank evaluates its own share of the validation and test images
    (:class:`~pentad_vision.data.base.ShardSampler`, no padding), and the module sums the counts
    across ranks. The state of the training shuffles is part of every checkpoint (``state_dict``).

    Args:
        data: The dataset.
        batch_size: Training batch size (evaluation uses twice as many images per batch).
        num_workers: DataLoader worker processes.
        seed: Seed of the shuffling.
        trivial_augment: Apply TrivialAugmentWide to each training image.
        eval_batch_size: Evaluation batch size (default ``2 * batch_size``).
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        trivial_augment: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.seed = seed
        if trivial_augment:
            self.data.train.transform = TrivialAugment()
        self._generator_state: torch.Tensor | None = None
        self._train_loader = None

    def train_dataloader(self):
        loader = make_loader(
            self.data.train, self.batch_size, shuffle=True, seed=self.seed, num_workers=self.num_workers
        )
        if self._generator_state is not None:  # resumed: continue the shuffles where the checkpoint left them
            loader.generator.set_state(self._generator_state)
            self._generator_state = None
        self._train_loader = loader
        return loader

    def _eval_loader(self, split):
        sampler = None
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:  # each rank evaluates its own share, none twice
            sampler = ShardSampler(split, trainer.world_size, trainer.global_rank)
        return make_loader(split, self.eval_batch_size, shuffle=False, num_workers=self.num_workers, sampler=sampler)

    def val_dataloader(self):
        return [] if self.data.val is None else self._eval_loader(self.data.val)

    def test_dataloader(self):
        return self._eval_loader(self.data.test)

    def state_dict(self) -> dict[str, Any]:
        """The state of the training shuffles (saved in every checkpoint, for ``--resume``)."""
        if self._train_loader is None:
            return {}
        return {"train_generator": self._train_loader.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the shuffles: the resumed run draws the epochs' orders an uninterrupted one draws."""
        self._generator_state = state_dict.get("train_generator")
