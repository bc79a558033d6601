"""The traffic workflow as plain functions: load data, build, train, test, forecast, evaluate, benchmark, export.

The CLI verbs, the tests and Python users call these; nothing here prints::

    from pentad_traffic.pipeline import prepare_run_data, train_model
    prepared = prepare_run_data(config)                    # TrafficConfig
    module, metrics = train_model(config, prepared, run)   # pentad_core.runs.RunDir

A trained run is used through :class:`pentad_traffic.predictor.Predictor`, which needs no data;
:func:`forecast` and :func:`evaluate` apply it to the windows of a dataset.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from pentad_core.checkpoint import atomic_save
from pentad_core.devices import seed_everything, using_threads
from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_csv
from pentad_core.runs import RunDir, blend_runs
from pentad_core.training import TrainerConfig, build_trainer, fit, test
from pentad_traffic import outputs
from pentad_traffic.blend import ForecastBlend, blend_member_config, blend_state
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import TrafficData, load_dataset
from pentad_traffic.module import ForecastModule
from pentad_traffic.predictor import Predictor
from pentad_traffic.protocols import (
    IndexedWindows,
    PreparedData,
    Protocol,
    for_data,
    model_inputs,
    prepare,
    split,
)
from pentad_traffic.registry import MODELS


@dataclass
class Forecasts:
    """Forecasts of a set of windows of a series.

    Attributes:
        starts: ``(S,)`` series steps where the input windows begin.
        predictions: ``(S, H, N)`` forecasts in mph.
        truths: ``(S, H, N)`` the readings that followed (NaN past the end of the series).
    """

    starts: np.ndarray
    predictions: torch.Tensor
    truths: torch.Tensor


def load_data(config: TrafficConfig) -> TrafficData:
    """Load ``config.dataset`` from ``config.data_dir`` (or its default folder) with ``config.dataset_options``."""
    return load_dataset(config.dataset, root=config.data_dir, options=config.dataset_options)


def prepare_run_data(config: TrafficConfig) -> PreparedData:
    """Load ``config.dataset`` and prepare it (split, scale, window) under the configured protocol."""
    return prepare(load_data(config), config.build_protocol())


def loaders(prepared: PreparedData, batch_size: int, num_workers: int = 0) -> dict[str, DataLoader | None]:
    """Train (shuffled, ``(x, y)``), validation (None without a validation split) and test loaders
    (``(x, y, window index)``: :class:`~pentad_traffic.protocols.IndexedWindows`)."""

    def make(dataset, shuffle: bool) -> DataLoader | None:
        if dataset is None:
            return None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)

    return {
        "train": make(prepared.train, True),
        "val": make(IndexedWindows(prepared.val) if prepared.val is not None else None, False),
        "test": make(IndexedWindows(prepared.test), False),
    }


def build_module(config: TrafficConfig, prepared: PreparedData, **overrides: Any) -> ForecastModule:
    """A :class:`ForecastModule` for ``config.model``; ``overrides`` replace module options
    (``model`` picks another model, e.g. in the benchmark)."""
    options = {
        "model_options": dict(config.model_options),
        "loss": config.loss,
        "huber_delta": config.huber_delta,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "epochs": config.trainer.max_epochs,
        "ensemble": config.ensemble,
    }
    options.update(overrides)
    model = options.pop("model", config.model)
    return ForecastModule.for_data(model, prepared, **options)


def train_model(
    config: TrafficConfig,
    prepared: PreparedData,
    run: RunDir,
    *,
    module: ForecastModule | None = None,
    resume: Path | None = None,
    trainer_config: TrainerConfig | None = None,
) -> tuple[ForecastModule, dict[str, float]]:
    """Train (or fit) the configured model, then test it; metrics go to ``run/metrics.json``.

    A model that is not trained by gradient descent (``MODELS.info(name).trainable`` False) runs
    one epoch without an optimiser, so that the run still writes a checkpoint and logs; the VAR is
    fitted by least squares first, and the learned models' linear highway is warm-started by least
    squares (``config.highway_init``); neither is redone when ``resume`` continues a run. Under DDP
    only the first process writes ``metrics.json``; the baselines run in one process.

    Returns:
        The trained module and the fit + test metrics (``test/h3/rmse``, ...).
    """
    module = module or build_module(config, prepared)
    trainer_config = trainer_config or config.trainer
    if not module.learned:
        # Nothing to learn: one epoch in one process (DDP cannot run a step without a loss).
        trainer_config = dataclasses.replace(
            trainer_config,
            max_epochs=1,
            monitor="",
            early_stopping_patience=0,
            devices="1",
            num_nodes=1,
            strategy="auto",
        )
    # Not on --resume: the checkpoint holds the fitted and trained weights (a warm start here would
    # only cost time: Lightning replaces the weights with the checkpoint's when fit starts).
    if module.closed_form and resume is None:
        module.fit_closed_form(*prepared.train.tensors())
    elif config.highway_init and resume is None:
        module.initialise_highway(*prepared.train.tensors())
    data = loaders(prepared, config.batch_size, config.num_workers)
    trainer = build_trainer(trainer_config, run, has_validation=data["val"] is not None, time_budget=config.time_budget)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Expected for baselines (no optimiser) and for the T-GCN protocol (no validation split).
        for message in (
            ".*configure_optimizers.*returned `None`",
            ".*training_step.*returned `None`",
            ".*empty generator.*",
            ".*validation_step.*no `val_dataloader`.*",
        ):
            warnings.filterwarnings("ignore", message=message)
        metrics = fit(
            trainer, module, run, train_dataloaders=data["train"], val_dataloaders=data["val"], ckpt_path=resume
        )
        metrics["fit/seconds"] = time.perf_counter() - start
        metrics.update(test(trainer, module, run, dataloaders=data["test"], ckpt_path="best"))
    if trainer.is_global_zero:
        run.write_metrics(metrics)
    return module, metrics


def _blend_member(config: TrafficConfig, run: RunDir, prepared: PreparedData, resuming: bool) -> ForecastModule:
    """Train (or, ``resuming``, load or continue) one model of a blend in its run folder ``run``, on
    ``prepared``'s series prepared under its own protocol (its own speed scaling), as ``train --model
    NAME`` would."""
    if resuming and "test/rmse" in run.read_metrics():
        return Predictor.from_run(run.path).module  # finished before the interruption
    last = run.last_checkpoint if resuming and run.last_checkpoint.is_file() else None
    with using_threads(config.threads):
        seed_everything(config.seed, config.trainer.deterministic)
        protocol = config.build_protocol()
        own = prepared if protocol == prepared.protocol else prepare(prepared.data, protocol)
        return train_model(config, own, run, resume=last)[0]


def train_blend(
    config: TrafficConfig,
    run: RunDir,
    prepared: PreparedData,
    member_configs: dict[str, TrafficConfig] | None = None,
    resume: Path | None = None,
) -> tuple[ForecastBlend, dict[str, float], Forecasts]:
    """Train ``config.model`` and every model of ``config.blend``, then blend their forecasts.

    Each model trains on ``prepared.data`` under its own protocol (the blend's windows and horizons,
    its own speed scaling) as its own run in ``run/blend/<name>/``, with the config
    :func:`~pentad_traffic.blend.blend_member_config` gives it; all of those configs are written before
    the first model trains, and ``run/checkpoints/last.ckpt`` says a blend is in progress, so that
    ``--resume`` (``resume`` given) continues as configured: a model that finished is loaded, the one
    interrupted continues from its own ``last.ckpt``, the rest train. The blend's forecast is the
    weighted mean of the models' forecasts with ``config.blend_shares()``; it replaces the marker.

    Returns:
        The blend, its metrics (``test/*`` of the blend, ``blend/<name>/weight`` and each model's own
        ``blend/<name>/test/*``), and its forecasts of the test windows.

    Raises:
        ConfigError: A model of the blend is unknown or named twice, the shares do not fit the models
            (:meth:`~pentad_traffic.config.TrafficConfig.blend_shares`), or a model's config no longer
            fits on resume.
    """
    shares = config.blend_shares()  # a model named twice or shares that do not fit fail before anything trains
    names = [config.model, *config.blend]
    for name in names:
        MODELS.get(name)
    start = time.perf_counter()
    resuming = resume is not None
    starting = None if resuming else [blend_member_config(config, name, member_configs) for name in names]
    runs, configs = blend_runs(run, names, TrafficConfig, starting)
    members = [_blend_member(c, r, prepared, resuming) for c, r in zip(configs, runs, strict=True)]
    blend = ForecastBlend(members, shares, names).eval()
    forecasts = forecast(Predictor(blend), prepared.data, prepared.test.starts)
    metrics = {f"test/{key}": value for key, value in blend.score(forecasts.predictions, forecasts.truths).items()}
    for name, share, member_run in zip(names, shares, runs, strict=True):
        metrics[f"blend/{name}/weight"] = share
        own = member_run.read_metrics()
        metrics.update({f"blend/{name}/{key}": value for key, value in own.items() if key.startswith("test/")})
    metrics["fit/seconds"] = time.perf_counter() - start
    if members[0].global_rank == 0:  # under DDP, the first process writes
        atomic_save(blend_state(blend), run.last_checkpoint)
        run.write_metrics(metrics)
    return blend, metrics, forecasts


def scored_window_starts(data: TrafficData, protocol: Protocol) -> np.ndarray:
    """Series steps where the protocol's test windows begin in ``data``."""
    return split(data.num_steps, protocol, data.name).test


def forecast(predictor: Predictor, data: TrafficData, starts: np.ndarray) -> Forecasts:
    """Forecast the windows of ``data`` whose inputs begin at series steps ``starts``.

    The inputs are scaled with the run's scaler (not one fitted on ``data``).

    Raises:
        ConfigError: If ``data`` has other sensors than the run, or a window leaves the series.
    """
    if list(data.sensor_ids) != list(predictor.sensor_ids):
        raise ConfigError(
            f"{data.name} has {data.num_nodes} sensors ({', '.join(data.sensor_ids[:3])}, ...) but the model was "
            f"trained on {len(predictor.sensor_ids)} ({', '.join(predictor.sensor_ids[:3])}, ...)."
        )
    protocol = predictor.protocol
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) and (starts.min() < 0 or starts.max() > data.num_steps - protocol.input_len):
        raise ConfigError(f"input windows must start in 0..{data.num_steps - protocol.input_len}.")
    inputs = model_inputs(
        data.speeds,
        predictor.scaler,
        data.time_of_day() if protocol.time_of_day else None,
        data.day_of_week() if protocol.day_of_week else None,
    )
    targets = torch.as_tensor(data.speeds, dtype=torch.float32)
    targets = torch.cat([targets, torch.full((protocol.output_len, data.num_nodes), float("nan"))])
    index = torch.as_tensor(starts)[:, None]
    x = inputs[index + torch.arange(protocol.input_len)]
    y = targets[index + protocol.input_len + torch.arange(protocol.output_len)]
    return Forecasts(starts, predictor.forecast_inputs(x), y)


def evaluate(predictor: Predictor, data: TrafficData) -> tuple[Forecasts, dict[str, float]]:
    """Forecast every test window of ``data`` under the run's protocol and score them.

    Returns:
        The forecasts and the metrics ``test/h<k>/<metric>`` and ``test/<metric>`` (all steps).
    """
    forecasts = forecast(predictor, data, scored_window_starts(data, predictor.protocol))
    scores = predictor.score(forecasts.predictions, forecasts.truths, for_data(predictor.protocol, data))
    return forecasts, {f"test/{key}": value for key, value in scores.items()}


def write_report(
    run: RunDir,
    data: TrafficData,
    protocol: Protocol,
    metrics: dict[str, float],
    forecasts: Forecasts,
    config: TrafficConfig,
) -> list[dict[str, object]]:
    """Write ``horizons.csv`` and the three plots of the test windows into ``run``.

    Returns:
        The rows of ``horizons.csv`` (one per horizon, and one over all steps).
    """
    minutes = 24 * 60 / data.steps_per_day
    rows = outputs.horizon_rows(metrics, protocol.horizons, protocol.metrics, "test", minutes)
    atomic_write_csv(run.path / "horizons.csv", rows)
    horizon = min(config.plot_horizon, protocol.output_len)
    pred, true, starts = forecasts.predictions, forecasts.truths, forecasts.starts
    outputs.plot_prediction_vs_truth(
        run.plots / "prediction_vs_truth.png", data, protocol, starts, pred, true, config.plot_sensors, horizon
    )
    curves = outputs.error_by_horizon(pred, true, protocol.null_value)
    outputs.plot_error_by_horizon(run.plots / "error_by_horizon.png", curves, minutes)
    outputs.plot_error_by_time_of_day(
        run.plots / "error_by_time_of_day.png", data, protocol, starts, pred, true, horizon
    )
    return rows


@dataclass
class Trained:
    """What :func:`train` returns.

    Attributes:
        predictor: The trained model, ready to forecast.
        prepared: The data it was trained and tested on.
        forecasts: Its forecasts of every test window.
        metrics: Fit and test metrics (as in ``metrics.json``).
        rows: The rows of ``horizons.csv``.
    """

    predictor: Predictor
    prepared: PreparedData
    forecasts: Forecasts
    metrics: dict[str, float]
    rows: list[dict[str, object]]


def train(
    config: TrafficConfig,
    run: RunDir,
    prepared: PreparedData,
    resume: Path | None = None,
    member_configs: dict[str, TrafficConfig] | None = None,
) -> Trained:
    """Train ``config.model`` on ``prepared`` (with ``config.blend``: it and the blended models, see
    :func:`train_blend`, ``member_configs`` their configs), test it, write ``horizons.csv`` and the plots
    of the test windows."""
    if config.blend:
        module, metrics, forecasts = train_blend(config, run, prepared, member_configs, resume)
        predictor = Predictor(module)
        rank = module.members[0].global_rank
    else:
        module, metrics = train_model(config, prepared, run, resume=resume)
        predictor = Predictor(module)
        forecasts = forecast(predictor, prepared.data, prepared.test.starts)
        rank = module.global_rank
    if rank == 0:  # under DDP, the first process writes the report
        rows = write_report(run, prepared.data, prepared.protocol, metrics, forecasts, config)
        outputs.write_sample_window(run.path, prepared)  # what `serve` offers at GET /v1/sample
    else:
        minutes = 24 * 60 / prepared.data.steps_per_day
        rows = outputs.horizon_rows(metrics, prepared.protocol.horizons, prepared.protocol.metrics, "test", minutes)
    return Trained(predictor, prepared, forecasts, metrics, rows)


def benchmark_model(
    config: TrafficConfig,
    prepared: PreparedData,
    run: RunDir,
    member_configs: dict[str, TrafficConfig] | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` into ``run`` and test it, for a side-by-side table.

    ``config`` is what ``train --model NAME`` runs with (``App.config_for_model``: the model's section
    of the dataset's recipe), so a benchmark row and a ``train`` run report the same numbers; a model
    whose section blends others trains them too (``member_configs``: their configs, see :func:`train_blend`).

    Returns:
        Its fit and test metrics, ``seconds`` of training and ``epochs`` (0 for the baselines).
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    if config.blend:
        metrics = train_blend(config, run, prepared, member_configs)[1]
    else:
        _, metrics = train_model(config, prepared, run)
    seconds = time.perf_counter() - start
    epochs = config.trainer.max_epochs if MODELS.info(config.model).trainable else 0
    return {**metrics, "seconds": seconds, "epochs": epochs}


def benchmark_metrics(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The metrics of a benchmark run: ``test/<model>/<metric>`` and ``fit/<model>/seconds``."""
    metrics: dict[str, float] = {}
    for name, result in results.items():
        for key, value in result.items():
            if key.startswith("test/"):
                metrics[f"test/{name}/{key[5:]}"] = value
        metrics[f"fit/{name}/seconds"] = result["seconds"]
    return metrics


class _Forecast(torch.nn.Module):
    """The trained network plus the inverse scaling as a plain module (what ONNX exports)."""

    def __init__(self, module: ForecastModule | ForecastBlend) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def export(predictor: Predictor, path: Path, seed: int = 0) -> tuple[Path, float]:
    """Export the model to ONNX (scaled ``(B, T, N, F)`` in, ``(B, H, N)`` mph out) and check it
    against torch on generated inputs (no data needed).

    Returns:
        The ONNX file and the largest absolute difference between torch and onnxruntime.
    """
    from pentad_core.export import check_onnx_parity, export_onnx

    protocol = predictor.protocol
    generator = torch.Generator().manual_seed(seed)
    shape = (5, protocol.input_len, len(predictor.sensor_ids), protocol.in_features)
    x = torch.rand(shape, generator=generator)
    wrapper = _Forecast(predictor.module).eval()
    path = export_onnx(wrapper, x[:2], path, input_names=["inputs"], output_names=["forecast"])
    report = check_onnx_parity(wrapper, path, x, tolerance=1e-3)
    return path, report.max_abs_diff
