"""The library-level workflow behind the CLI: data -> loaders -> module -> train/test -> predict.

Usable without the app::

    from pentad_medseg.config import MedsegConfig
    from pentad_medseg.pipeline import load_data, train_model
    from pentad_core.runs import RunDir

    config = MedsegConfig(dataset="synthetic", patches_per_epoch=256)
    run = RunDir("runs/medseg/example")
    module, metrics = train_model(config, run, load_data(config, root=None))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.errors import CheckpointError, ConfigError, DataError
from pentad_core.runs import RunDir
from pentad_medseg.config import MedsegConfig
from pentad_medseg.datasets import SegImage, SegmentationData, load_dataset
from pentad_medseg.metrics import dataset_metrics, write_csv
from pentad_medseg.module import SegmentationModule
from pentad_medseg.sampling import ImageDataset, PatchDataset
from pentad_medseg.transforms import Normalize, build_augmentation, channel_stats


def load_data(config: MedsegConfig, root: str | Path | None) -> SegmentationData:
    """Load ``config.dataset`` from ``root`` with ``config.dataset_options`` (and ``config.classes``)."""
    options = {"classes": config.classes, "split_seed": config.seed, **config.dataset_options}
    data = load_dataset(config.dataset, root, **options)
    if data.classes != config.classes:
        raise ConfigError(f"dataset {config.dataset} has {data.classes} classes but --classes is {config.classes}.")
    return data


def validation_images(data: SegmentationData) -> list[SegImage]:
    """The validation images, or the first two training images when the dataset has none."""
    return data.val or data.train[:2]


def build_module(config: MedsegConfig, data: SegmentationData) -> SegmentationModule:
    """A fresh module with the training set's channel statistics (and ``config.pretrained`` weights)."""
    mean, std = channel_stats([item.image for item in data.train], [item.fov for item in data.train])
    module = SegmentationModule(
        model=config.model, in_channels=data.in_channels, classes=data.classes,
        model_options=config.network_options(), loss=config.loss, loss_options=dict(config.loss_options),
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, scheduler=config.scheduler,
        max_epochs=config.trainer.max_epochs, mean=mean.tolist(), std=std.tolist(), window=config.window,
        overlap=config.overlap, blending=config.blending, tta=config.tta, threshold=config.threshold,
        infer_batch_size=config.infer_batch_size, hd95=config.hd95,
    )  # fmt: skip
    if config.pretrained:
        copied = load_pretrained(module, config.pretrained)
        print(f"initialised {copied} tensors from {config.pretrained}")
    return module


def load_pretrained(module: SegmentationModule, path: str | Path) -> int:
    """Copy the network tensors of a project checkpoint whose names and shapes match; returns their count.

    Raises:
        CheckpointError: If the file is unreadable or no tensor matches.
    """
    from pentad_core.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    own = module.state_dict()
    matching = {
        key: value for key, value in state.items()
        if key.startswith("net.") and key in own and own[key].shape == value.shape
    }  # fmt: skip
    if not matching:
        raise CheckpointError(f"--pretrained {path} holds no tensor matching model {module.hparams.model}.")
    own.update(matching)
    module.load_state_dict(own)
    return len(matching)


def build_loaders(
    config: MedsegConfig, data: SegmentationData, module: SegmentationModule
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader, torch.utils.data.DataLoader | None]:
    """Training patches (normalised, augmented) and whole-image validation/test loaders (raw images)."""
    mean = module.norm_mean.flatten().numpy()
    std = module.norm_std.flatten().numpy()
    patches = PatchDataset(
        data.train, config.patch_size, config.patches_per_epoch, build_augmentation(config.augment),
        Normalize(mean, std), config.foreground_fraction, config.seed,
    )  # fmt: skip
    loader_options: dict[str, Any] = {"num_workers": config.num_workers}
    if config.num_workers > 0:
        loader_options["persistent_workers"] = True
    train = torch.utils.data.DataLoader(
        patches, batch_size=config.batch_size, shuffle=False, drop_last=False, **loader_options
    )
    val = torch.utils.data.DataLoader(ImageDataset(validation_images(data)), batch_size=1, **loader_options)
    test = torch.utils.data.DataLoader(ImageDataset(data.test), batch_size=1, **loader_options) if data.test else None
    return train, val, test


