"""``serve``: forecasts of a trained run over HTTP (``apps/traffic serve --run RUN``; needs ``pentad-core[serve]``).

Routes (besides core's ``/healthz``, ``/readyz``, ``/v1/model``, ``/metrics``, ``/docs`` and the page ``/``):

- ``POST /v1/forecast``: the last ``input_len`` readings of the run's sensors, as JSON
  ``{"window": [[N speeds] x input_len], "time_of_day": [...], "day_of_week": [...], "sensors": [...]}``
  (``sensors`` reorders the columns; the time features are needed when the model was trained with
  them) or as CSV (``text/csv``: a header of sensor ids, one row per reading, optional columns
  ``timestamp``, ``time_of_day``, ``day_of_week``) -> the forecast of every horizon step and sensor
  in mph (JSON; CSV when the request accepts ``text/csv``). Concurrent forecasts share one model
  call (core's batcher).
- ``GET /v1/sample``: the last input window of the run's training part (``sample_window.json``,
  written by ``train``), as JSON or ``?format=csv``; 404 for a run trained before it was written.

The model runs in ONNX Runtime (the run's network plus its inverse scaling, exported with the
parity check into ``<run>/serve/<checkpoint>.onnx`` when missing or made from another checkpoint) or, with
``--backend torch`` or for a model registered ``exportable=False``, in PyTorch.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Request  # at module level: FastAPI resolves the routes' annotations here
from fastapi.responses import JSONResponse, PlainTextResponse

from pentad_core.serving import (
    ClientError,
    ServeContext,
    ServeOptions,
    Service,
    media_type,
    onnx_session,
    read_body,
    serving_export,
)
from pentad_traffic.outputs import SAMPLE_WINDOW
from pentad_traffic.pipeline import export
from pentad_traffic.predictor import Predictor
from pentad_traffic.protocols import model_inputs
from pentad_traffic.registry import MODELS

#: Content types ``POST /v1/forecast`` reads.
CONTENT_TYPES = ("application/json", "text/csv")
#: CSV columns that are not sensors.
TIME_COLUMNS = ("timestamp", "time_of_day", "day_of_week")
#: Where the ONNX export of a run is cached, inside the run folder.
SERVE_FOLDER = "serve"


@dataclass
class Window:
    """One validated request: ``(T, N)`` speeds in the run's sensor order and the time features."""

    speeds: np.ndarray
    time_of_day: np.ndarray | None = None
    day_of_week: np.ndarray | None = None


def minutes(value: float) -> float | int:
    """``value`` minutes as an int when whole (``15`` rather than ``15.0``)."""
    value = round(float(value), 4)
    return int(value) if value.is_integer() else value


