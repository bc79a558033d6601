"""``apps/vision``: demo, train, evaluate, predict, export, benchmark, explain, compress, serve (+ data,
models). Each verb parses, calls :mod:`pentad_vision.pipeline` or the Predictor, and prints."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pentad_core.checkpoint import atomic_save
from pentad_core.cli import App, Context
from pentad_core.serving import add_serve_arguments
from pentad_vision import pipeline
from pentad_vision.autoconfig import load_self_configured
from pentad_vision.config import VisionConfig
from pentad_vision.data import DATASETS, ImageData, load_dataset
from pentad_vision.models import MODELS
from pentad_vision.predictor import Predictor


def verify(name: str, root: Path) -> str:
    """Load dataset ``name`` from ``root`` (raises DataError when malformed); a one-line summary."""
    return load_dataset(name, root, val_fraction=0.0).summary()


app = App(
    "vision",
    "Image classification (CIFAR, MNIST, your image folders) with pentad's and torchvision's networks.",
    VisionConfig,
    models=MODELS,
    datasets=DATASETS,
    verify_dataset=verify,
    real_dataset="cifar10-jpeg",
)
app.option("--skip-bad", key="skip_bad", action="store_const", const=True, help="skip unreadable images")
app.option("--image-size", key="dataset_options.image_size", type=int, metavar="N", help="resize images to NxN")
app.option("--pretrained", key="pretrained", metavar="PATH", help="fine-tune from a pentad checkpoint")


def _data(context: Context, configure: bool = False) -> ImageData:
    """The dataset; ``configure``: an image folder fingerprinted and self-configured first (training verbs)."""
    load = pipeline.load_data
    data = load_self_configured(context, load) if configure else load(context.config, context.data_root)
    for line in pipeline.describe_data(data):
        context.print(line)
    return data


def _evaluated(context: Context, data: ImageData, net, test_time_augment=None) -> dict[str, float]:
    config: VisionConfig = context.config
    metrics = pipeline.evaluate(
        net, data, context.run, title=f"{config.model} on {config.dataset}",
        batch_size=config.eval_batch_size, test_time_augment=test_time_augment,
    )  # fmt: skip
    _print_test(context, metrics)
    return metrics


def _print_test(context: Context, metrics: dict[str, float]) -> None:
    context.print(
        f"test: top-1 {metrics['test/acc']:.4f}  top-5 {metrics['test/top5']:.4f}  "
        f"balanced {metrics['test/balanced_acc']:.4f}"
    )


def _trained(context: Context, data: ImageData):
    """Train, then report the test metrics of the training run (every rank's share under DDP) and plot them."""
    config: VisionConfig = context.config
    module, metrics = _fit(context, data)
    if pipeline.is_global_zero(module):  # the plots (confusion matrix, mistakes) once, not per process
        pipeline.evaluate(
            module.eval_net, data, context.run, title=f"{config.model} on {config.dataset}",
            batch_size=config.eval_batch_size, test_time_augment=module.test_time_augment, write_metrics=False,
        )  # fmt: skip
    _print_test(context, metrics)
    return module


def _fit(context: Context, data: ImageData):
    config: VisionConfig = context.config
    module, fresh = pipeline.build_module(config, data)
    if fresh:
        context.print(f"fine-tuning from {config.pretrained}; freshly initialised: {', '.join(fresh)}")
    return pipeline.train(config, context.run, data, module, context.resume_path)


# ----------------------------------------------------------------------------- verbs
@app.verb("train", "Train a model on a dataset (recipe shared/configs/vision/<dataset>.yaml).", trains=True)
def train(context: Context) -> None:
    data = _data(context, configure=True)
    _trained(context, data)
    context.print(f"run folder: {context.run.path}")


@app.verb("demo", "Train, evaluate, predict and explain on synthetic shapes, offline, in about a minute.",
          trains=True, dataset="synthetic")  # fmt: skip
def demo(context: Context) -> None:
    start = time.perf_counter()
    data = _data(context)
    module = _trained(context, data)
    if not pipeline.is_global_zero(module):
        return
    predictor = Predictor.from_run(context.run.path)  # what `predict --checkpoint <run>` loads
    sample = data.test.images[:8]
    truth = [data.classes[int(i)] for i in data.test.labels[:8]]
    for index, (guesses, true) in enumerate(zip(predictor.predict(sample, top_k=2), truth)):
        ranked = ", ".join(f"{name} {p:.2f}" for name, p in guesses)
        context.print(f"  test image {index}: true {true:<9} predicted {ranked}")
    path = pipeline.explain(predictor.net, sample, predictor.classes, context.run.plot_path("gradcam"))
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

    args = context.args
    predictor = Predictor.from_run(context.checkpoint)
    data = _data(context)
    pipeline.check_fits(predictor, data)
    _evaluated(context, data, predictor.net, predictor.test_time_augment)
    if args.attack:
        metrics = pipeline.attack_accuracy(
            predictor.net, data.test, context.run, args.attack, parse_eps(args.eps), args.attack_steps,
            context.config.eval_batch_size,
        )  # fmt: skip
        context.print(f"test under {args.attack} (eps {args.eps}): top-1 {metrics[f'test/{args.attack}_acc']:.4f}")


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=3, help="labels per image (default 3)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")


