"""``apps/medseg``: demo, train, evaluate, predict, export, benchmark, serve (+ models, data from the core scaffold).

Verbs only: each parses its options, calls :mod:`pentad_medseg.pipeline` or the
:class:`~pentad_medseg.predictor.Predictor`, and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from pentad_core.cli import App, Context
from pentad_core.errors import ConfigError
from pentad_core.serving import add_serve_arguments, run_server, serve_options
from pentad_medseg import data as _data  # noqa: F401  (registers datasets)
from pentad_medseg import losses as _losses  # noqa: F401  (registers losses)
from pentad_medseg import models as _models  # noqa: F401  (registers models)
from pentad_medseg.autoconfig import self_configure_run
from pentad_medseg.config import MedsegConfig
from pentad_medseg.data import load_dataset
from pentad_medseg.pipeline import (
    benchmark_report,
    build_module,
    evaluate_split,
    export_onnx,
    load_data,
    load_predictor,
    predict_files,
    predict_images,
    train_model,
)
from pentad_medseg.predictor import Predictor
from pentad_medseg.registry import DATASETS, MODELS


def verify(name: str, root: Path) -> str:
    """``data verify``: load the dataset fully (raises DataError when malformed) and summarise it."""
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


def _report(context: Context, metrics: dict[str, float], keys: tuple[str, ...] = ()) -> None:
    shown = {k: v for k, v in metrics.items() if not keys or k in keys}
    context.print(" ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))


def _train(context: Context) -> dict[str, float]:
    data = load_data(context.config, context.data_root)
    context.print(f"{context.config.dataset}: {data.summary()}")
    data = self_configure_run(context, data)  # folder, nifti: settings nobody set, from the data
    config, run = context.config, context.run
    module, copied = build_module(config, data)
    if config.pretrained:
        context.print(f"initialised {copied} tensors from {config.pretrained}")
    _, metrics = train_model(config, run, data, context.resume_path, module=module)
    _report(context, metrics, ("test/auc", "test/dice", "test/hd95", "fit/patches_per_s", "fit/seconds"))
    context.print(f"run folder: {run.path}")
    context.data = data  # type: ignore[attr-defined]
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
    run = context.run
    predictor = Predictor.from_run(run.path)
    out = run.path / "predictions"
    predict_images(predictor, context.data.test[: context.config.plot_examples], out)  # type: ignore[attr-defined]
    context.print(f"demo finished in {time.perf_counter() - start:.0f} s; overlays in {out}, plots in {run.plots}")


def _split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")


@app.verb("evaluate", "Evaluate a checkpoint on a dataset split: metrics.json and a per-image CSV.",
          arguments=_split_arguments, needs_checkpoint=True)  # fmt: skip
def evaluate(context: Context) -> None:
    config, split = context.config, context.args.split
    predictor = load_predictor(config, context.checkpoint)
    images = load_data(config, context.data_root).split(split)
    _report(context, evaluate_split(config, context.run, predictor, images, split))


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="PATH", help="image, NIfTI volume or folder (default: the test split)")
    parser.add_argument("--masks", metavar="DIR", help="ground-truth masks (same stems) drawn on the overlays")


@app.verb("predict", "Predict probability maps, masks and overlays (PNG, or NIfTI for volumes).",
          arguments=_predict_arguments, needs_checkpoint=True)  # fmt: skip
def predict(context: Context) -> None:
    config, args = context.config, context.args
    predictor = load_predictor(config, context.checkpoint)
    out = context.run.path / "predictions"
    if args.input:
        count = predict_files(predictor, Path(args.input), out, Path(args.masks) if args.masks else None)
    else:
        count = predict_images(predictor, load_data(config, context.data_root).test, out)
    context.print(f"wrote predictions of {count} input(s) to {out}")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    parser.add_argument("--size", type=int, default=128, help="example input side for the export")


@app.verb("export", "Export a checkpoint's network to ONNX (dynamic batch and size) with a parity check.",
          arguments=_export_arguments, needs_checkpoint=True)  # fmt: skip
def export(context: Context) -> None:
    path = context.run.path / "model.onnx"
    report = export_onnx(Predictor.from_run(context.checkpoint), path, context.args.size)
    context.run.write_metrics(report.as_metrics())
    context.print(f"wrote {path} (max abs difference to PyTorch {report.max_abs_diff:.2e})")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="A,B", help="models to train side by side (default: the recipe's)")


@app.verb("benchmark", "Train each model as `train --model X` would (recipe sections), test, compare with the "
          "references: DRIVE's published numbers, Otsu's threshold on other data.", trains=True, dataset="drive",
          arguments=_benchmark_arguments)  # fmt: skip
def benchmark(context: Context) -> None:
    from pentad_core.bench import format_table
    from pentad_core.devices import describe_hardware
    from pentad_core.files import atomic_write_text
    from pentad_core.runs import RunDir

    names = [n.strip() for n in context.args.models.split(",") if n.strip()] if context.args.models else []
    results = []
    for name in names or [context.config.model]:
        one = context
        if names:  # the config `train --model NAME` gets; several models get a run folder each
            config = context.app.config_for_model(context, name)
            one = dataclasses.replace(
                context, config=config, run=RunDir(context.run.path / name) if len(names) > 1 else context.run
            )
            one.run.write_config(config)
        results.append((name, _train(one)))
    rows, summary = benchmark_report(one.config, one.data, results, describe_hardware().summary())
    table = format_table(rows, ["method", "auc", "f1", "source"])
    atomic_write_text(context.run.path / "benchmark.md", table + "\n\n" + summary)
    context.print(table)
    context.print(summary)


@app.verb("serve", "Serve a trained run over HTTP: POST /v1/segment, a page at /, health, metrics (ONNX by default).",
          arguments=add_serve_arguments, writes_run=False)  # fmt: skip
def serve(context: Context) -> None:
    from pentad_medseg.serving import build_service

    run = context.args.run or context.checkpoint
    if not run:
        raise ConfigError("serve needs the trained run: --run RUN_DIR (or --checkpoint PATH).")
    options = serve_options(context.args)
    run_server(build_service(run, options, context.print), options, context.print)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/medseg``."""
    return app.main(argv)