def _numbers(values: Any, what: str, rows: int | None = None) -> np.ndarray:
    """A float64 array of JSON numbers (bools, strings and nulls refused), 422 otherwise."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClientError(f"{what} must hold numbers only, found {json.dumps(value)[:40]}", 422)
        return float(value)

    try:
        if rows is None:
            return np.array([check(value) for value in values], dtype=np.float64)
        return np.array([[check(value) for value in row] for row in values], dtype=np.float64)
    except TypeError:
        raise ClientError(f"{what} must be a list{' of lists' if rows else ''} of numbers", 422) from None


class Forecaster:
    """Validates windows and forecasts batches of them with ONNX Runtime or PyTorch."""

    def __init__(self, predictor: Predictor, session: Any = None, step_minutes: float = 5.0) -> None:
        self.predictor = predictor
        self.session = session
        self.step_minutes = step_minutes
        self.sensors = list(predictor.sensor_ids)
        self.protocol = predictor.protocol

    @property
    def backend(self) -> str:
        """``onnx`` or ``torch``."""
        return "onnx" if self.session is not None else "torch"

    def check(self, speeds: np.ndarray, time_of_day: Any, day_of_week: Any, sensors: list[str] | None) -> Window:
        """A :class:`Window` from parsed values, in the run's sensor order (422 when they do not fit the run)."""
        length, count = self.protocol.input_len, len(self.sensors)
        if speeds.ndim != 2 or len(speeds) != length:
            got = len(speeds) if speeds.ndim >= 1 else 0
            raise ClientError(
                f"the window has {got} readings; this model reads the last {length} "
                f"({length * self.step_minutes:g} minutes), one row per reading",
                422,
            )
        if sensors is not None:
            if len(sensors) != len(set(sensors)):
                raise ClientError("the sensor ids repeat a sensor", 422)
            unknown = [sensor for sensor in sensors if sensor not in self.sensors]
            missing = [sensor for sensor in self.sensors if sensor not in sensors]
            if unknown or missing:
                names = ", ".join(unknown[:3]) or "none"
                raise ClientError(
                    f"the run has {count} sensors; the request names {len(sensors)} ({len(unknown)} unknown: {names}; "
                    f"{len(missing)} missing)",
                    422,
                )
            if speeds.shape[1] == len(sensors):
                speeds = speeds[:, [sensors.index(sensor) for sensor in self.sensors]]
        if speeds.shape[1] != count:
            raise ClientError(f"each reading must hold {count} speeds (one per sensor), got {speeds.shape[1]}", 422)
        if not np.isfinite(speeds).all():
            step, column = np.argwhere(~np.isfinite(speeds))[0]
            raise ClientError(
                f"the window holds NaN or infinity (reading {step}, sensor {self.sensors[column]}); "
                "send 0 for a missing reading",
                422,
            )
        window = Window(speeds.astype(np.float32))
        for name, values, used in (
            ("time_of_day", time_of_day, self.protocol.time_of_day),
            ("day_of_week", day_of_week, self.protocol.day_of_week),
        ):
            if values is None:
                if used:
                    raise ClientError(
                        f"this model was trained with {name} features: send {name} (one value per reading) "
                        "or a timestamp column",
                        422,
                    )
                continue
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (length,) or not np.isfinite(values).all():
                raise ClientError(f"{name} must hold {length} finite numbers, one per reading", 422)
            if name == "time_of_day" and ((values < 0) | (values >= 1)).any():
                raise ClientError("time_of_day is the fraction of the day: values in [0, 1)", 422)
            if name == "day_of_week" and ((values < 0) | (values > 6) | (values != np.round(values))).any():
                raise ClientError("day_of_week holds whole days 0 (Monday) .. 6", 422)
            setattr(window, name, values.astype(np.float32))
        return window

    def from_json(self, body: bytes) -> Window:
        """Parse ``{"window": ..., "time_of_day": ..., "day_of_week": ..., "sensors": ...}``."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ClientError("the body is not valid JSON", 422) from None
        if not isinstance(payload, dict) or "window" not in payload:
            raise ClientError('send {"window": [[speed per sensor] per reading], "time_of_day": [...]}', 422)
        window = payload["window"]
        if not isinstance(window, list) or not window or not all(isinstance(row, list) for row in window):
            raise ClientError("window must be a list of readings, each a list of speeds (one per sensor)", 422)
        if len({len(row) for row in window}) > 1:
            raise ClientError("every reading of the window must hold the same number of speeds", 422)
        speeds = _numbers(window, "window", rows=len(window)).reshape(len(window), -1)
        features = []
        for name in ("time_of_day", "day_of_week"):
            value = payload.get(name)
            features.append(None if value is None else _numbers(value, name))
        sensors = payload.get("sensors")
        valid = isinstance(sensors, list) and all(isinstance(s, str | int) and not isinstance(s, bool) for s in sensors)
        if sensors is not None and not valid:
            raise ClientError("sensors must be a list of sensor ids", 422)
        return self.check(speeds, *features, [str(s) for s in sensors] if sensors is not None else None)

    def from_csv(self, body: bytes) -> Window:
        """Parse a CSV: a header of sensor ids (and optional time columns), one row per reading."""
        try:
            lines = csv.reader(io.StringIO(body.decode("utf-8-sig")))
            rows = [row for row in lines if any(cell.strip() for cell in row)]
        except (UnicodeDecodeError, csv.Error):
            raise ClientError("the body is not UTF-8 CSV text", 422) from None
        if len(rows) < 2:
            raise ClientError("the CSV needs a header of sensor ids and one row per reading", 422)
        header = [cell.strip() for cell in rows[0]]
        if len(set(header)) != len(header):
            raise ClientError("the CSV header repeats a column", 422)
        if any(len(row) != len(header) for row in rows[1:]):
            raise ClientError(f"every CSV row must have {len(header)} cells, like the header", 422)
        columns = {name: [row[i].strip() for row in rows[1:]] for i, name in enumerate(header)}
        time = {name: columns.pop(column) for column in list(columns) if (name := column.lower()) in TIME_COLUMNS}
        if "timestamp" in time:
            try:
                stamps = np.array(time.pop("timestamp"), dtype="datetime64[s]")
            except ValueError:
                raise ClientError("timestamp must be ISO 8601 (2012-03-01T08:00:00)", 422) from None
            seconds = (stamps - stamps.astype("datetime64[D]")).astype(np.int64)
            time.setdefault("time_of_day", list(seconds / 86400.0))
            time.setdefault("day_of_week", list((stamps.astype("datetime64[D]").astype(np.int64) + 3) % 7))
        sensors = list(columns)
        try:
            speeds = np.array([[float(value) for value in columns[s]] for s in sensors], dtype=np.float64).T
            features = [None if time.get(n) is None else np.array(time[n], dtype=np.float64) for n in TIME_COLUMNS[1:]]
        except ValueError as error:
            value = str(error).split(": ")[-1][:40]
            raise ClientError(f"the CSV holds a value that is not a number ({value})", 422) from None
        return self.check(speeds.reshape(len(rows) - 1, len(sensors)), *features, sensors)

    def forecast(self, windows: list[Window]) -> list[np.ndarray]:
        """``(H, N)`` mph forecasts of a batch of windows (one model call)."""
        speeds = np.stack([window.speeds for window in windows])
        features = {}
        for name, used in (("time_of_day", self.protocol.time_of_day), ("day_of_week", self.protocol.day_of_week)):
            if used:
                features[name] = np.stack([getattr(window, name) for window in windows])
        x = model_inputs(speeds, self.predictor.scaler, features.get("time_of_day"), features.get("day_of_week"))
        if self.session is not None:
            out = self.session.run(None, {"inputs": x.numpy()})[0]
        else:
            out = self.predictor.forecast_inputs(x).numpy()
        return list(out)

    def answer(self, forecast: np.ndarray) -> dict[str, Any]:
        """The JSON of one forecast: horizons in minutes, sensor ids, ``forecast[h][n]`` in mph."""
        return {
            "model": self.predictor.model_name,
            "unit": "mph",
            "step_minutes": minutes(self.step_minutes),
            "horizons": [minutes((h + 1) * self.step_minutes) for h in range(len(forecast))],
            "sensors": self.sensors,
            "forecast": np.round(forecast.astype(float), 4).tolist(),
        }

    def answer_csv(self, forecast: np.ndarray) -> str:
        """The CSV of one forecast: ``horizon_minutes`` then one column per sensor."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["horizon_minutes", *self.sensors])
        for step, row in enumerate(forecast):
            writer.writerow([minutes((step + 1) * self.step_minutes), *(f"{value:.4f}" for value in row)])
        return out.getvalue()


