"""Self-configuration of the generic ``csv`` dataset: settings derived from a fingerprint of the series.

A named dataset (Los-loop, METR-LA, ...) has a recipe tuned on it; a user's own speed table has none.
:func:`fingerprint` measures it once on load (sensors, sampling interval, series length, missing share,
whether a road graph came with it, value range) and :func:`plan` turns that into settings by stated
rules, each with its reason; :func:`configure` applies those nobody set (the recipe, ``--config``, the
options and ``--set`` win) through :func:`pentad_core.autoconfig.self_configure`, which writes them into
the run's ``config.yaml`` and prints one short table. With ``--time-budget`` the number of epochs comes
from the measured time of a few training steps on a throwaway copy of the model::

    uv run apps/traffic train --dataset csv --data-dir my_sensors --time-budget 5m
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pentad_core.autoconfig import Choice, apply_choices, epochs_for_budget, parse_duration, seconds_per_step
from pentad_core.autoconfig import self_configure as apply_and_record
from pentad_core.devices import set_threads
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import TrafficData
from pentad_traffic.protocols import PreparedData, prepare

#: Datasets configured from their fingerprint (the named ones have recipes).
SELF_CONFIGURED = ("csv",)
#: Optimiser steps aimed at without a time budget (epochs kept in ``EPOCH_RANGE``).
TARGET_STEPS = 1000
EPOCH_RANGE = (5, 30)
#: Most epochs a time budget may buy.
MAX_BUDGET_EPOCHS = 100
#: Models that take ``sensor_highway`` and the name of their width option.
WIDTH_OPTION = {"gru": "hidden", "gcn": "hidden", "tgcn": "hidden", "a3tgcn": "hidden", "stgcn": "channels"}
SENSOR_HIGHWAY = ("gru", "tgcn", "a3tgcn", "stgcn", "graph-wavenet")


def _interval_seconds(data: TrafficData) -> float:
    if data.timestamps is not None and len(data.timestamps) > 1:
        steps = np.diff(data.timestamps.astype("datetime64[s]").astype(np.int64))
        return float(np.median(steps))
    return 86400.0 / data.steps_per_day


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def fingerprint(data: TrafficData) -> dict[str, Any]:
    """What the settings are derived from: sensors, sampling interval, length, missing share, graph, values.

    Readings of exactly 0 count as missing (the convention of every dataset here, see
    :mod:`pentad_traffic.data.core`); the value statistics leave them out.
    """
    interval = _interval_seconds(data)
    speeds = data.speeds
    missing = speeds == 0
    present = speeds[~missing] if (~missing).any() else speeds.ravel()
    edges = int((data.adjacency > 0).sum() - (np.diag(data.adjacency) > 0).sum())
    return {
        "sensors": data.num_nodes,
        "steps": data.num_steps,
        "interval_s": interval,
        "days": round(data.num_steps * interval / 86400, 2),
        "timestamps": data.timestamps is not None,
        "missing_share": round(float(missing.mean()), 4),
        "graph_edges": edges,
        "min": round(float(present.min()), 4),
        "max": round(float(present.max()), 4),
        "mean": round(float(present.mean()), 4),
        "std": round(float(present.std()), 4),
    }


def _input_len(fp: dict[str, Any], train_steps: int) -> tuple[int, str]:
    interval = fp["interval_s"]
    if interval < 1800:
        steps, span = round(3600 / interval), "one hour"
    else:
        steps, span = round(86400 / interval), "one day"
    value = int(min(max(steps, 12), 48, max(1, train_steps // 10)))
    return value, f"{span} of {_duration(interval)} steps ({steps}), kept in 12..48"


def plan(fp: dict[str, Any], config: TrafficConfig, model: str | None = None) -> list[Choice]:
    """The settings the fingerprint ``fp`` suggests (without the epochs, see :func:`configure`).

    Args:
        fp: :func:`fingerprint` of the data.
        config: The config as resolved so far (its ``protocol`` and ``output_len`` are used).
        model: The model in force when the user chose one (``--model``); ``None`` lets the plan choose.
    """
    sensors, has_graph = fp["sensors"], fp["graph_edges"] > 0
    choices = []
    if model is None:
        model = "graph-wavenet" if has_graph else "gru"
        reason = (
            f"road graph with {fp['graph_edges']} edges: the best graph model measured on Los-loop"
            if has_graph
            else "no road graph (no adjacency or distances file): a GRU shared by the sensors"
        )
        choices.append(Choice("model", model, reason))
    train_steps = int(fp["steps"] * config.build_protocol().train)
    input_len, reason = _input_len(fp, train_steps)
    choices.append(Choice("input_len", input_len, reason))
    many = sensors >= 150
    if model == "graph-wavenet":
        channels = 16 if many else 32
        choices.append(Choice("model_options.channels", channels, f"{sensors} sensors (16 from 150 up: CPU cost)"))
        choices.append(Choice("model_options.skip_channels", 2 * channels, "twice the channels"))
        choices.append(Choice("model_options.end_channels", 4 * channels, "four times the channels"))
    elif model in WIDTH_OPTION:
        width = 32 if many else 64
        choices.append(Choice(f"model_options.{WIDTH_OPTION[model]}", width, f"{sensors} sensors (32 from 150 up)"))
    if model in SENSOR_HIGHWAY and sensors > 1:
        windows, features = train_steps - input_len - config.output_len + 1, 3 * input_len
        wanted = windows >= 10 * features
        choices.append(
            Choice(
                "model_options.sensor_highway",
                wanted,
                f"{windows} training windows per sensor {'>=' if wanted else '<'} 10 x {features} highway lags",
            )
        )
    far = fp["min"] < 0 or fp["mean"] > 4 * fp["std"]
    choices.append(
        Choice(
            "scaling",
            "zscore" if far else "max",
            f"mean {fp['mean']:.4g}, std {fp['std']:.4g}, min {fp['min']:.4g}: "
            + ("readings far from 0 or negative" if far else "readings spread from near 0: divide by the maximum"),
        )
    )
    if sensors < 150 and not torch.cuda.is_available():
        choices.append(
            Choice("threads", 1, f"{sensors} sensors on the CPU: small steps, as fast on one thread and no stalls")
        )
    weeks = fp["days"] / 7
    daily = fp["days"] >= 28 and fp["interval_s"] < 86400
    choices.append(
        Choice(
            "time_of_day",
            daily,
            f"{fp['days']:g} days: every time of day seen {'>= 4' if daily else '< 4'} weeks ({weeks:.1f})"
            if fp["interval_s"] < 86400
            else "daily or coarser steps",
        )
    )
    if fp["missing_share"] > 0 and fp["min"] > 0:
        choices.append(
            Choice(
                "dataset_options.missing_value",
                0.0,
                f"{100 * fp['missing_share']:.2g} % of readings are 0 in an otherwise positive series: mask them",
            )
        )
    return choices


def _epoch_seconds(config: TrafficConfig, prepared: PreparedData) -> tuple[float, int]:
    """Measured seconds of one training epoch (a few steps on a throwaway model) and its step count."""
    from pentad_traffic.pipeline import build_module

    module = build_module(config, prepared)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    x, y = prepared.train.tensors()
    batch = x[: config.batch_size], y[: config.batch_size]

    def step() -> None:
        optimizer.zero_grad()
        module._loss(module(batch[0]), batch[1]).backward()
        optimizer.step()

    steps = math.ceil(len(prepared.train) / config.batch_size)
    return steps * seconds_per_step(step), steps


def configure(context: Any, data: TrafficData) -> tuple[TrafficConfig, PreparedData]:
    """Self-configure a ``csv`` run from ``data`` and prepare the data under the resulting protocol.

    Other datasets (and ``self_configure: false``, and a resumed run) are prepared as configured.
    """
    config: TrafficConfig = context.config
    if config.dataset not in SELF_CONFIGURED or not config.self_configure or context.resume_path is not None:
        return config, prepare(data, config.build_protocol())
    fp = fingerprint(data)
    explicit = context.explicit_keys
    choices = plan(fp, config, config.model if "model" in explicit else None)
    planned, _ = apply_choices(config, choices, explicit)
    set_threads(planned.threads)  # before timing a step
    prepared = prepare(data, planned.build_protocol())
    if planned.time_budget is not None:
        epoch_s, steps = _epoch_seconds(planned, prepared)
        budget = parse_duration(planned.time_budget)
        epochs = epochs_for_budget(budget, epoch_s, overhead_s=0.1 * budget, maximum=MAX_BUDGET_EPOCHS)
        reason = f"--time-budget {planned.time_budget}: {epoch_s:.3g} s per epoch measured ({steps} steps)"
    else:
        steps = math.ceil(len(prepared.train) / planned.batch_size)
        epochs = min(max(math.ceil(TARGET_STEPS / steps), EPOCH_RANGE[0]), EPOCH_RANGE[1])
        reason = f"about {TARGET_STEPS} optimiser steps at {steps} per epoch (kept in 5..30; no --time-budget)"
    choices.append(Choice("trainer.max_epochs", epochs, reason))
    config = apply_and_record(context, fp, choices)
    missing = config.dataset_options.get("missing_value")
    data.null_value = float(missing) if missing is not None else data.null_value
    protocol = config.build_protocol()
    return config, prepared if protocol == prepared.protocol and missing is None else prepare(data, protocol)
