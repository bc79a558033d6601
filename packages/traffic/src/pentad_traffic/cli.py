"""``apps/traffic``: spatio-temporal traffic forecasting (see docs/traffic.md).

Verbs: demo, train, evaluate, predict, export, benchmark, serve, data (list|download|verify), models.
Each verb parses, calls :mod:`pentad_traffic.pipeline` or :class:`pentad_traffic.predictor.Predictor`,
and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pentad_core.bench import print_table
from pentad_core.cli import App, Context
from pentad_core.errors import ConfigError
from pentad_core.runs import RunDir
from pentad_core.serving import add_serve_arguments, run_server, serve_options
from pentad_traffic import autoconfig, outputs, pipeline
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import TrafficData, load_dataset
from pentad_traffic.predictor import Predictor
from pentad_traffic.protocols import PreparedData, Protocol, for_data, prepare
from pentad_traffic.registry import DATASETS, MODELS


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
    verify_dataset=verify,
    real_dataset="los-loop",
)
app.option("--protocol", key="protocol", metavar="NAME", help="tgcn (80/20, horizons 3/6/9/12) or dcrnn (70/10/20)")
app.option("--loss", key="loss", metavar="NAME", help="training loss: mse, mae or huber")
app.option("--lr", key="lr", type=float, metavar="LR", help="learning rate")


def _load_data(context: Context) -> TrafficData:
    data = pipeline.load_data(context.config)
    context.print(data.describe())
    return data


def _show(rows: list[dict[str, object]], name: str, data: TrafficData, protocol: Protocol) -> None:
    print_table(rows, title=f"{name} on {data.name} ({protocol.name} protocol)")


def _train(context: Context) -> pipeline.Trained:
    config, prepared = autoconfig.configure(context, _load_data(context))  # csv: settings from the data
    members = {} if context.resume_path else {n: context.app.config_for_model(context, n) for n in config.blend}
    trained = pipeline.train(config, context.run, prepared, context.resume_path, members)
    _show(trained.rows, trained.predictor.model_name, prepared.data, prepared.protocol)
    return trained


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
    """Train on synthetic data, evaluate, write the forecasts of the first test window and plots."""
    trained = _train(context)
    if not context.is_main_process:
        return
    forecasts, data = trained.forecasts, trained.prepared.data
    path = outputs.write_forecasts(
        context.run.path / "forecasts.csv",
        data,
        trained.prepared.protocol,
        forecasts.starts[:1],
        forecasts.predictions[:1],
        forecasts.truths[:1],
    )
    context.print(f"demo finished: plots in {context.run.plots}, forecasts in {path}")


@app.verb(
    "evaluate",
    "Evaluate a trained run on the test windows: table per horizon, metrics.json, plots.",
    needs_checkpoint=True,
)
def evaluate(context: Context) -> None:
    """Score a trained run under its own protocol and scaler on its dataset's test windows."""
    predictor = Predictor.from_run(context.checkpoint)
    data = _load_data(context)
    forecasts, metrics = pipeline.evaluate(predictor, data)
    context.run.write_metrics(metrics)
    protocol = for_data(predictor.protocol, data)  # METR-LA / PEMS-BAY zeros masked whatever the protocol
    rows = pipeline.write_report(context.run, data, protocol, metrics, forecasts, context.config)
    _show(rows, predictor.model_name, data, protocol)


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
    "Forecast a time window from a trained run: forecasts.csv (forecast and truth per sensor) + plot.",
    needs_checkpoint=True,
    arguments=_predict_arguments,
)
def predict(context: Context) -> None:
    """Write forecasts for ``--windows`` windows starting at ``--start``."""
    predictor = Predictor.from_run(context.checkpoint)
    protocol = predictor.protocol
    data = _load_data(context)
    start, count = context.args.start, context.args.windows
    first = start if start is not None else int(pipeline.scored_window_starts(data, protocol)[0])
    last_start = data.num_steps - protocol.input_len
    if not 0 <= first <= last_start or count < 1:
        raise ConfigError(f"--start must lie in 0..{last_start} and --windows be at least 1 (got {first}, {count}).")
    starts = np.arange(first, min(first + count, last_start + 1))
    forecasts = pipeline.forecast(predictor, data, starts)
    pred, true = forecasts.predictions, forecasts.truths
    path = outputs.write_forecasts(context.run.path / "forecasts.csv", data, protocol, starts, pred, true)
    horizon = min(context.config.plot_horizon, protocol.output_len)
    outputs.plot_prediction_vs_truth(
        context.run.plots / "forecast.png", data, protocol, starts, pred, true, context.config.plot_sensors, horizon
    )
    context.print(f"{len(starts)} window(s) x {pred.shape[1]} steps x {pred.shape[2]} sensors -> {path}")


