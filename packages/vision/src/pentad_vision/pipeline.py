"""The vision workflow as plain functions: load data, build the module, fit and test, report, benchmark.

The CLI, the tests and Python users call these; none of them prints (they return values and write
into the run folder they are given). ::

    from pentad_core.runs import RunDir
    from pentad_vision import pipeline
    from pentad_vision.config import VisionConfig

    config = VisionConfig(dataset="synthetic", dataset_options={"num_train": 500, "image_size": 16})
    data = pipeline.load_data(config, root=None)
    module, metrics = pipeline.train(config, RunDir("runs/vision/x"), data)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pentad_core.errors import ConfigError, DataError
from pentad_core.runs import RunDir
from pentad_vision.config import VisionConfig
from pentad_vision.data import DATASETS, ImageData, ImageSplit
from pentad_vision.module import ImageClassifier
from pentad_vision.predictor import Predictor, TopK
from pentad_vision.transforms import TestTimeAugment

#: Datasets that read another dataset's folder when their own default folder does not exist.
SHARED_FOLDERS = {"mnist10k": "mnist"}


# ----------------------------------------------------------------------------- data
def dataset_folder(config: VisionConfig, root: Path | None) -> Path | None:
    """The folder to read ``config.dataset`` from (``None`` for a generated dataset).

    Raises:
        DataError: The folder does not exist (with the commands that fix it).
    """
    if root is None:
        return None
    if not root.exists() and not config.data_dir and config.dataset in SHARED_FOLDERS:
        from pentad_core.data import dataset_root

        root = dataset_root(SHARED_FOLDERS[config.dataset])  # mnist10k reads the mnist folder
    if not root.exists():
        raise DataError(
            f"dataset folder not found: {root}.",
            f"Run `uv run apps/vision data download {config.dataset}`, pass --data-dir, or set PENTAD_DATA.",
        )
    return root


def load_data(config: VisionConfig, root: Path | None) -> ImageData:
    """The configured dataset: ``config.dataset_options`` checked against the loader's signature.

    Args:
        config: The run's config (dataset, its options, ``val_fraction``, ``seed``, ``skip_bad``).
        root: The dataset folder (``context.data_root``); ``None`` for a generated dataset.

    Raises:
        ConfigError: A misspelled dataset option (named, with the valid ones).
        DataError: Missing or malformed files.
    """
    arguments: dict[str, Any] = {"val_fraction": config.val_fraction, "seed": config.seed}
    if config.skip_bad:
        arguments["skip_bad"] = True
    if not DATASETS.info(config.dataset).generated:
        arguments["root"] = dataset_folder(config, root)
    return DATASETS.build(config.dataset, config.dataset_options, **arguments)


def describe_data(data: ImageData) -> list[str]:
    """Lines that tell the user what was loaded: the summary, the dataset's notes, skipped files."""
    lines = [data.summary(), *(f"  {note}" for note in data.notes)]
    if data.skipped:
        lines.append(f"  skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]}")
    return lines


def _names(classes: list[str], limit: int = 12) -> str:
    shown = ", ".join(classes[:limit])
    return f"[{shown}{f', ... ({len(classes)} in all)' if len(classes) > limit else ''}]"


def check_fits(predictor: Predictor, data: ImageData) -> None:
    """Raise when a trained run's classes or channels differ from ``data``'s (evaluating on the wrong dataset).

    The class names must be the same, in the same order: label ``i`` of the data must mean what
    output ``i`` of the network means, or every accuracy would be computed against the wrong labels.

    Raises:
        ConfigError: Other channels, or other class names (both lists named), one line.
    """
    if predictor.in_channels != data.in_channels:
        raise ConfigError(
            f"the checkpoint takes images with {predictor.in_channels} channel(s), "
            f"the dataset {data.name} has {data.in_channels}.",
            "Pass the --dataset the model was trained on.",
        )
    if list(predictor.classes) != list(data.classes):
        order = " (the same names in another order)" if sorted(predictor.classes) == sorted(data.classes) else ""
        raise ConfigError(
            f"the checkpoint's classes {_names(predictor.classes)} differ from the classes of the dataset "
            f"{data.name} {_names(data.classes)}{order}.",
            "Evaluate on data with the classes the model was trained on.",
        )