def onnx_model(predictor: Predictor, log: Callable[[str], None] = print) -> Path:
    """The run's ONNX export for serving (core's serve cache), exported with the parity check when missing
    or made from another checkpoint."""
    return serving_export(
        predictor.run.folder, predictor.run.checkpoint, lambda path: {"max_abs_diff": export(predictor, path)[1]}, log
    )


def _sample(folder: Path) -> dict[str, Any] | None:
    path = folder / SAMPLE_WINDOW
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def page() -> str:
    """The page of ``GET /`` (self-contained HTML, shipped in the package)."""
    return files("pentad_traffic").joinpath("static", "index.html").read_text(encoding="utf-8")


def build_service(run: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> Service:
    """The traffic :class:`~pentad_core.serving.Service` of a run folder or checkpoint.

    Raises:
        CheckpointError: If ``run`` holds no traffic checkpoint.
    """
    device = options.device
    if options.backend == "torch" and device.startswith("cuda") and not torch.cuda.is_available():
        log(f"--device {device}: no CUDA GPU here; serving on the CPU")
        device = "cpu"
    backend = options.backend
    predictor = Predictor.from_run(run, device=device if backend == "torch" else "cpu")
    if backend == "onnx" and not all(MODELS.info(name).exportable for name in predictor.model_names):
        log(f"{predictor.model_name} cannot be exported to ONNX (registry: exportable=False); serving with torch")
        backend = "torch"
        predictor = Predictor.from_run(run, device=device)
    sample = _sample(Path(predictor.run.folder))
    if sample is not None and sample.get("sensors") != predictor.sensor_ids:
        sample = None  # not this run's sensors: never offer a window the model cannot read
    step_minutes = float(sample["step_minutes"]) if sample else 5.0
    session = onnx_session(onnx_model(predictor, log), device) if backend == "onnx" else None
    forecaster = Forecaster(predictor, session, step_minutes)
    protocol = predictor.protocol
    config = predictor.config

    def add_routes(router: Any, context: ServeContext) -> None:
        @router.post("/v1/forecast")
        async def forecast(request: Request) -> Any:
            """Forecast every sensor from the last input window (JSON or CSV body)."""
            kind = media_type(request.headers.get("content-type"))
            if kind not in CONTENT_TYPES:
                raise ClientError(f"send the window as {' or '.join(CONTENT_TYPES)}, not {kind or 'no type'}", 415)
            body = await read_body(request, options)
            window = forecaster.from_json(body) if kind == "application/json" else forecaster.from_csv(body)
            result = await context.batchers["forecast"].submit(window)
            if "text/csv" in request.headers.get("accept", ""):
                return PlainTextResponse(forecaster.answer_csv(result), media_type="text/csv")
            return JSONResponse(forecaster.answer(result))

        @router.get("/v1/sample")
        async def sample_window(format: str = "json") -> Any:
            """The last input window of the run's training part (JSON, or ``?format=csv``)."""
            if sample is None:
                raise ClientError(f"this run stores no {SAMPLE_WINDOW} (trained before serve existed)", 404)
            if format == "csv":
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(["time_of_day", "day_of_week", *sample["sensors"]])
                for tod, dow, row in zip(sample["time_of_day"], sample["day_of_week"], sample["window"]):
                    writer.writerow([f"{tod:.6f}", dow, *(f"{value:g}" for value in row)])
                return PlainTextResponse(out.getvalue(), media_type="text/csv")
            if format != "json":
                raise ClientError("format must be json or csv", 422)
            return sample

    card = {
        "name": predictor.model_name,
        "model": predictor.model_name,
        "dataset": getattr(config, "dataset", None),
        "protocol": protocol.name,
        "backend": forecaster.backend,
        "metrics": predictor.metrics,
        "inputs": {
            "content_types": list(CONTENT_TYPES),
            "input_len": protocol.input_len,
            "sensors": len(predictor.sensor_ids),
            "window": [protocol.input_len, len(predictor.sensor_ids)],
            "time_of_day": protocol.time_of_day,
            "day_of_week": protocol.day_of_week,
            "step_minutes": minutes(step_minutes),
            "unit": "mph",
        },
        "outputs": {
            "horizon": protocol.output_len,
            "horizons": [minutes((h + 1) * step_minutes) for h in range(protocol.output_len)],
            "reported_horizons": [minutes(h * step_minutes) for h in protocol.horizons],
            "unit": "mph",
        },
        "labels": list(predictor.sensor_ids),
        "sample": sample is not None,
    }

    def warmup() -> None:
        length, count = protocol.input_len, len(predictor.sensor_ids)
        times = np.arange(length, dtype=np.float32) / (24 * 60 / step_minutes)
        forecaster.forecast([Window(np.full((length, count), 50.0, np.float32), times, np.zeros(length, np.float32))])

    return Service("traffic", card, add_routes, {"forecast": forecaster.forecast}, page=page(), warmup=warmup)
