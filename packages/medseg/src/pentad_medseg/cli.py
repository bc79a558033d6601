"""``apps/medseg``: demo, train, evaluate, predict, export, benchmark (+ models, data from the core scaffold)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pentad_core.cli import App, Context
from pentad_core.errors import DataError
from pentad_medseg import datasets as _datasets  # noqa: F401  (registers datasets)
from pentad_medseg import losses as _losses  # noqa: F401  (registers losses)
from pentad_medseg import models as _models  # noqa: F401  (registers models)
from pentad_medseg.config import MedsegConfig
from pentad_medseg.datasets import NIFTI_SUFFIXES, SegImage, list_images, nifti_slices, read_image, read_label
from pentad_medseg.metrics import write_csv
from pentad_medseg.module import SegmentationModule, load_module
from pentad_medseg.outputs import labels_from_probabilities, save_nifti, save_prediction_pngs
from pentad_medseg.pipeline import evaluate_images, load_data, plot_run, train_model
from pentad_medseg.registry import DATASETS, MODELS

#: Reference numbers of the issue: published DRIVE results and the plain-PyTorch probe measured here.
DRIVE_ANCHORS = [
    {"method": "U-Net (R2U-Net paper)", "auc": 0.9755, "f1": 0.8142, "source": "published"},
    {"method": "orobix retina-unet", "auc": 0.9790, "f1": 0.8161, "source": "published"},
    {"method": "R2U-Net", "auc": 0.9784, "f1": 0.8171, "source": "published"},
    {"method": "SA-UNet", "auc": 0.9864, "f1": 0.8263, "source": "published"},
    {"method": "plain PyTorch U-Net probe, 15 min 2 CPU cores", "auc": 0.9750, "f1": 0.8149, "source": "anchor"},
]


def verify(name: str, root: Path) -> str:
    """``data verify``: load the dataset fully (raises DataError when malformed) and summarise it."""
    from pentad_medseg.datasets import load_dataset

    return load_dataset(name, root).summary()


app = App(
    "medseg",
    "Medical image segmentation: U-Nets and segmentation-models-pytorch on DRIVE, your own image folders "
    "and NIfTI volumes, with patch training, sliding-window inference and FOV-aware metrics.",
    MedsegConfig,
    models=MODELS,
    datasets=DATASETS,
    verify_dataset=verify,
    real_dataset="drive",
)
app.option("--classes", key="classes", type=int, metavar="N", help="label values incl. background (default 2)")
app.option("--encoder", key="encoder", metavar="NAME", help="smp encoder of smp-* models, e.g. resnet34")
app.option("--pretrained", key="pretrained", metavar="PATH", help="initialise from a project checkpoint")
app.option("--loss", key="loss", metavar="NAME", help="bce, dice, bce-dice, focal, tversky, ce, ce-dice")
app.option("--threshold", key="threshold", type=float, metavar="T", help="binary threshold (default: recipe)")
app.option("--tta", key="tta", action="store_const", const=True, help="flip test-time augmentation")
app.option("--max-minutes", key="max_minutes", type=float, metavar="M", help="training time limit")


def _data_root(context: Context) -> Path | None:
    return None if context.config.dataset == "synthetic" else context.data_root


def _report(context: Context, metrics: dict[str, float], keys: tuple[str, ...] = ()) -> None:
    shown = {k: v for k, v in metrics.items() if not keys or k in keys}
    context.print(" ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))


def _train(context: Context) -> dict[str, float]:
    config, run = context.config, context.run
    data = load_data(config, _data_root(context))
    context.print(f"{config.dataset}: {data.summary()}")
    module, metrics = train_model(config, run, data, context.resume_path)
    context.module = module  # type: ignore[attr-defined]
    context.data = data  # type: ignore[attr-defined]
    _report(context, metrics, ("test/auc", "test/dice", "test/hd95", "fit/patches_per_s", "fit/seconds"))
    context.print(f"run folder: {run.path}")
    return metrics


@app.verb("train", "Train on a dataset (recipe shared/configs/medseg/<dataset>.yaml), then test the best checkpoint.",
          trains=True)  # fmt: skip
def train(context: Context) -> None:
    _train(context)


@app.verb("demo", "Offline end-to-end demo on generated vessel images: train, test, predict, plot.", trains=True,
          dataset="synthetic")  # fmt: skip
def demo(context: Context) -> None:
    start = time.perf_counter()
    _train(context)
    module, data, run = context.module, context.data, context.run  # type: ignore[attr-defined]
    out = run.path / "predictions"
    for item in data.test[: context.config.plot_examples]:
        probabilities = module.predict_probabilities(torch.from_numpy(item.image)[None])[0].numpy()
        save_prediction_pngs(item.name, item.image, probabilities, float(module.threshold), out, item.mask, item.fov)
    context.print(f"demo finished in {time.perf_counter() - start:.0f} s; overlays in {out}, plots in {run.plots}")


def _split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")


@app.verb("evaluate", "Evaluate a checkpoint on a dataset split: metrics.json and a per-image CSV.",
          arguments=_split_arguments, needs_checkpoint=True)  # fmt: skip
def evaluate(context: Context) -> None:
    config, run = context.config, context.run
    module = _load(context)
    data = load_data(config, _data_root(context))
    images = data.split(context.args.split)
    summary, rows, probabilities, seconds = evaluate_images(module, images, hd95=config.hd95)
    split = context.args.split
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    metrics = {f"{split}/{k}": v for k, v in summary.items()}
    metrics[f"{split}/megapixels_per_s"] = pixels / 1e6 / seconds
    run.write_metrics(metrics)
    write_csv(rows, run.path / f"{split}_per_image.csv")
    plot_run(config, run, images, probabilities, float(module.threshold))
    _report(context, metrics)


def _load(context: Context) -> SegmentationModule:
    module = load_module(str(context.checkpoint))
    if context.config.threshold is not None and "threshold" in _explicit_keys(context):
        module.threshold.fill_(context.config.threshold)
    module.hparams.tta = bool(context.config.tta)
    return module


def _explicit_keys(context: Context) -> set[str]:
    keys = set()
    if getattr(context.args, "app_option_threshold", None) is not None:
        keys.add("threshold")
    for text in context.args.set or []:
        keys.add(text.split("=", 1)[0].strip())
    return keys


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="PATH", help="image, NIfTI volume or folder (default: the test split)")
    parser.add_argument("--masks", metavar="DIR", help="ground-truth masks (same stems) drawn on the overlays")


@app.verb("predict", "Predict probability maps, masks and overlays (PNG, or NIfTI for volumes).",
          arguments=_predict_arguments, needs_checkpoint=True)  # fmt: skip
def predict(context: Context) -> None:
    config, run = context.config, context.run
    module = _load(context)
    threshold = float(module.threshold)
    out = run.path / "predictions"
    items: list[SegImage] = []
    count = 0
    if context.args.input:
        for path in list_images(Path(context.args.input)):
            if path.name.lower().endswith(NIFTI_SUFFIXES):
                _predict_volume(module, path, out, threshold)
                count += 1
                continue
            image = read_image(path)
            truth = None
            if context.args.masks:
                candidates = sorted(Path(context.args.masks).glob(f"{path.stem}.*"))
                truth = read_label(candidates[0], module.hparams.classes) if candidates else None
            items.append(SegImage(path.stem, image, truth, np.ones(image.shape[1:], bool), path))
    else:
        items = load_data(config, _data_root(context)).test
    expected = module.hparams.in_channels
    for item in items:
        if item.image.shape[0] != expected:
            raise DataError(
                f"{item.source or item.name} has {item.image.shape[0]} channel(s); the model expects {expected}."
            )
        probabilities = module.predict_probabilities(torch.from_numpy(item.image)[None])[0].numpy()
        save_prediction_pngs(item.name, item.image, probabilities, threshold, out, item.mask, item.fov)
        count += 1
    context.print(f"wrote predictions of {count} input(s) to {out}")


def _predict_volume(module: SegmentationModule, path: Path, out: Path, threshold: float) -> None:
    slices = nifti_slices(path, None, module.hparams.classes)
    if module.hparams.in_channels != 1:
        raise DataError(f"{path} is a single-channel volume; the model expects {module.hparams.in_channels} channels.")
    first = slices[0].meta
    probabilities = np.zeros((*first["volume_shape"], 1 if module.hparams.classes == 2 else module.hparams.classes),
                             np.float32)  # fmt: skip
    for item in slices:
        prob = module.predict_probabilities(torch.from_numpy(item.image)[None])[0].numpy()
        probabilities[:, :, item.meta["slice"], :] = prob.transpose(1, 2, 0)
    labels = labels_from_probabilities(probabilities.transpose(3, 0, 1, 2), threshold).astype(np.uint8)
    stem = first["volume"]
    foreground = probabilities[..., 0] if probabilities.shape[-1] == 1 else 1 - probabilities[..., 0]
    save_nifti(foreground.astype(np.float32), first["affine"], out / f"{stem}_prob.nii.gz")
    save_nifti(labels, first["affine"], out / f"{stem}_mask.nii.gz")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    parser.add_argument("--size", type=int, default=128, help="example input side for the export")


@app.verb("export", "Export a checkpoint's network to ONNX (dynamic batch and size) with a parity check.",
          arguments=_export_arguments, needs_checkpoint=True)  # fmt: skip
def export(context: Context) -> None:
    from pentad_core.export import check_onnx_parity, export_onnx

    module = load_module(str(context.checkpoint))
    network = _NormalizedNetwork(module)
    size = context.args.size
    channels = module.hparams.in_channels
    path = context.run.path / "model.onnx"
    export_onnx(network, torch.rand(1, channels, size, size), path, input_names=["image"], output_names=["logits"],
                extra_dynamic_axes={"image": {2: "height", 3: "width"},
                                    "logits": {2: "height", 3: "width"}})  # fmt: skip
    report = check_onnx_parity(network, path, torch.rand(2, channels, size, size))
    context.run.write_metrics(report.as_metrics())
    context.print(f"wrote {path} (max abs difference to PyTorch {report.max_abs_diff:.2e})")


class _NormalizedNetwork(torch.nn.Module):
    """Raw image -> logits: the training-set normalisation is part of the exported graph."""

    def __init__(self, module: SegmentationModule) -> None:
        super().__init__()
        self.net = module.net
        self.register_buffer("mean", module.norm_mean.clone())
        self.register_buffer("std", module.norm_std.clone())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - self.mean) / self.std)


@app.verb("benchmark", "DRIVE benchmark: train with the recipe's time budget, test inside the FOV, compare anchors.",
          trains=True, dataset="drive")  # fmt: skip
def benchmark(context: Context) -> None:
    from pentad_core.bench import format_table
    from pentad_core.devices import describe_hardware
    from pentad_core.files import atomic_write_text

    metrics = _train(context)
    rows = [dict(row) for row in DRIVE_ANCHORS]
    rows.append({
        "method": f"pentad {context.config.model} ({context.config.dataset})",
        "auc": metrics.get("test/auc", float("nan")),
        "f1": metrics.get("test/f1", float("nan")),
        "source": "measured",
    })  # fmt: skip
    table = format_table(rows, ["method", "auc", "f1", "source"])
    summary = (
        f"hardware: {describe_hardware().summary()}\n"
        f"training: {metrics.get('fit/seconds', 0) / 60:.1f} min wall clock, "
        f"{metrics.get('fit/patches_per_s', 0):.1f} patches/s; inference {metrics.get('test/megapixels_per_s', 0):.3f}"
        " megapixels/s\n"
    )
    atomic_write_text(context.run.path / "benchmark.md", table + "\n\n" + summary)
    context.print(table)
    context.print(summary)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/medseg``."""
    return app.main(argv)
