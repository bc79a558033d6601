"""Per-model recipe sections (train --model X and benchmark get the same config), self-configuration of
the csv dataset from its fingerprint, and --time-budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pentad_traffic.autoconfig import fingerprint, plan
from pentad_traffic.cli import app, main
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import load_csv

RECIPE = Path(__file__).resolve().parents[3] / "shared" / "configs" / "traffic" / "los-loop.yaml"


def resolved(argv: list[str]) -> TrafficConfig:
    """The config ``argv`` resolves to (nothing runs)."""
    args = app.build_parser().parse_args(argv)
    return app.resolve_config(args, app._verbs.get(args.verb))


@pytest.mark.parametrize("model", ["graph-wavenet", "tgcn", "gcn", "persistence"])
def test_train_model_x_applies_section_x_and_benchmark_gets_the_same_config(model: str, tmp_path: Path) -> None:
    sections = yaml.safe_load(RECIPE.read_text())["models"]
    config = resolved(["train", "--dataset", "los-loop", "--model", model])
    section = sections.get(model, {})
    assert config.model == model
    assert config.model_options == section.get("model_options", {})
    assert config.trainer.max_epochs == section.get("trainer", {}).get("max_epochs", 30)
    assert config.loss == section.get("loss", "huber")
    assert config.huber_delta == section.get("huber_delta", 6.0)
    # benchmark: each model gets exactly what `train --model X` gets (core's config_for_model)
    args = app.build_parser().parse_args(["benchmark", "--dataset", "los-loop", "--out", str(tmp_path)])
    context = type("Context", (), {"args": args, "verb": "benchmark"})()
    assert app.config_for_model(context, model) == config


def test_the_recipe_default_is_graph_wavenet_with_its_section() -> None:
    config = resolved(["train", "--dataset", "los-loop"])
    assert config.model == "graph-wavenet"
    assert config.model_options["sensor_highway"] is True and config.trainer.max_epochs == 25
    # an option on the command line wins over the section
    assert resolved(["train", "--dataset", "los-loop", "--model", "gru", "--epochs", "3"]).trainer.max_epochs == 3


def write_series(folder: Path, steps: int = 864, sensors: int = 3, graph: bool = False) -> None:
    """A hand-made 5-minute speed table (daily wave + noise, one reading 0) and optionally a chain graph."""
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    speeds = 50 + 10 * np.sin(2 * np.pi * t / 288)[:, None] + rng.normal(0, 2, (steps, sensors))
    speeds[5, 1] = 0.0
    start = np.datetime64("2024-01-01T00:00")
    lines = ["timestamp," + ",".join(f"s{i}" for i in range(sensors))]
    for i in range(steps):
        stamp = str(start + np.timedelta64(5 * i, "m")).replace("T", " ")
        lines.append(stamp + "," + ",".join(f"{v:.2f}" for v in speeds[i]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "speeds.csv").write_text("\n".join(lines) + "\n")
    if graph:
        adjacency = np.eye(sensors) + np.eye(sensors, k=1) + np.eye(sensors, k=-1)
        (folder / "adjacency.csv").write_text("\n".join(",".join(f"{v:g}" for v in row) for row in adjacency))


def test_fingerprint_and_choices_of_a_hand_made_csv(tmp_path: Path) -> None:
    write_series(tmp_path)
    data = load_csv(tmp_path)  # no adjacency file: no graph
    fp = fingerprint(data)
    assert fp["sensors"] == 3 and fp["steps"] == 864 and fp["interval_s"] == 300.0 and fp["days"] == 3.0
    assert fp["graph_edges"] == 0 and fp["missing_share"] == pytest.approx(1 / (3 * 864), abs=1e-4)
    choices = {c.key: c.value for c in plan(fp, TrafficConfig(dataset="csv"))}
    assert choices.pop("threads", 1) == 1  # on the CPU (no choice with CUDA)
    assert choices == {
        "model": "gru",
        "input_len": 12,  # one hour of 5-minute steps
        "model_options.hidden": 64,
        "model_options.sensor_highway": True,  # 668 training windows >= 10 x 36 lags
        "scaling": "zscore",  # mean about 50, std about 7.5
        "time_of_day": False,  # 3 days
        "dataset_options.missing_value": 0.0,
    }
    write_series(tmp_path / "graph", graph=True)
    fp = fingerprint(load_csv(tmp_path / "graph"))
    assert fp["graph_edges"] == 4
    choices = {c.key: c.value for c in plan(fp, TrafficConfig(dataset="csv"))}
    assert choices["model"] == "graph-wavenet" and choices["model_options.channels"] == 32
    # hourly readings over 40 days: a day of input steps, time of day as an input
    hourly = dict(fp, interval_s=3600.0, steps=960, days=40.0)
    choices = {c.key: c.value for c in plan(hourly, TrafficConfig(dataset="csv"), model="gru")}
    assert choices["input_len"] == 24 and choices["time_of_day"] is True and "model" not in choices


def test_explicit_options_win_and_the_budget_stops_training_with_a_tested_checkpoint(tmp_path: Path) -> None:
    write_series(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    # --epochs and --set input_len are the user's: self-configuration keeps them; the 3 s budget stops the
    # 1,000 epochs early, and the last checkpoint is tested.
    argv += ["--epochs", "1000", "--set", "input_len=6", "--set", "model_options.hidden=8", "--time-budget", "3s"]
    assert main(argv) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["input_len"] == 6 and config["trainer"]["max_epochs"] == 1000
    assert config["model_options"]["hidden"] == 8
    chosen = config["self_config"]["choices"]
    assert chosen["model"]["value"] == "gru" and "input_len" not in chosen and "trainer.max_epochs" not in chosen
    assert chosen["scaling"]["value"] == "zscore" and "mean" in chosen["scaling"]["reason"]
    assert config["self_config"]["fingerprint"]["sensors"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test/h3/rmse"]) and (out / "checkpoints" / "last.ckpt").is_file()
    logged = (out / "logs" / "metrics.csv").read_text().splitlines()
    epochs = {row.split(",")[logged[0].split(",").index("epoch")] for row in logged[1:]}
    assert len(epochs) < 1000


def test_the_time_budget_sizes_the_epochs_from_a_measured_step(tmp_path: Path) -> None:
    write_series(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    assert main([*argv, "--set", "model_options.hidden=8", "--time-budget", "20s"]) == 0
    choice = yaml.safe_load((out / "config.yaml").read_text())["self_config"]["choices"]["trainer.max_epochs"]
    assert 1 <= choice["value"] <= 100 and "per epoch measured" in choice["reason"]
