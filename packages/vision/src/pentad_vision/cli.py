"""``apps/vision``: image classification from the command line.

Verbs: demo, train, evaluate, predict, export, benchmark, explain, compress (+ data, models).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pentad_core.cli import App, Context, RunConfig
from pentad_core.data import RemoteFile
from pentad_core.errors import ConfigError, DataError
from pentad_core.training import TrainerConfig
from pentad_vision.config import AugmentConfig, OptimConfig
from pentad_vision.data import ImageData, load_dataset
from pentad_vision.data.remote import SOURCES
from pentad_vision.models import MODELS
from pentad_vision.registry import DATASETS

#: Datasets that read another dataset's folder when their own default folder does not exist.
SHARED_FOLDERS = {"mnist10k": "mnist"}


def _vision_trainer() -> TrainerConfig:
    return TrainerConfig(max_epochs=10, monitor="val/acc", monitor_mode="max")


@dataclass
class VisionConfig(RunConfig):
    """Settings of the vision app (the common ones are in RunConfig)."""

    #: Registered model name (see `models`).
    model: str = "seed-convnet"
    #: Samples per training batch.
    batch_size: int = 128
    #: Samples per evaluation batch.
    eval_batch_size: int = 256
    #: Share of the training images held out for validation (0: train on all, keep the last checkpoint).
    val_fraction: float = 0.1
    #: Resize images to this square side (image folders with mixed sizes; null keeps the size).
    image_size: int | None = None
    #: Image channels for image folders: 3 (RGB) or 1 (grey).
    channels: int = 3
    #: Skip unreadable images (listed in the log) instead of failing.
    skip_bad: bool = False
    #: Synthetic dataset: training images.
    synthetic_train: int = 2000
    #: Synthetic dataset: test images.
    synthetic_test: int = 500
    #: Synthetic dataset: number of shape classes (2-8).
    synthetic_classes: int = 4
    #: Synthetic dataset: image side in pixels.
    synthetic_size: int = 32
    #: Extra keyword arguments of the model factory (e.g. {hidden: 256} for seed-convnet).
    model_options: dict = field(default_factory=dict)
    #: torchvision published weights for torchvision families (DEFAULT or an enum name; needs the network once).
    weights: str | None = None
    #: Fine-tune from a checkpoint of an earlier pentad run (new head when the class count differs).
    pretrained: str | None = None
    #: With --pretrained: train only the head for this many epochs first.
    freeze_backbone_epochs: int = 0
    #: Optimiser, schedule and loss.
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: Training augmentation and test-time flips.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: Lightning trainer settings.
    trainer: TrainerConfig = field(default_factory=_vision_trainer)


def _remote_files() -> dict[str, list[RemoteFile]]:
    return {
        name: [RemoteFile(s.url, s.filename, md5=s.md5, extract=s.extract) for s in sources]
        for name, sources in SOURCES.items()
    }


def verify(name: str, root: Path) -> str:
    """Load dataset ``name`` from ``root`` (raises DataError when malformed); a one-line summary."""
    return load_dataset(name, root, val_fraction=0.0).summary()


app = App(
    "vision",
    "Image classification (CIFAR, MNIST, your image folders) with pentad's and torchvision's networks.",
    VisionConfig,
    models=MODELS,
    datasets=DATASETS,
    remote_files=_remote_files(),
    verify_dataset=verify,
    real_dataset="cifar10-jpeg",
)
app.option("--skip-bad", key="skip_bad", action="store_const", const=True, help="skip unreadable images")
app.option("--image-size", key="image_size", type=int, metavar="N", help="resize images to NxN")
app.option("--pretrained", key="pretrained", metavar="PATH", help="fine-tune from a pentad checkpoint")


# ----------------------------------------------------------------------------- shared steps
def load_data(context: Context, config: VisionConfig | None = None) -> ImageData:
    """The configured dataset; prints its summary and notes."""
    config = config or context.config
    root = None if config.dataset == "synthetic" else context.data_root
    if root is not None and not root.exists() and not config.data_dir and config.dataset in SHARED_FOLDERS:
        from pentad_core.data import dataset_root

        root = dataset_root(SHARED_FOLDERS[config.dataset])  # mnist10k reads the mnist folder
    if root is not None and not root.exists():
        raise DataError(
            f"dataset folder not found: {root}.",
            f"Run `uv run apps/vision data download {config.dataset}`, pass --data-dir, or set PENTAD_DATA.",
        )
    data = load_dataset(
        config.dataset,
        root,
        val_fraction=config.val_fraction,
        seed=config.seed,
        skip_bad=config.skip_bad or None,
        image_size=config.synthetic_size if config.dataset == "synthetic" else config.image_size,
        channels=config.channels if config.dataset == "imagefolder" else None,
        num_train=config.synthetic_train if config.dataset == "synthetic" else None,
        num_test=config.synthetic_test if config.dataset == "synthetic" else None,
        num_classes=config.synthetic_classes if config.dataset == "synthetic" else None,
    )
    context.print(data.summary())
    for note in data.notes:
        context.print(f"  {note}")
    if data.skipped:
        context.print(f"  skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]}")
    return data


def build_module(config: VisionConfig, data: ImageData):
    """A fresh :class:`ImageClassifier` for ``data`` (fine-tuned from ``--pretrained`` if given)."""
    from pentad_core.checkpoint import load_checkpoint
    from pentad_vision.module import ImageClassifier

    model_kwargs = dict(config.model_options)
    if config.weights:
        model_kwargs["weights"] = config.weights
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
        model_kwargs=model_kwargs,
        freeze_backbone_epochs=config.freeze_backbone_epochs if config.pretrained else 0,
    )
    if config.pretrained:
        fresh = module.load_pretrained(load_checkpoint(config.pretrained))
        module.print_fresh = fresh
    return module


def load_module(path: Path):
    """The :class:`ImageClassifier` stored in a checkpoint (``weights_only=True``)."""
    from pentad_core.checkpoint import load_checkpoint
    from pentad_core.errors import CheckpointError
    from pentad_vision.module import ImageClassifier

    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of apps/vision (no hyper_parameters/state_dict).")
    try:
        return ImageClassifier.from_checkpoint_dict(checkpoint)
    except (RuntimeError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this version of apps/vision ({error}).") from None


def _train(context: Context, data: ImageData) -> tuple[Any, dict[str, float]]:
    from pentad_core.plotting import plot_curves, read_logged_curves
    from pentad_core.training import build_trainer, fit, test
    from pentad_vision.module import VisionDataModule

    config: VisionConfig = context.config
    run = context.run
    trainer_config = config.trainer
    if data.val is None and trainer_config.monitor.startswith("val/"):
        # No validation split: keep the last checkpoint instead of monitoring a metric that never comes.
        trainer_config = TrainerConfig(**{**vars(trainer_config), "monitor": "", "early_stopping_patience": 0})
    module = build_module(config, data)
    if getattr(module, "print_fresh", None):
        context.print(f"fine-tuning from {config.pretrained}; freshly initialised: {', '.join(module.print_fresh)}")
    datamodule = VisionDataModule(
        data, config.batch_size, config.num_workers, config.seed, config.augment.trivial_augment, config.eval_batch_size
    )
    overrides = {"limit_val_batches": 0} if data.val is None else {}
    trainer = build_trainer(trainer_config, run, **overrides)
    metrics = fit(trainer, module, run, datamodule=datamodule, ckpt_path=context.resume_path)
    metrics.update(test(trainer, module, run, datamodule=datamodule, ckpt_path="best"))
    seen = len(data.train) * metrics.get("fit/epochs", 0)
    if metrics.get("fit/seconds"):
        metrics["fit/images_per_second"] = seen / metrics["fit/seconds"]
    run.write_metrics({k: v for k, v in metrics.items() if k == "fit/images_per_second"})
    curves = read_logged_curves(run.logs / "metrics.csv", ["train/loss_epoch", "val/loss", "val/acc", "train/acc"])
    if curves:
        plot_curves(curves, run.plot_path("curves"))
    return module, metrics


def _report(context: Context, data: ImageData, module, prefix: str = "test", mistakes: bool = True) -> dict[str, float]:
    """Evaluate on the test split: metrics, per-class accuracy, confusion matrix and mistakes PNGs."""
    from pentad_vision.evaluation import evaluate_split, plot_confusion, plot_mistakes

    config: VisionConfig = context.config
    evaluation = evaluate_split(
        module.eval_net.cpu(), data.test, batch_size=config.eval_batch_size, test_time_augment=module.test_time_augment
    )
    values = evaluation.meter.compute()
    metrics = {f"{prefix}/{k}": v for k, v in values.items()}
    per_class = evaluation.meter.per_class_accuracy().tolist()
    for name, value in zip(data.classes, per_class):
        if value == value:  # not nan
            metrics[f"{prefix}/acc_class/{name}"] = value
    run = context.run
    plot_confusion(
        evaluation.meter.confusion, data.classes, run.plot_path("confusion_matrix"),
        title=f"{config.model} on {config.dataset}: top-1 {values['acc']:.4f}",
    )  # fmt: skip
    if mistakes:
        plot_mistakes(evaluation, data.test, run.plot_path("mistakes"))
    run.write_metrics(metrics)
    context.print(
        f"{prefix}: top-1 {values['acc']:.4f}  top-5 {values['top5']:.4f}  balanced {values['balanced_acc']:.4f}"
    )
    return metrics


def _explain(context: Context, net, images: torch.Tensor, classes: list[str], name: str = "gradcam") -> Path:
    from pentad_vision.evaluation import plot_grid
    from pentad_vision.gradcam import GradCAM, overlay
    from pentad_vision.module import to_unit

    x = to_unit(images)
    heatmaps, predicted = GradCAM(net)(x)
    with torch.no_grad():
        probabilities = net(x).softmax(1)
    overlays = [overlay(image, heat) for image, heat in zip(x, heatmaps)]
    captions = [f"{classes[int(c)][:12]} ({float(probabilities[i, c]):.2f})" for i, c in enumerate(predicted)]
    return plot_grid(
        x, captions, context.run.plot_path(name), title="Grad-CAM of the predicted class", overlays=overlays
    )


# ----------------------------------------------------------------------------- verbs
@app.verb("train", "Train a model on a dataset (recipe shared/configs/vision/<dataset>.yaml).", trains=True)
def train(context: Context) -> None:
    data = load_data(context)
    module, _metrics = _train(context, data)
    _report(context, data, module)
    context.print(f"run folder: {context.run.path}")


@app.verb("demo", "Train, evaluate, predict and explain on synthetic shapes, offline, in about a minute.",
          trains=True, dataset="synthetic")  # fmt: skip
def demo(context: Context) -> None:
    from pentad_vision.evaluation import predict_logits, top_k

    start = time.perf_counter()
    data = load_data(context)
    module, _ = _train(context, data)
    _report(context, data, module)
    net = module.eval_net.cpu().eval()
    sample = data.test.images[:8]
    predictions = top_k(predict_logits(net, sample).softmax(1), data.classes, 2)
    truth = [data.classes[int(i)] for i in data.test.labels[:8]]
    for index, (guesses, true) in enumerate(zip(predictions, truth)):
        ranked = ", ".join(f"{name} {p:.2f}" for name, p in guesses)
        context.print(f"  test image {index}: true {true:<9} predicted {ranked}")
    path = _explain(context, net, sample, data.classes)
    context.run.write_metrics({"demo/seconds": time.perf_counter() - start})
    context.print(f"plots in {path.parent}; run folder: {context.run.path}")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attack", choices=("fgsm", "pgd"), help="also report accuracy under this attack")
    parser.add_argument("--eps", default="8/255", help="attack radius in [0, 1] pixel units (default 8/255)")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps (default 10)")


@app.verb("evaluate", "Top-1/top-5/per-class accuracy, confusion matrix and mistakes; optional attacks.",
          arguments=_evaluate_arguments, needs_checkpoint=True)  # fmt: skip
def evaluate(context: Context) -> None:
    from pentad_vision.attacks import parse_eps
    from pentad_vision.evaluation import evaluate_split

    module = load_module(context.checkpoint)
    data = load_data(context)
    _check_fits(module, data)
    _report(context, data, module)
    args = context.args
    if args.attack:
        eps = parse_eps(args.eps)
        if args.attack_steps < 1:
            raise ConfigError(f"--attack-steps must be at least 1, got {args.attack_steps}.")
        evaluation = evaluate_split(
            module.eval_net, data.test, batch_size=context.config.eval_batch_size,
            attack_name=args.attack, eps=eps, attack_steps=args.attack_steps,
        )  # fmt: skip
        accuracy = evaluation.meter.compute()["acc"]
        context.run.write_metrics({f"test/{args.attack}_acc": accuracy, f"test/{args.attack}_eps": eps})
        context.print(f"test under {args.attack} (eps {args.eps}): top-1 {accuracy:.4f}")


def _check_fits(module, data: ImageData) -> None:
    hp = module.hparams
    if hp.num_classes != data.num_classes or hp.in_channels != data.in_channels:
        raise ConfigError(
            f"the checkpoint is for {hp.num_classes} classes and {hp.in_channels} channels, the dataset "
            f"{data.name} has {data.num_classes} and {data.in_channels}.",
            "Pass the --dataset the model was trained on.",
        )


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=3, help="labels per image (default 3)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")


@app.verb("predict", "Top-k labels with probabilities for image files or folders.",
          arguments=_predict_arguments, needs_checkpoint=True)  # fmt: skip
def predict(context: Context) -> None:
    from pentad_core.bench import format_table
    from pentad_core.files import atomic_write_json, atomic_write_text
    from pentad_vision.evaluation import collect_image_files, load_image_files, predict_logits, top_k

    args = context.args
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}.")
    module = load_module(context.checkpoint)
    hp = module.hparams
    files = collect_image_files(args.inputs)
    images, files = load_image_files(files, hp.image_size, hp.in_channels, context.config.skip_bad)
    probabilities = predict_logits(module.eval_net, images, test_time_augment=module.test_time_augment).softmax(1)
    rows = []
    for path, guesses in zip(files, top_k(probabilities, module.classes, args.top_k)):
        rows.append({"file": str(path), "predictions": [{"label": n, "probability": round(p, 6)} for n, p in guesses]})
    atomic_write_json(context.run.path / "predictions.json", rows)
    flat = [
        {"file": r["file"], "rank": i + 1, "label": g["label"], "probability": g["probability"]}
        for r in rows
        for i, g in enumerate(r["predictions"])
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["file", "rank", "label", "probability"])
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(context.run.path / "predictions.csv", buffer.getvalue())
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        print(buffer.getvalue(), end="")
    else:
        table = []
        for r in rows:
            ranked = {f"top{i + 1}": f"{g['label']} {g['probability']:.3f}" for i, g in enumerate(r["predictions"])}
            table.append({"file": r["file"], **ranked})
        print(format_table(table))
    context.run.write_metrics({"predict/images": float(len(rows))})


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")


@app.verb("export", "Export the network (taking [0, 1] images) to ONNX and check parity with PyTorch.",
          arguments=_export_arguments, needs_checkpoint=True)  # fmt: skip
def export(context: Context) -> None:
    from pentad_core.export import check_onnx_parity, export_onnx

    module = load_module(context.checkpoint)
    hp = module.hparams
    net = module.eval_net.cpu().eval()
    example = torch.rand(2, hp.in_channels, hp.image_size, hp.image_size)
    path = export_onnx(net, example, context.run.path / "model.onnx")
    report = check_onnx_parity(net, path, torch.rand(3, hp.in_channels, hp.image_size, hp.image_size), tolerance=1e-3)
    context.run.write_metrics(report.as_metrics())
    context.print(f"exported {path} (input: float images in [0, 1], shape (N, {hp.in_channels}, {hp.image_size}, "
                  f"{hp.image_size})); parity with PyTorch: {report.as_metrics()}")  # fmt: skip


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="PATH", help="image files or folders (default: 8 test images)")


@app.verb("explain", "Grad-CAM heatmaps of the predicted class, saved as PNG overlays.",
          arguments=_explain_arguments, needs_checkpoint=True)  # fmt: skip
def explain(context: Context) -> None:
    from pentad_vision.evaluation import collect_image_files, load_image_files

    module = load_module(context.checkpoint)
    hp = module.hparams
    if context.args.inputs:
        files = collect_image_files(context.args.inputs)[:32]
        images, _ = load_image_files(files, hp.image_size, hp.in_channels, context.config.skip_bad)
    else:
        data = load_data(context)
        _check_fits(module, data)
        images = data.test.images[:8]
    path = _explain(context, module.eval_net.cpu(), images, module.classes)
    context.print(f"Grad-CAM overlays: {path}")


def _compress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=("dynamic-int8", "static-int8", "prune"), default="dynamic-int8")
    parser.add_argument("--amount", type=float, default=0.5, help="share of weights to prune (prune)")


@app.verb("compress", "Quantise or prune a trained model; size, latency and accuracy before and after.",
          arguments=_compress_arguments, needs_checkpoint=True)  # fmt: skip
def compress_verb(context: Context) -> None:
    from pentad_core.bench import print_table, time_callable
    from pentad_vision.compress import compress, compressed_bytes, sparsity, state_dict_bytes
    from pentad_vision.evaluation import evaluate_split
    from pentad_vision.module import to_unit

    args = context.args
    module = load_module(context.checkpoint)
    data = load_data(context)
    _check_fits(module, data)
    net = module.eval_net.cpu().eval()
    calibration = [to_unit(data.train.images[i : i + 64]) for i in range(0, min(len(data.train), 512), 64)]
    example = calibration[0]
    small = compress(net, args.method, amount=args.amount, calibration=calibration, example=example)
    batch = to_unit(data.test.images[:64])
    rows, metrics = [], {}
    for label, model in (("original", net), (args.method, small)):
        with torch.no_grad():
            timing = time_callable(lambda m=model: m(batch), warmup=2, repeats=7)
        accuracy = evaluate_split(model, data.test, batch_size=context.config.eval_batch_size).meter.compute()["acc"]
        row = {
            "model": label, "test/acc": accuracy, "size_mb": state_dict_bytes(model) / 2**20,
            "gzip_mb": compressed_bytes(model) / 2**20, "ms_per_64": timing.median * 1000,
            "sparsity": sparsity(model) if label == "original" or args.method == "prune" else float("nan"),
        }  # fmt: skip
        rows.append(row)
        key = "original" if label == "original" else "compressed"
        metrics.update({f"compress/{key}_{k.replace('test/', '')}": v for k, v in row.items() if k != "model"})
    metrics["test/acc"] = rows[1]["test/acc"]
    context.run.write_metrics(metrics)
    torch.save(small.state_dict(), context.run.path / f"model-{args.method}.pt")
    print_table(rows, title=f"compression of {module.hparams.model} ({args.method})")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parity-epochs", type=int, default=5, help="epochs of the side-by-side throughput run")
    parser.add_argument("--skip-parity", action="store_true", help="only run the recipe")


@app.verb("benchmark", "MNIST-10k (or --dataset): the recipe's accuracy and time, plus trainer-vs-plain-loop "
          "throughput side by side.", arguments=_benchmark_arguments, trains=True, dataset="mnist10k")  # fmt: skip
def benchmark(context: Context) -> None:
    from pentad_core.bench import print_table
    from pentad_vision.benchmark import parity_run

    config: VisionConfig = context.config
    data = load_data(context)
    rows = []
    if not context.args.skip_parity:
        parity = parity_run(data, config.model, context.args.parity_epochs, config.seed, context.run)
        rows += parity["rows"]
        context.run.write_metrics(parity["metrics"])
    start = time.perf_counter()
    _module, metrics = _train(context, data)
    rows.append({
        "run": f"pentad recipe ({config.dataset}.yaml)", "epochs": metrics.get("fit/epochs", 0),
        "test/acc": metrics.get("test/acc", float("nan")), "train_s": metrics.get("fit/seconds", float("nan")),
        "img_per_s": metrics.get("fit/images_per_second", float("nan")), "total_s": time.perf_counter() - start,
    })  # fmt: skip
    context.run.write_metrics({"bench/recipe_total_seconds": rows[-1]["total_s"]})
    columns = ["run", "epochs", "test/acc", "train_s", "img_per_s", "total_s"]
    title = f"benchmark: {config.model} on {config.dataset} ({torch.get_num_threads()} threads)"
    print_table(rows, title=title, columns=columns)
    if "bench/throughput_ratio" in context.run.read_metrics():
        ratio = context.run.read_metrics()["bench/throughput_ratio"]
        context.print(f"pentad trainer / plain loop throughput: {ratio:.3f}x (same protocol, same process)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/vision``."""
    return app.main(argv)