# ----------------------------------------------------------------------------- training
def build_module(config: VisionConfig, data: ImageData) -> tuple[ImageClassifier, list[str]]:
    """A fresh :class:`ImageClassifier` for ``data``, fine-tuned from ``config.pretrained`` (run or checkpoint).

    Returns:
        ``(module, fresh)``: ``fresh`` names the tensors ``--pretrained`` did not provide (empty without it).

    Raises:
        ConfigError: Unknown model or misspelled ``model_options``.
        CheckpointError: ``--pretrained`` holds another model or nothing that fits.
    """
    module = ImageClassifier(
        config.model,
        data.num_classes,
        data.in_channels,
        data.image_size,
        data.mean,
        data.std,
        data.classes,
        optim=vars(config.optim).copy(),
        augment=vars(config.augment).copy(),
        model_options=dict(config.model_options),
        freeze_backbone_epochs=config.freeze_backbone_epochs if config.pretrained else 0,
        ensemble=config.ensemble,
    )
    if not config.pretrained:
        return module, []
    from pentad_core.predictor import locate_run

    return module, module.load_pretrained(locate_run(config.pretrained).checkpoint)  # a run folder or a file


def train(
    config: VisionConfig,
    run: RunDir,
    data: ImageData,
    module: ImageClassifier | None = None,
    resume: Path | None = None,
) -> tuple[ImageClassifier, dict[str, float]]:
    """Fit ``module`` (default: :func:`build_module`) on ``data``, then test the best (or last) checkpoint.

    Without a validation split the trainer keeps the last checkpoint instead of monitoring ``val/*``.
    Writes checkpoints, logs, ``metrics.json`` (``fit/*``, ``test/*``) and ``plots/curves.png`` into ``run``.
    In a distributed run (``--strategy ddp``) the ``val/*`` and ``test/*`` metrics cover every rank's
    share of the images, each image once, and only rank 0 writes the files.

    Returns:
        ``(module, metrics)``: the module holds the tested weights; ``metrics`` holds ``fit/*``, the
        last ``val/*`` and ``test/*`` (``acc``, ``top5``, ``balanced_acc``, ``loss``, ``acc_class/<name>``).
    """
    from pentad_core.plotting import plot_curves, read_logged_curves
    from pentad_core.training import build_trainer, fit, test
    from pentad_vision.module import VisionDataModule

    if module is None:
        module, _ = build_module(config, data)
    datamodule = VisionDataModule(
        data, config.batch_size, config.num_workers, config.seed, config.augment.trivial_augment, config.eval_batch_size
    )
    trainer = build_trainer(config.trainer, run, has_validation=data.val is not None, time_budget=config.time_budget)
    metrics = fit(trainer, module, run, datamodule=datamodule, ckpt_path=resume)
    metrics.update(test(trainer, module, run, datamodule=datamodule, ckpt_path="best"))
    if metrics.get("fit/seconds"):
        metrics["fit/images_per_second"] = len(data.train) * metrics.get("fit/epochs", 0) / metrics["fit/seconds"]
    if not trainer.is_global_zero:  # one process writes the run's files
        return module, metrics
    if "fit/images_per_second" in metrics:
        run.write_metrics({"fit/images_per_second": metrics["fit/images_per_second"]})
    curves = read_logged_curves(run.logs / "metrics.csv", ["train/loss_epoch", "val/loss", "val/acc", "train/acc"])
    if curves:
        plot_curves(curves, run.plot_path("curves"))
    return module, metrics


def is_global_zero(module: ImageClassifier) -> bool:
    """Whether this process writes the run's reports: True unless ``module`` was trained here as rank > 0."""
    trainer = module._trainer
    return trainer is None or trainer.is_global_zero