@app.verb(
    "export",
    "Export a trained run to ONNX (scaled (B, L, N, F) in, (B, H, N) speeds out), check parity.",
    needs_checkpoint=True,
)
def export(context: Context) -> None:
    """ONNX export plus an onnxruntime parity check on generated inputs (no data needed)."""
    predictor = Predictor.from_run(context.checkpoint)
    path, difference = pipeline.export(predictor, context.run.path / "model.onnx", seed=context.config.seed)
    context.run.write_metrics({"export/max_abs_diff": difference})
    context.print(f"exported {path} (max |torch - onnxruntime| = {difference:.2e})")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="A,B", help="comma-separated subset of benchmark_models")


@app.verb(
    "benchmark",
    "Train every benchmark model side by side under one protocol; table of all horizons.",
    trains=True,
    arguments=_benchmark_arguments,
)
def benchmark(context: Context) -> None:
    """One run, one dataset split, every model (each with its recipe section): metrics per horizon, time."""
    config = context.config
    names = context.args.models.split(",") if context.args.models else list(config.benchmark_models)
    for name in names:
        MODELS.get(name)  # an unknown name fails before anything trains
    configs = {name: context.app.config_for_model(context, name) for name in names}
    blended = {m: context.app.config_for_model(context, m) for c in configs.values() for m in c.blend}
    data = _load_data(context)
    prepared_by_protocol: dict[Protocol, PreparedData] = {}
    results = {}
    for name, model_config in configs.items():
        protocol = model_config.build_protocol()
        if protocol not in prepared_by_protocol:
            prepared_by_protocol[protocol] = prepare(data, protocol)
        prepared = prepared_by_protocol[protocol]
        run = RunDir(context.run.path / "models" / name)
        run.write_config(model_config)
        label = "+".join([name, *model_config.blend])  # a blend's row names its models
        results[label] = result = pipeline.benchmark_model(model_config, prepared, run, blended)
        scores = ", ".join(
            f"h{h} {result.get(f'test/h{h}/rmse', float('nan')):.3f}/{result.get(f'test/h{h}/mae', float('nan')):.3f}"
            for h in prepared.protocol.horizons
        )
        context.print(f"{label}: {scores} (RMSE/MAE), {result['seconds']:.0f} s")
    context.run.write_metrics(pipeline.benchmark_metrics(results))
    rows = outputs.benchmark_rows(results, prepared.protocol, 24 * 60 / data.steps_per_day)
    table = outputs.write_benchmark(context.run.path, rows)
    print_table(rows, title=f"{data.name}, {prepared.protocol.name} protocol (RMSE / MAE per horizon)")
    context.print(f"table: {table}")


@app.verb(
    "serve",
    "Serve a trained run over HTTP: POST /v1/forecast (JSON or CSV window), a page at /, ONNX Runtime by default.",
    arguments=add_serve_arguments,
    writes_run=False,
)
def serve(context: Context) -> None:
    """Serve ``--run`` (or ``--checkpoint``) until SIGINT/SIGTERM (see :mod:`pentad_traffic.serving`)."""
    from pentad_traffic.serving import build_service  # FastAPI is imported only to serve

    source = context.args.run or context.checkpoint
    if not source:
        raise ConfigError("serve needs a trained run: --run RUN_FOLDER (or --checkpoint FILE).")
    options = serve_options(context.args)
    run_server(build_service(source, options, context.print), options, context.print)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/traffic``."""
    return app.main(argv)
