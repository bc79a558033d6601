"""``apps/traffic``: spatio-temporal traffic forecasting (see docs/traffic.md).

Verbs: demo, train, evaluate, predict, export, benchmark, data (list|download|verify), models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.bench import format_table, print_table
from pentad_core.cli import App, Context
from pentad_core.data import RemoteFile
from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_bytes
from pentad_core.runs import RunDir
from pentad_core.training import TrainerConfig
from pentad_traffic import outputs
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import load_dataset
from pentad_traffic.module import ForecastModule
from pentad_traffic.pipeline import build_module, forecast, load_module, prepare_run_data, train_model
from pentad_traffic.protocols import PreparedData
from pentad_traffic.registry import DATASETS, MODELS

#: Official files. Los-loop is published in the T-GCN repository; the DCRNN graphs in the DCRNN
#: repository. The METR-LA / PEMS-BAY speed tables are only on Google Drive / Baidu (no stable URL):
#: put metr-la.h5 / pems-bay.h5 into the dataset folder by hand (docs/traffic.md).
REMOTE_FILES: dict[str, list[RemoteFile]] = {
    "los-loop": [
        RemoteFile(
            "https://raw.githubusercontent.com/lehaifeng/T-GCN/master/data/los_speed.csv",
            "los_speed.csv",
            sha256="7b732d86ae32b2930595becba28aff39dacbfb2197e250fc0332e1744ce2cbf4",
        ),
        RemoteFile(
            "https://raw.githubusercontent.com/lehaifeng/T-GCN/master/data/los_adj.csv",
            "los_adj.csv",
            sha256="7a6eb41e10677992b5af50f5ab187c6c05c5c3a92cb973950cfddbf857361e76",
        ),
    ],
}

#: Anchors measured on Los-loop under the T-GCN protocol with /work/shared/anchors scripts (RMSE, MAE).
LOS_LOOP_ANCHORS = {
    "persistence h3": (5.539, 3.155),
    "ridge-ar+neighbours h3": (5.201, 3.060),
    "ridge-ar+neighbours h12": (7.692, 4.387),
}


def verify(name: str, root: Path) -> str:
    """Load dataset ``name`` from ``root`` (raises DataError when malformed) and describe it."""
    return load_dataset(name, root=root).describe()


app = App(
    "traffic",
    "Spatio-temporal traffic forecasting on road sensor graphs (T-GCN, A3T-GCN, STGCN, Graph WaveNet, GRU, GCN, "
    "VAR and naive baselines) under the T-GCN and DCRNN protocols.",
    TrafficConfig,
    models=MODELS,
    datasets=DATASETS,
    remote_files=REMOTE_FILES,
    verify_dataset=verify,
    real_dataset="los-loop",
)
app.option("--protocol", key="protocol", metavar="NAME", help="tgcn (80/20, horizons 3/6/9/12) or dcrnn (70/10/20)")
app.option("--loss", key="loss", metavar="NAME", help="training loss: mse, mae or huber")
app.option("--lr", key="lr", type=float, metavar="LR", help="learning rate")


def _data_root(context: Context) -> Path | None:
    if context.config.dataset == "synthetic":
        return None
    if context.config.dataset == "csv":
        return Path(context.config.data_dir) if context.config.data_dir else Path.cwd()
    return context.data_root


def _prepared(context: Context) -> PreparedData:
    prepared = prepare_run_data(context.config, _data_root(context))
    context.print(prepared.data.describe())
    return prepared


def _report(context: Context, prepared: PreparedData, metrics: dict[str, float], prefix: str = "test") -> None:
    protocol = prepared.protocol
    rows = outputs.horizon_rows(
        metrics, protocol.horizons, protocol.metrics, prefix, 24 * 60 / prepared.data.steps_per_day
    )
    outputs.write_csv(context.run.path / "horizons.csv", rows)
    print_table(rows, title=f"{context.config.model} on {prepared.data.name} ({protocol.name} protocol)")


def _plots(context: Context, module: ForecastModule, prepared: PreparedData) -> None:
    config, plots = context.config, context.run.plots
    starts = prepared.test.starts
    pred, true = forecast(module, prepared, starts)
    horizon = min(config.plot_horizon, prepared.protocol.output_len)
    outputs.plot_prediction_vs_truth(
        plots / "prediction_vs_truth.png", prepared, starts, pred, true, config.plot_sensors, horizon
    )
    curves = outputs.error_by_horizon(pred, true, prepared.protocol.null_value)
    outputs.plot_error_by_horizon(plots / "error_by_horizon.png", curves, 24 * 60 / prepared.data.steps_per_day)
    outputs.plot_error_by_time_of_day(plots / "error_by_time_of_day.png", prepared, starts, pred, true, horizon)


def _train(context: Context) -> tuple[ForecastModule, PreparedData, dict[str, float]]:
    prepared = _prepared(context)
    module, metrics = train_model(context.config, prepared, context.run, resume=context.resume_path)
    _report(context, prepared, metrics)
    _plots(context, module, prepared)
    return module, prepared, metrics


@app.verb(
    "train", "Train a model on a dataset (recipe shared/configs/traffic/<dataset>.yaml), then test it.", trains=True
)
def train(context: Context) -> None:
    """Train, test, plot."""
    _train(context)
    context.print(f"run folder: {context.run.path}")


@app.verb(
    "demo",
    "Offline end-to-end demo on generated traffic: train, test per horizon, forecast, plot.",
    trains=True,
    dataset="synthetic",
)
def demo(context: Context) -> None:
    """Train on synthetic data, evaluate, write forecasts and plots."""
    module, prepared, _ = _train(context)
    starts = prepared.test.starts[:1]
    pred, true = forecast(module, prepared, starts)
    outputs.write_forecasts(context.run.path / "forecasts.csv", prepared, starts, pred, true)
    context.print(f"demo finished: plots in {context.run.plots}, forecasts in {context.run.path / 'forecasts.csv'}")


@app.verb(
    "evaluate",
    "Evaluate a checkpoint on the test windows: table per horizon, metrics.json, plots.",
    needs_checkpoint=True,
)
def evaluate(context: Context) -> None:
    """Score a checkpoint under its run's protocol."""
    prepared = _prepared(context)
    module = load_module(context.checkpoint, context.config, prepared)
    pred, true = forecast(module, prepared, prepared.test.starts)
    metrics = {f"test/{key}": value for key, value in module.score(pred, true).items()}
    context.run.write_metrics(metrics)
    _report(context, prepared, metrics)
    _plots(context, module, prepared)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start",
        type=int,
        metavar="STEP",
        help="series step where the first input window begins (default: the first test window)",
    )
    parser.add_argument("--windows", type=int, default=1, metavar="N", help="consecutive windows to forecast")