# ----------------------------------------------------------------------------- evaluation
def evaluate(
    net: nn.Module,
    data: ImageData,
    run: RunDir,
    *,
    title: str,
    batch_size: int = 256,
    test_time_augment: TestTimeAugment | None = None,
    prefix: str = "test",
    mistakes: bool = True,
    write_metrics: bool = True,
) -> dict[str, float]:
    """Evaluate ``net`` (taking ``[0, 1]`` images) on the test split, in this process.

    Writes ``metrics.json`` (``<prefix>/acc``, ``top5``, ``balanced_acc``, ``loss``, ``acc_class/<name>``;
    not with ``write_metrics=False``), ``plots/confusion_matrix.png`` and, with ``mistakes``,
    ``plots/mistakes.png``.

    Returns:
        The metrics.
    """
    from pentad_vision.evaluation import evaluate_split, plot_confusion, plot_mistakes

    evaluation = evaluate_split(net.cpu(), data.test, batch_size=batch_size, test_time_augment=test_time_augment)
    values = evaluation.meter.compute()
    metrics = {f"{prefix}/{k}": v for k, v in values.items()}
    for name, value in zip(data.classes, evaluation.meter.per_class_accuracy().tolist()):
        if value == value:  # not nan: the class occurs in the test split
            metrics[f"{prefix}/acc_class/{name}"] = value
    plot_confusion(
        evaluation.meter.confusion, data.classes, run.plot_path("confusion_matrix"),
        title=f"{title}: top-1 {values['acc']:.4f}",
    )  # fmt: skip
    if mistakes:
        plot_mistakes(evaluation, data.test, run.plot_path("mistakes"))
    if write_metrics:
        run.write_metrics(metrics)
    return metrics


def attack_accuracy(
    net: nn.Module, split: ImageSplit, run: RunDir, attack: str, eps: float, steps: int, batch_size: int = 256
) -> dict[str, float]:
    """Test accuracy under an FGSM or PGD attack of radius ``eps``; writes ``test/<attack>_acc`` and ``_eps``."""
    from pentad_vision.evaluation import evaluate_split

    if steps < 1:
        raise ConfigError(f"--attack-steps must be at least 1, got {steps}.")
    evaluation = evaluate_split(net, split, batch_size=batch_size, attack_name=attack, eps=eps, attack_steps=steps)
    metrics = {f"test/{attack}_acc": evaluation.meter.compute()["acc"], f"test/{attack}_eps": eps}
    run.write_metrics(metrics)
    return metrics


def explain(net: nn.Module, images: torch.Tensor, classes: list[str], path: Path) -> Path:
    """Grad-CAM of the predicted class over ``images`` (``(N, C, H, W)``), captioned, saved as a PNG grid."""
    from pentad_vision.evaluation import plot_grid
    from pentad_vision.gradcam import GradCAM, overlay
    from pentad_vision.module import to_unit

    x = to_unit(images)
    heatmaps, predicted = GradCAM(net)(x)
    with torch.no_grad():
        probabilities = net(x).softmax(1)
    overlays = [overlay(image, heat) for image, heat in zip(x, heatmaps)]
    captions = [f"{classes[int(c)][:12]} ({float(probabilities[i, c]):.2f})" for i, c in enumerate(predicted)]
    return plot_grid(x, captions, path, title="Grad-CAM of the predicted class", overlays=overlays)


# ----------------------------------------------------------------------------- prediction and export
def prediction_rows(files: list[Path], predictions: list[TopK]) -> list[dict[str, Any]]:
    """One row per file: ``{"file", "predictions": [{"label", "probability"}, ...]}`` (probabilities to 6 places)."""
    return [
        {"file": str(path), "predictions": [{"label": n, "probability": round(p, 6)} for n, p in guesses]}
        for path, guesses in zip(files, predictions)
    ]


