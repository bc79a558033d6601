"""Tables, CSV files and plots of a traffic run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.bench import format_table
from pentad_core.files import atomic_write_bytes, atomic_write_csv, atomic_write_json
from pentad_core.plotting import new_figure, save_figure
from pentad_traffic.data.core import TrafficData
from pentad_traffic.metrics import mae, null_mask, rmse
from pentad_traffic.protocols import PreparedData, Protocol, split

#: The file of a run holding the last input window of its training part (``GET /v1/sample`` of ``serve``).
SAMPLE_WINDOW = "sample_window.json"


def horizon_rows(
    metrics: dict[str, float],
    horizons: tuple[int, ...],
    names: tuple[str, ...],
    prefix: str = "test",
    minutes_per_step: float = 5.0,
) -> list[dict[str, object]]:
    """One row per horizon from ``<prefix>/h<k>/<metric>`` keys, plus an ``all`` row."""
    rows = []
    for horizon in horizons:
        row: dict[str, object] = {"horizon": horizon, "minutes": round(horizon * minutes_per_step)}
        row.update({name: metrics.get(f"{prefix}/h{horizon}/{name}", float("nan")) for name in names})
        rows.append(row)
    if any(f"{prefix}/{name}" in metrics for name in names):
        row = {"horizon": "all", "minutes": ""}
        row.update({name: metrics.get(f"{prefix}/{name}", float("nan")) for name in names})
        rows.append(row)
    return rows


def write_forecasts(
    path: Path, data: TrafficData, protocol: Protocol, starts: np.ndarray, pred: torch.Tensor, true: torch.Tensor
) -> Path:
    """CSV with one row per (window, step ahead): series step, horizon, (time), forecast and truth per sensor."""
    ids = data.sensor_ids
    columns = ["input_start", "step", "horizon"] + (["time"] if data.timestamps is not None else [])
    columns += [f"pred_{sensor}" for sensor in ids] + [f"true_{sensor}" for sensor in ids]
    rows = []
    input_len = protocol.input_len
    for window, start in enumerate(starts):
        for step in range(pred.shape[1]):
            row: dict[str, object] = {
                "input_start": int(start),
                "step": int(start + input_len + step),
                "horizon": step + 1,
            }
            if data.timestamps is not None and start + input_len + step < data.num_steps:
                row["time"] = str(data.timestamps[start + input_len + step])
            row.update({f"pred_{sensor}": float(pred[window, step, i]) for i, sensor in enumerate(ids)})
            row.update({f"true_{sensor}": float(true[window, step, i]) for i, sensor in enumerate(ids)})
            rows.append(row)
    return atomic_write_csv(path, rows, columns)


def benchmark_rows(
    results: dict[str, dict[str, Any]], protocol: Protocol, minutes_per_step: float
) -> list[dict[str, Any]]:
    """The benchmark table: one row per model with RMSE and MAE per horizon, epochs and training seconds."""
    rows = []
    for name, metrics in results.items():
        row: dict[str, Any] = {"model": name}
        for horizon in protocol.horizons:
            label = f"{round(horizon * minutes_per_step)} min"
            row[f"{label} RMSE"] = metrics.get(f"test/h{horizon}/rmse", float("nan"))
            row[f"{label} MAE"] = metrics.get(f"test/h{horizon}/mae", float("nan"))
        if "accuracy" in protocol.metrics:
            row["accuracy (all)"] = metrics.get("test/accuracy", float("nan"))
        row["epochs"] = metrics["epochs"]
        row["train s"] = round(metrics["seconds"], 1)
        rows.append(row)
    return rows


def write_benchmark(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """Write the benchmark table as ``benchmark.md`` (3 decimals) and ``benchmark.csv``; returns the ``.md``."""
    table = format_table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows])
    atomic_write_bytes(folder / "benchmark.md", (table + "\n").encode("utf-8"))
    atomic_write_csv(folder / "benchmark.csv", rows)
    return folder / "benchmark.md"


def plot_prediction_vs_truth(
    path: Path,
    data: TrafficData,
    protocol: Protocol,
    starts: np.ndarray,
    pred: torch.Tensor,
    true: torch.Tensor,
    sensors: list[int],
    horizon: int,
) -> Path:
    """Truth and the ``horizon``-step-ahead forecast over the test period, one panel per sensor."""
    sensors = [s for s in sensors if 0 <= s < data.num_nodes] or [0]
    horizon = min(max(1, horizon), pred.shape[1])
    figure, _ = new_figure(9.0, 2.4 * len(sensors))
    figure.clf()
    steps = starts + protocol.input_len + horizon - 1
    keep = steps < data.num_steps
    for panel, sensor in enumerate(sensors, start=1):
        axis = figure.add_subplot(len(sensors), 1, panel)
        axis.plot(steps[keep], true[keep, horizon - 1, sensor].numpy(), color="black", lw=1.0, label="truth")
        axis.plot(
            steps[keep],
            pred[keep, horizon - 1, sensor].numpy(),
            color="tab:red",
            lw=1.0,
            label=f"forecast {horizon} steps ahead",
        )
        axis.set_ylabel("speed")
        axis.set_title(f"sensor {data.sensor_ids[sensor]}", fontsize=9)
        axis.grid(alpha=0.3)
        if panel == 1:
            axis.legend(fontsize=8, loc="lower left")
    axis.set_xlabel("time step")
    return save_figure(figure, path)


def error_by_horizon(pred: torch.Tensor, true: torch.Tensor, null_value: float | None) -> dict[str, list[float]]:
    """RMSE and MAE of each single step ahead ``1..H``."""
    curves: dict[str, list[float]] = {"rmse": [], "mae": []}
    for step in range(pred.shape[1]):
        p, t = pred[:, step], true[:, step]
        mask = null_mask(t, null_value)
        curves["rmse"].append(rmse(p, t, mask))
        curves["mae"].append(mae(p, t, mask))
    return curves


def plot_error_by_horizon(path: Path, curves: dict[str, list[float]], minutes_per_step: float = 5.0) -> Path:
    """RMSE and MAE against minutes ahead."""
    figure, axis = new_figure(6.0, 4.0)
    for name, values in curves.items():
        minutes = [minutes_per_step * (i + 1) for i in range(len(values))]
        axis.plot(minutes, values, marker="o", label=name.upper())
    axis.set_xlabel("minutes ahead")
    axis.set_ylabel("error (speed units)")
    axis.set_title("test error by horizon")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)


def plot_error_by_time_of_day(
    path: Path,
    data: TrafficData,
    protocol: Protocol,
    starts: np.ndarray,
    pred: torch.Tensor,
    true: torch.Tensor,
    horizon: int,
) -> Path:
    """MAE of the ``horizon``-step-ahead forecast by hour of the day of the forecast target."""
    horizon = min(max(1, horizon), pred.shape[1])
    steps = starts + protocol.input_len + horizon - 1
    keep = steps < data.num_steps
    hours = np.floor(data.time_of_day()[steps[keep]] * 24).astype(int)
    errors = (pred[keep, horizon - 1] - true[keep, horizon - 1]).abs()
    mask = null_mask(true[keep, horizon - 1], protocol.null_value)
    values = [
        float(errors[torch.as_tensor(hours == h)][mask[torch.as_tensor(hours == h)]].mean())
        if (hours == h).any()
        else float("nan")
        for h in range(24)
    ]
    figure, axis = new_figure(7.0, 3.5)
    axis.bar(range(24), values, color="tab:blue")
    axis.set_xlabel("hour of day")
    axis.set_ylabel("MAE")
    axis.set_title(f"test MAE by time of day ({horizon} steps ahead)")
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def sample_window(prepared: PreparedData) -> dict[str, Any]:
    """The last input window of the training part of ``prepared`` (the readings the scaler was fitted
    on, never the test part), as JSON-ready lists: what ``serve`` offers at ``GET /v1/sample``.

    Returns:
        ``sensors`` (ids), ``window`` (``input_len`` rows of ``N`` mph), ``time_of_day`` and
        ``day_of_week`` of each row, ``timestamps`` (ISO, or None), ``step_minutes``, ``dataset``, ``start``.
    """
    data, length = prepared.data, prepared.protocol.input_len
    end = split(data.num_steps, prepared.protocol, data.name).fit_end
    rows = slice(max(end - length, 0), max(end, length))
    stamps = None
    if data.timestamps is not None:
        stamps = [str(stamp) for stamp in data.timestamps[rows].astype("datetime64[s]")]
    return {
        "dataset": data.name,
        "start": rows.start,
        "step_minutes": 24 * 60 / data.steps_per_day,
        "sensors": list(data.sensor_ids),
        "window": data.speeds[rows].astype(float).round(4).tolist(),
        "time_of_day": data.time_of_day()[rows].astype(float).round(6).tolist(),
        "day_of_week": data.day_of_week()[rows].astype(int).tolist(),
        "timestamps": stamps,
    }


def write_sample_window(folder: Path, prepared: PreparedData) -> Path:
    """Write :func:`sample_window` to ``folder / SAMPLE_WINDOW``."""
    path = Path(folder) / SAMPLE_WINDOW
    atomic_write_json(path, sample_window(prepared))
    return path