@app.verb(
    "predict",
    "Forecast a time window from a checkpoint: forecasts.csv (forecast and truth per sensor) + plot.",
    needs_checkpoint=True,
    arguments=_predict_arguments,
)
def predict(context: Context) -> None:
    """Write forecasts for ``--windows`` windows starting at ``--start``."""
    prepared = _prepared(context)
    module = load_module(context.checkpoint, context.config, prepared)
    first = context.args.start if context.args.start is not None else int(prepared.test.starts[0])
    last_start = prepared.data.num_steps - prepared.protocol.input_len
    if not 0 <= first <= last_start or context.args.windows < 1:
        raise ConfigError(
            f"--start must lie in 0..{last_start} and --windows be at least 1 (got {first}, {context.args.windows})."
        )
    starts = np.arange(first, min(first + context.args.windows, last_start + 1))
    pred, true = forecast(module, prepared, starts)
    path = outputs.write_forecasts(context.run.path / "forecasts.csv", prepared, starts, pred, true)
    horizon = min(context.config.plot_horizon, prepared.protocol.output_len)
    outputs.plot_prediction_vs_truth(
        context.run.plots / "forecast.png", prepared, starts, pred, true, context.config.plot_sensors, horizon
    )
    context.print(f"{len(starts)} window(s) x {pred.shape[1]} steps x {pred.shape[2]} sensors -> {path}")