def train_model(
    config: MedsegConfig,
    run: RunDir,
    data: SegmentationData,
    resume_path: str | Path | None = None,
) -> tuple[SegmentationModule, dict[str, float]]:
    """Train, then test the best checkpoint; writes metrics.json, the per-image CSV and plots.

    Returns:
        The module (best weights when a test ran) and the merged metrics.
    """
    from pentad_core.training import build_trainer, fit, test

    module = build_module(config, data)
    train_loader, val_loader, test_loader = build_loaders(config, data, module)
    overrides: dict[str, Any] = {}
    if config.max_minutes is not None:
        overrides["max_time"] = {"seconds": round(config.max_minutes * 60)}
    trainer = build_trainer(config.trainer, run, **overrides)
    metrics = fit(trainer, module, run, train_dataloaders=train_loader, val_dataloaders=val_loader,
                  ckpt_path=resume_path)  # fmt: skip
    extra = {
        "fit/train_seconds": module.train_seconds,
        "fit/patches_per_s": module.train_patches / module.train_seconds if module.train_seconds else 0.0,
        "fit/patches": float(module.train_patches),
    }
    metrics.update(run.write_metrics(extra))
    if test_loader is not None:
        module.test_names = [item.name for item in data.test]
        start = time.perf_counter()
        metrics.update(test(trainer, module, run, dataloaders=test_loader, ckpt_path="best"))
        seconds = time.perf_counter() - start
        pixels = sum(item.shape[0] * item.shape[1] for item in data.test)
        metrics.update(run.write_metrics({"test/seconds": seconds, "test/megapixels_per_s": pixels / 1e6 / seconds}))
        write_csv(module.test_rows, run.path / "test_per_image.csv")
        plot_run(config, run, data.test, module.test_probabilities, float(module.threshold))
    best = run.best_checkpoint if run.best_checkpoint.is_file() else run.last_checkpoint
    if best.is_file():
        from pentad_medseg.module import load_module

        module = load_module(str(best))
    return module, metrics


def plot_run(
    config: MedsegConfig, run: RunDir, images: Sequence[SegImage], probabilities: Sequence[np.ndarray], threshold: float
) -> None:
    """Training curves and an example grid (image | truth | probability | overlay) under ``plots/``."""
    from pentad_core.plotting import plot_curves, read_logged_curves
    from pentad_medseg.outputs import plot_examples

    curves = read_logged_curves(run.logs / "metrics.csv", ["train/loss_epoch"])
    if curves:
        plot_curves(curves, run.plot_path("loss"), ylabel="loss")
    validation = read_logged_curves(run.logs / "metrics.csv", ["val/dice", "val/auc"])
    if validation:
        plot_curves(validation, run.plot_path("validation"), ylabel="score")
    count = min(config.plot_examples, len(images), len(probabilities))
    if count:
        plot_examples(
            [i.image for i in images[:count]], [i.mask for i in images[:count]], probabilities[:count],
            [i.name for i in images[:count]], threshold, run.plot_path("predictions"), [i.fov for i in images[:count]],
        )  # fmt: skip


def evaluate_images(
    module: SegmentationModule, images: Sequence[SegImage], tta: bool | None = None, hd95: bool = True
) -> tuple[dict[str, float], list[dict[str, Any]], list[np.ndarray], float]:
    """Sliding-window inference and metrics on images with masks.

    Returns:
        ``(summary, per-image rows, probabilities, seconds of inference)``.
    """
    if not images:
        raise DataError("no images to evaluate in this split.")
    if any(item.mask is None for item in images):
        raise DataError("evaluation needs ground-truth masks for every image.")
    probabilities = []
    start = time.perf_counter()
    for item in images:
        probabilities.append(module.predict_probabilities(torch.from_numpy(item.image)[None], tta)[0].cpu().numpy())
    seconds = time.perf_counter() - start
    summary, rows = dataset_metrics(
        probabilities, [i.mask for i in images], [i.fov for i in images], [i.name for i in images],
        float(module.threshold), hd95,
    )  # fmt: skip
    return summary, rows, probabilities, seconds