@app.verb("predict", "Top-k labels with probabilities for image files or folders.",
          arguments=_predict_arguments, needs_checkpoint=True)  # fmt: skip
def predict(context: Context) -> None:
    from pentad_core.bench import format_table

    args = context.args
    predictor = Predictor.from_run(context.checkpoint)
    images, files = predictor.load_files(args.inputs, context.config.skip_bad)
    rows = pipeline.prediction_rows(files, predictor.predict(images, top_k=args.top_k))
    _, csv_path = pipeline.write_predictions(rows, context.run.path)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        print(csv_path.read_text(encoding="utf-8"), end="")
    else:
        table = [
            {"file": r["file"], **{f"top{i}": f"{g['label']} {g['probability']:.3f}" for i, g in
                                   enumerate(r["predictions"], start=1)}}
            for r in rows
        ]  # fmt: skip
        print(format_table(table))
    context.run.write_metrics({"predict/images": float(len(rows))})


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")


@app.verb("export", "Export the network (taking [0, 1] images) to ONNX and check parity with PyTorch.",
          arguments=_export_arguments, needs_checkpoint=True)  # fmt: skip
def export(context: Context) -> None:
    predictor = Predictor.from_run(context.checkpoint)
    path = context.run.path / "model.onnx"
    report = pipeline.export_onnx(predictor, path)
    context.run.write_metrics(report)
    c, s = predictor.in_channels, predictor.image_size
    context.print(f"exported {path} (input: float images in [0, 1], shape (N, {c}, {s}, {s})); "
                  f"parity with PyTorch: {report}")  # fmt: skip


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="PATH", help="image files or folders (default: 8 test images)")


@app.verb("explain", "Grad-CAM heatmaps of the predicted class, saved as PNG overlays.",
          arguments=_explain_arguments, needs_checkpoint=True)  # fmt: skip
def explain(context: Context) -> None:
    predictor = Predictor.from_run(context.checkpoint)
    if context.args.inputs:
        images, _ = predictor.load_files(context.args.inputs, context.config.skip_bad)
        images = images[:32]
    else:
        data = _data(context)
        pipeline.check_fits(predictor, data)
        images = data.test.images[:8]
    path = pipeline.explain(predictor.net.cpu(), images, predictor.classes, context.run.plot_path("gradcam"))
    context.print(f"Grad-CAM overlays: {path}")


def _compress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=("dynamic-int8", "static-int8", "prune"), default="dynamic-int8")
    parser.add_argument("--amount", type=float, default=0.5, help="share of weights to prune (prune)")


@app.verb("compress", "Quantise or prune a trained model; size, latency and accuracy before and after.",
          arguments=_compress_arguments, needs_checkpoint=True)  # fmt: skip
def compress_verb(context: Context) -> None:
    from pentad_core.bench import print_table

    args = context.args
    predictor = Predictor.from_run(context.checkpoint)
    data = _data(context)
    pipeline.check_fits(predictor, data)
    small, rows, metrics = pipeline.compress(
        predictor.net, data, args.method, args.amount, context.config.eval_batch_size
    )
    context.run.write_metrics(metrics)
    atomic_save(small.state_dict(), context.run.path / f"model-{args.method}.pt")
    print_table(rows, title=f"compression of {predictor.model_name} ({args.method})")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parity-epochs", type=int, default=5, help="epochs of the side-by-side throughput run")
    parser.add_argument("--skip-parity", action="store_true", help="only run the recipe")


@app.verb("benchmark", "MNIST-10k (or --dataset): the recipe's accuracy and time, plus trainer-vs-plain-loop "
          "throughput side by side.", arguments=_benchmark_arguments, trains=True, dataset="mnist10k")  # fmt: skip
def benchmark(context: Context) -> None:
    from pentad_core.bench import print_table

    data = _data(context, configure=True)
    config: VisionConfig = context.config
    result = pipeline.benchmark(config, context.run, data, context.args.parity_epochs, context.args.skip_parity)
    columns = ["run", "epochs", "test/acc", "train_s", "img_per_s", "total_s"]
    title = f"benchmark: {config.model} on {config.dataset} ({torch.get_num_threads()} threads)"
    print_table(result.rows, title=title, columns=columns)
    if "bench/throughput_ratio" in result.metrics:
        ratio = result.metrics["bench/throughput_ratio"]
        context.print(f"pentad trainer / plain loop throughput: {ratio:.3f}x (same protocol, same process)")


@app.verb("serve", "Serve a run over HTTP: POST /v1/classify (top-k, Grad-CAM), a page, health and metrics.",
          arguments=add_serve_arguments, writes_run=False)  # fmt: skip
def serve(context: Context) -> None:
    from pentad_vision.serving import serve_run  # run_server(build_service(--run or --checkpoint, options))

    serve_run(context)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/vision``."""
    return app.main(argv)