class _Exportable(torch.nn.Module):
    def __init__(self, module: ForecastModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


@app.verb(
    "export",
    "Export a checkpoint to ONNX (scaled (B, L, N, F) in, (B, H, N) speeds out), check parity.",
    needs_checkpoint=True,
)
def export(context: Context) -> None:
    """ONNX export plus an onnxruntime parity check on test windows."""
    from pentad_core.export import check_onnx_parity, export_onnx

    prepared = _prepared(context)
    module = load_module(context.checkpoint, context.config, prepared)
    x, _ = prepared.test.tensors()
    wrapper = _Exportable(module).eval()
    path = export_onnx(
        wrapper, x[:2], context.run.path / "model.onnx", input_names=["inputs"], output_names=["forecast"]
    )
    report = check_onnx_parity(wrapper, path, x[:5], tolerance=1e-3)
    context.run.write_metrics({"export/max_abs_diff": report.max_abs_diff})
    context.print(f"exported {path} (max |torch - onnxruntime| = {report.max_abs_diff:.2e})")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="A,B", help="comma-separated subset of benchmark_models")


@app.verb(
    "benchmark",
    "Train every benchmark model side by side under one protocol; table of all horizons.",
    trains=True,
    arguments=_benchmark_arguments,
)
def benchmark(context: Context) -> None:
    """One run, one dataset split, every model: metrics per horizon and training time."""
    config = context.config
    names = context.args.models.split(",") if context.args.models else list(config.benchmark_models)
    for name in names:
        MODELS.get(name)
    prepared = _prepared(context)
    protocol = prepared.protocol
    results: dict[str, dict[str, Any]] = {}
    all_metrics: dict[str, float] = {}
    for name in names:
        override = dict(config.benchmark_overrides.get(name, {}))
        epochs = int(override.pop("epochs", config.trainer.max_epochs))
        trainer_config = TrainerConfig(**{**config.trainer.__dict__, "max_epochs": epochs})
        unknown = set(override) - {"lr", "loss", "huber_delta", "weight_decay", "model_options"}
        if unknown:
            raise ConfigError(
                f"benchmark_overrides.{name} has unknown keys {sorted(unknown)}; use epochs, lr, "
                "loss, huber_delta, weight_decay, model_options."
            )
        override.setdefault("model_options", {})  # the recipe's model_options belong to `model` only
        module = build_module(config, prepared, model=name, epochs=epochs, **override)
        run = RunDir(context.run.path / "models" / name)
        start = time.perf_counter()
        torch.manual_seed(config.seed)
        module, metrics = train_model(config, prepared, run, module=module, trainer_config=trainer_config)
        seconds = time.perf_counter() - start
        learned = module.network.trainable and not module.network.closed_form
        results[name] = {**metrics, "seconds": seconds, "epochs": epochs if learned else 0}
        for key, value in metrics.items():
            if key.startswith("test/"):
                all_metrics[f"test/{name}/{key[5:]}"] = value
        all_metrics[f"fit/{name}/seconds"] = seconds
        context.print(
            f"{name}: "
            + ", ".join(
                f"h{h} {results[name].get(f'test/h{h}/rmse', float('nan')):.3f}/"
                f"{results[name].get(f'test/h{h}/mae', float('nan')):.3f}"
                for h in protocol.horizons
            )
            + f" (RMSE/MAE), {seconds:.0f} s"
        )
    context.run.write_metrics(all_metrics)
    minutes = 24 * 60 / prepared.data.steps_per_day
    rows = []
    for name, metrics in results.items():
        row: dict[str, Any] = {"model": name}
        for horizon in protocol.horizons:
            label = f"{round(horizon * minutes)} min"
            row[f"{label} RMSE"] = metrics.get(f"test/h{horizon}/rmse", float("nan"))
            row[f"{label} MAE"] = metrics.get(f"test/h{horizon}/mae", float("nan"))
        if "accuracy" in protocol.metrics:
            row["accuracy (all)"] = metrics.get("test/accuracy", float("nan"))
        row["epochs"] = metrics["epochs"]
        row["train s"] = round(metrics["seconds"], 1)
        rows.append(row)
    table = format_table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows])
    atomic_write_bytes(context.run.path / "benchmark.md", (table + "\n").encode("utf-8"))
    outputs.write_csv(context.run.path / "benchmark.csv", rows)
    print_table(rows, title=f"{prepared.data.name}, {protocol.name} protocol (RMSE / MAE per horizon)")
    context.print(f"table: {context.run.path / 'benchmark.md'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/traffic``."""
    return app.main(argv)
