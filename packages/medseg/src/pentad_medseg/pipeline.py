"""The medseg workflow as plain functions: data -> module -> train/test, and evaluate/predict/export a run.

The CLI, the tests and Python users call these; nothing here prints (results are returned)::

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

from pentad_core.errors import ConfigError, DataError
from pentad_core.files import atomic_write_csv
from pentad_core.registry import accepted_options
from pentad_core.runs import RunDir
from pentad_medseg.config import MedsegConfig
from pentad_medseg.data import SegImage, SegmentationData, list_images, load_dataset, read_image, read_label
from pentad_medseg.data.drive import DRIVE_ANCHORS
from pentad_medseg.data.readers import NIFTI_SUFFIXES
from pentad_medseg.metrics import dataset_metrics
from pentad_medseg.module import SegmentationModule
from pentad_medseg.outputs import save_nifti, save_prediction_pngs
from pentad_medseg.predictor import Predictor
from pentad_medseg.registry import DATASETS
from pentad_medseg.sampling import ImageDataset, ImageShard, PatchDataset, PatchLoader, PatchOrder
from pentad_medseg.transforms import Normalize, build_augmentation, channel_stats

# -- data and module ---------------------------------------------------------------------------------


def load_data(config: MedsegConfig, root: str | Path | None) -> SegmentationData:
    """Load ``config.dataset`` from ``root`` (``None`` for a generated dataset).

    The dataset gets ``config.classes`` and, when it splits at random, ``split_seed = config.seed``;
    ``config.dataset_options`` may set either.

    Raises:
        ConfigError: If an option is unknown to the dataset or the classes disagree.
        DataError: If the files are missing or malformed.
    """
    options: dict[str, Any] = {"classes": config.classes}
    if "split_seed" in accepted_options(DATASETS.get(config.dataset))[0]:
        options["split_seed"] = config.seed
    data = load_dataset(config.dataset, root, **{**options, **config.dataset_options})
    if data.classes != config.classes:
        raise ConfigError(f"dataset {config.dataset} has {data.classes} classes but --classes is {config.classes}.")
    return data


def build_module(config: MedsegConfig, data: SegmentationData) -> tuple[SegmentationModule, int]:
    """A fresh module with the training set's channel statistics, initialised from ``config.pretrained``.

    Returns:
        The module and the number of network tensors copied from ``config.pretrained`` (0 without it).

    Raises:
        ConfigError: If a model or loss option is unknown.
        CheckpointError: If ``config.pretrained`` is unreadable or holds no matching tensor.
    """
    from pentad_core.checkpoint import copy_matching_weights

    mean, std = channel_stats([item.image for item in data.train], [item.fov for item in data.train])
    module = SegmentationModule(
        model=config.model, in_channels=data.in_channels, classes=data.classes,
        model_options=config.network_options(), loss=config.loss, loss_options=dict(config.loss_options),
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, scheduler=config.scheduler,
        max_epochs=config.trainer.max_epochs, mean=mean.tolist(), std=std.tolist(), window=config.window,
        overlap=config.overlap, blending=config.blending, tta=config.tta, threshold=config.threshold,
        infer_batch_size=config.infer_batch_size, hd95=config.hd95, ensemble=config.ensemble,
    )  # fmt: skip
    copied = 0
    if config.pretrained:
        fresh = copy_matching_weights(module, config.pretrained, prefix="net.")
        copied = len(module.state_dict()) - len(fresh)
    return module, copied


def build_loaders(
    config: MedsegConfig, data: SegmentationData, module: SegmentationModule
) -> tuple[PatchLoader, torch.utils.data.DataLoader | None, torch.utils.data.DataLoader | None]:
    """Training patches (normalised, augmented) and whole-image validation/test loaders (raw images).

    The training loader draws :class:`~pentad_medseg.sampling.PatchOrder`'s patches (resumable, one
    share per DDP process); the image loaders take this process's share of the images
    (:class:`~pentad_medseg.sampling.ImageShard`, no padding). Validation is ``None`` when the
    dataset has no validation split: no training image stands in for it.
    """
    mean = module.norm_mean.flatten().numpy()
    std = module.norm_std.flatten().numpy()
    patches = PatchDataset(
        data.train, config.patch_size, config.patches_per_epoch, build_augmentation(config.augment),
        Normalize(mean, std), config.foreground_fraction, config.seed,
    )  # fmt: skip
    loader_options: dict[str, Any] = {"num_workers": config.num_workers}
    if config.num_workers > 0:
        loader_options["persistent_workers"] = True
    train = PatchLoader(patches, batch_size=config.batch_size, sampler=PatchOrder(config.patches_per_epoch),
                        drop_last=False, **loader_options)  # fmt: skip

    def images(split: list[SegImage]) -> torch.utils.data.DataLoader | None:
        if not split:
            return None
        return torch.utils.data.DataLoader(ImageDataset(split), batch_size=1, sampler=ImageShard(len(split)),
                                           **loader_options)  # fmt: skip

    return train, images(data.val), images(data.test)


# -- training ----------------------------------------------------------------------------------------


def train_model(
    config: MedsegConfig,
    run: RunDir,
    data: SegmentationData,
    resume_path: str | Path | None = None,
    module: SegmentationModule | None = None,
) -> tuple[SegmentationModule, dict[str, float]]:
    """Train, then test the best checkpoint; writes metrics.json, the per-image CSV and plots.

    ``config.yaml`` is written first when the run folder has none (the CLI writes it itself), so
    that :meth:`Predictor.from_run <pentad_medseg.predictor.Predictor.from_run>` finds what ran.

    Args:
        config: The run's config.
        run: The run folder.
        data: The loaded dataset.
        resume_path: Checkpoint to continue from.
        module: A module from :func:`build_module`; built here when omitted.

    Returns:
        The module (best weights when a checkpoint was kept) and the merged metrics.
    """
    from pentad_core.checkpoint import load_module
    from pentad_core.training import build_trainer, fit, test

    if not (run.path / RunDir.CONFIG).is_file():
        run.write_config(config)
    if module is None:
        module, _ = build_module(config, data)
    train_loader, val_loader, test_loader = build_loaders(config, data, module)
    # The loaders shard the data over DDP processes themselves (and never pad the images).
    overrides: dict[str, Any] = {"use_distributed_sampler": False}
    trainer = build_trainer(config.trainer, run, has_validation=val_loader is not None,
                            time_budget=config.time_budget, **overrides)  # fmt: skip
    metrics = fit(trainer, module, run, train_dataloaders=train_loader, val_dataloaders=val_loader,
                  ckpt_path=resume_path)  # fmt: skip
    patches = module.train_patches * trainer.world_size  # every process trained on its share
    extra = {
        "fit/train_seconds": module.train_seconds,
        "fit/patches_per_s": patches / module.train_seconds if module.train_seconds else 0.0,
        "fit/patches": float(patches),
    }
    metrics.update(extra)
    if trainer.is_global_zero:
        run.write_metrics(extra)
    if test_loader is not None:
        module.test_names = [item.name for item in data.test]
        start = time.perf_counter()
        metrics.update(test(trainer, module, run, dataloaders=test_loader, ckpt_path="best"))
        seconds = time.perf_counter() - start
        pixels = sum(item.shape[0] * item.shape[1] for item in data.test)
        timing = {"test/seconds": seconds, "test/megapixels_per_s": pixels / 1e6 / seconds}
        metrics.update(timing)
        if trainer.is_global_zero:  # every process holds the whole split's results; one writes them
            run.write_metrics(timing)
            atomic_write_csv(run.path / "test_per_image.csv", module.test_rows)
            plot_run(config, run, data.test, module.test_probabilities, float(module.threshold))
    best = run.best_checkpoint if run.best_checkpoint.is_file() else run.last_checkpoint
    if best.is_file():
        module = load_module(SegmentationModule, best)
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


def benchmark_report(
    config: MedsegConfig, data: SegmentationData, results: Sequence[tuple[str, dict[str, float]]], hardware: str
) -> tuple[list[dict], str]:
    """The comparison table of ``benchmark``: the references, then one measured row per trained model.

    DRIVE is compared with its published and anchor numbers (:data:`~pentad_medseg.data.drive.DRIVE_ANCHORS`);
    any other binary dataset with Otsu's threshold (:mod:`pentad_medseg.baseline`) measured here on the
    same test images, its channel and polarity chosen on the training and validation images.

    Args:
        config: The run's config (its dataset).
        data: The loaded dataset (the baseline's images).
        results: ``(model name, metrics)`` of each trained model.
        hardware: One line describing the machine.

    Returns:
        ``(rows with method/auc/f1/source, summary text)``.
    """
    from pentad_medseg.baseline import otsu_baseline

    if config.dataset == "drive":
        rows = [dict(row) for row in DRIVE_ANCHORS]
    elif data.classes == 2 and data.test:
        metrics, choice = otsu_baseline(data.train + data.val, data.test)
        method = f"Otsu threshold, channel {choice['channel']} {choice['polarity']}"
        rows = [{"method": method, "auc": metrics["auc"], "f1": metrics["dice"], "source": "measured, same split"}]
    else:
        rows = []
    lines = [f"hardware: {hardware}"]
    for model, metrics in results:
        rows.append({
            "method": f"pentad {model} ({config.dataset})",
            "auc": metrics.get("test/auc", float("nan")),
            "f1": metrics.get("test/f1", float("nan")),
            "source": "measured",
        })  # fmt: skip
        lines.append(
            f"{model}: training {metrics.get('fit/seconds', 0) / 60:.1f} min wall clock, "
            f"{metrics.get('fit/patches_per_s', 0):.1f} patches/s; inference "
            f"{metrics.get('test/megapixels_per_s', 0):.3f} megapixels/s"
        )
    return rows, "\n".join(lines) + "\n"


# -- using a trained run ------------------------------------------------------------------------------


def load_predictor(config: MedsegConfig, checkpoint: str | Path) -> Predictor:
    """The predictor of a run folder or checkpoint, with ``config``'s TTA and, where it differs from the
    run's own, ``config``'s threshold (``--threshold`` overrides the stored one; ``null`` keeps it)."""
    predictor = Predictor.from_run(checkpoint, tta=config.tta)
    if config.threshold is not None and config.threshold != predictor.config.threshold:
        predictor.threshold = float(config.threshold)
    return predictor


def evaluate_images(
    predictor: Predictor, images: Sequence[SegImage], hd95: bool = True
) -> tuple[dict[str, float], list[dict[str, Any]], list[np.ndarray], float]:
    """Sliding-window inference and metrics on images with masks.

    Returns:
        ``(summary, per-image rows, probabilities (K, H, W) per image, seconds of inference)``.
    """
    if not images:
        raise DataError("no images to evaluate in this split.")
    if any(item.mask is None for item in images):
        raise DataError("evaluation needs ground-truth masks for every image.")
    start = time.perf_counter()
    probabilities = [predictor.probabilities(item.image) for item in images]
    seconds = time.perf_counter() - start
    summary, rows = dataset_metrics(
        probabilities, [i.mask for i in images], [i.fov for i in images], [i.name for i in images],
        predictor.threshold, hd95,
    )  # fmt: skip
    return summary, rows, probabilities, seconds


def evaluate_split(
    config: MedsegConfig, run: RunDir, predictor: Predictor, images: Sequence[SegImage], split: str
) -> dict[str, float]:
    """Evaluate ``images`` of ``split``: writes ``<split>/*`` metrics, ``<split>_per_image.csv`` and plots."""
    summary, rows, probabilities, seconds = evaluate_images(predictor, images, hd95=config.hd95)
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    metrics = {f"{split}/{k}": v for k, v in summary.items()}
    metrics[f"{split}/megapixels_per_s"] = pixels / 1e6 / seconds
    run.write_metrics(metrics)
    atomic_write_csv(run.path / f"{split}_per_image.csv", rows)
    plot_run(config, run, images, probabilities, predictor.threshold)
    return metrics


def predict_images(predictor: Predictor, images: Sequence[SegImage], out: Path) -> int:
    """Write ``<name>_{prob,mask,overlay}.png`` under ``out`` for each image; returns their count."""
    for item in images:
        if item.image.shape[0] != predictor.in_channels:
            raise DataError(
                f"{item.source or item.name} has {item.image.shape[0]} channel(s); "
                f"the model expects {predictor.in_channels}."
            )
        prediction = predictor.predict(item.image, item.fov)
        save_prediction_pngs(item.name, item.image, prediction.probabilities, predictor.threshold, out, item.mask,
                             item.fov)  # fmt: skip
    return len(images)


def predict_files(predictor: Predictor, path: Path, out: Path, masks: Path | None = None) -> int:
    """Predict an image, a NIfTI volume or every one in a folder; returns the number of inputs.

    Images give PNGs (see :func:`predict_images`; ground truth from ``masks/<stem>.*`` drawn on the
    overlay when given); volumes give ``<stem>_prob.nii.gz`` and ``<stem>_mask.nii.gz`` with the input's affine.
    """
    images: list[SegImage] = []
    volumes = 0
    for file in list_images(path):
        if file.name.lower().endswith(NIFTI_SUFFIXES):
            volume = predictor.predict_volume(file)
            save_nifti(volume.foreground, volume.affine, out / f"{volume.name}_prob.nii.gz")
            save_nifti(volume.labels, volume.affine, out / f"{volume.name}_mask.nii.gz")
            volumes += 1
            continue
        image = read_image(file)
        candidates = sorted(masks.glob(f"{file.stem}.*")) if masks else []
        truth = read_label(candidates[0], predictor.classes) if candidates else None
        images.append(SegImage(file.stem, image, truth, np.ones(image.shape[1:], bool), file))
    return volumes + predict_images(predictor, images, out)


def export_onnx(predictor: Predictor, path: Path, size: int) -> Any:
    """Write the run's network with its normalisation to ONNX (raw image -> logits; dynamic batch, height
    and width) and check it against PyTorch.

    Returns:
        The :class:`~pentad_core.export.ParityReport`.
    """
    return export_network(predictor.network(), predictor.in_channels, path, size)


def export_network(network: torch.nn.Module, channels: int, path: Path, size: int) -> Any:
    """Export ``(B, channels, H, W) -> (B, K, H, W)`` with dynamic batch, height and width, then check it.

    The parity check runs two batches through PyTorch and ONNX Runtime: two ``size`` x ``size`` images and
    one of another, odd size (``size + 13`` x ``size + 7``), so a graph that only takes the example's
    size fails it (:class:`~pentad_core.export.ParityError`).

    Returns:
        The :class:`~pentad_core.export.ParityReport` with the larger difference of the two batches.
    """
    from pentad_core.export import check_onnx_parity
    from pentad_core.export import export_onnx as write_onnx

    axes = {"image": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}}
    write_onnx(network, torch.rand(1, channels, size, size), path, input_names=["image"], output_names=["logits"],
               extra_dynamic_axes=axes)  # fmt: skip
    reports = [
        check_onnx_parity(network, path, torch.rand(2, channels, size, size)),
        check_onnx_parity(network, path, torch.rand(1, channels, size + 13, size + 7)),
    ]
    return max(reports, key=lambda report: report.max_abs_diff)