def write_predictions(rows: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """``predictions.json`` (nested rows) and ``predictions.csv`` (``file, rank, label, probability``) in ``folder``."""
    from pentad_core.files import atomic_write_csv, atomic_write_json

    flat = [
        {"file": row["file"], "rank": rank, "label": guess["label"], "probability": guess["probability"]}
        for row in rows
        for rank, guess in enumerate(row["predictions"], start=1)
    ]
    atomic_write_json(folder / "predictions.json", rows)
    csv_path = atomic_write_csv(folder / "predictions.csv", flat, ["file", "rank", "label", "probability"])
    return folder / "predictions.json", csv_path


def export_onnx(predictor: Predictor, path: Path) -> dict[str, float]:
    """The network taking float images in ``[0, 1]`` (normalisation inside) as ONNX, dynamic batch.

    Returns:
        The parity check against PyTorch on random images (``export/...`` metrics).
    """
    from pentad_core.export import check_onnx_parity, export_onnx

    net = predictor.net.cpu().eval()
    shape = (predictor.in_channels, predictor.image_size, predictor.image_size)
    export_onnx(net, torch.rand(2, *shape), path)
    return check_onnx_parity(net, path, torch.rand(3, *shape), tolerance=1e-3).as_metrics()


# ----------------------------------------------------------------------------- compression and benchmark
def compress(
    net: nn.Module, data: ImageData, method: str, amount: float = 0.5, batch_size: int = 256
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, float]]:
    """Quantise or prune ``net``; size, gzip size, latency per 64 images and test accuracy before and after.

    Returns:
        ``(compressed network, table rows, compress/* metrics)``.
    """
    from pentad_core.bench import time_callable
    from pentad_vision.compress import compress as compress_net
    from pentad_vision.compress import compressed_bytes, sparsity, state_dict_bytes
    from pentad_vision.evaluation import evaluate_split
    from pentad_vision.module import to_unit

    net = net.cpu().eval()
    calibration = [to_unit(data.train.images[i : i + 64]) for i in range(0, min(len(data.train), 512), 64)]
    small = compress_net(net, method, amount=amount, calibration=calibration, example=calibration[0])
    batch = to_unit(data.test.images[:64])
    rows, metrics = [], {}
    for label, model in (("original", net), (method, small)):
        with torch.no_grad():
            timing = time_callable(lambda m=model: m(batch), warmup=2, repeats=7)
        accuracy = evaluate_split(model, data.test, batch_size=batch_size).meter.compute()["acc"]
        row = {
            "model": label, "test/acc": accuracy, "size_mb": state_dict_bytes(model) / 2**20,
            "gzip_mb": compressed_bytes(model) / 2**20, "ms_per_64": timing.median * 1000,
            "sparsity": sparsity(model) if label == "original" or method == "prune" else float("nan"),
        }  # fmt: skip
        rows.append(row)
        key = "original" if label == "original" else "compressed"
        metrics.update({f"compress/{key}_{k.replace('test/', '')}": v for k, v in row.items() if k != "model"})
    metrics["test/acc"] = rows[1]["test/acc"]
    return small, rows, metrics


@dataclass
class BenchmarkResult:
    """Rows of the benchmark table and the ``bench/*`` metrics (written into the run)."""

    rows: list[dict[str, Any]]
    metrics: dict[str, float]


def benchmark(
    config: VisionConfig, run: RunDir, data: ImageData, parity_epochs: int = 5, skip_parity: bool = False
) -> BenchmarkResult:
    """A plain PyTorch loop and pentad's trainer on the same protocol (unless ``skip_parity``), then the recipe."""
    from pentad_vision.benchmark import parity_run

    rows: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    if not skip_parity:
        parity = parity_run(data, config.model, parity_epochs, config.seed, run)
        rows += parity["rows"]
        metrics.update(parity["metrics"])
        run.write_metrics(parity["metrics"])
    start = time.perf_counter()
    _, trained = train(config, run, data)
    rows.append({
        "run": f"pentad recipe ({config.dataset}.yaml)", "epochs": trained.get("fit/epochs", 0),
        "test/acc": trained.get("test/acc", float("nan")), "train_s": trained.get("fit/seconds", float("nan")),
        "img_per_s": trained.get("fit/images_per_second", float("nan")), "total_s": time.perf_counter() - start,
    })  # fmt: skip
    metrics["bench/recipe_total_seconds"] = rows[-1]["total_s"]
    run.write_metrics({"bench/recipe_total_seconds": rows[-1]["total_s"]})
    return BenchmarkResult(rows, {**trained, **metrics})
