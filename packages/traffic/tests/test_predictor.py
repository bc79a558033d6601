"""Predictor.from_run: a trained run forecasts on its own, without the data it was trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pentad_core.checkpoint import load_checkpoint
from pentad_core.errors import CheckpointError, ConfigError
from pentad_core.runs import RunDir
from pentad_core.training import TrainerConfig
from pentad_traffic import pipeline
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import generate_synthetic, load_dataset
from pentad_traffic.predictor import Predictor


def write_csv_dataset(folder: Path) -> None:
    """A 4-sensor synthetic series as speeds.csv (with 5-minute timestamps) and adjacency.csv."""
    data = generate_synthetic(num_nodes=4, num_days=2, seed=5)
    folder.mkdir(parents=True)
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(data.num_steps) * np.timedelta64(5, "m")
    lines = ["timestamp," + ",".join(data.sensor_ids)]
    lines += [f"{stamp},{','.join(f'{v:.3f}' for v in row)}" for stamp, row in zip(stamps, data.speeds, strict=True)]
    (folder / "speeds.csv").write_text("\n".join(lines) + "\n")
    (folder / "adjacency.csv").write_text("\n".join(",".join(f"{v:.4f}" for v in row) for row in data.adjacency))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short T-GCN run with time-of-day features on a CSV dataset whose folder is then deleted."""
    root = tmp_path_factory.mktemp("predictor")
    data_dir = root / "data"
    write_csv_dataset(data_dir)
    config = TrafficConfig(
        model="tgcn",
        dataset="csv",
        data_dir=str(data_dir),
        time_of_day=True,
        model_options={"hidden": 8},
        batch_size=64,
        trainer=TrainerConfig(max_epochs=1, monitor="", progress_bar=False),
    )
    run = RunDir.for_training(root / "run")
    run.write_config(config)
    torch.manual_seed(0)
    prepared = pipeline.prepare_run_data(config)
    module, metrics = pipeline.train_model(config, prepared, run)
    x, _ = prepared.test.tensors()
    with torch.no_grad():
        expected = module.eval()(x).numpy()  # the in-memory module on the prepared test windows
    data = load_dataset("csv", root=data_dir)
    shutil.rmtree(data_dir)
    return {"run": run.path, "expected": expected, "data": data, "starts": prepared.test.starts, "metrics": metrics}


def windows(data, starts: np.ndarray, length: int = 12) -> tuple[np.ndarray, np.ndarray]:
    index = starts[:, None] + np.arange(length)
    return data.speeds[index], data.time_of_day()[index]


@pytest.mark.parametrize("where", ["folder", "checkpoint"])
def test_from_run_forecasts_like_the_trained_module_without_the_data(trained, where: str) -> None:
    path = trained["run"] if where == "folder" else trained["run"] / "checkpoints" / "last.ckpt"
    predictor = Predictor.from_run(path)
    assert not Path(predictor.config.data_dir).exists()  # the training data is gone
    assert predictor.sensor_ids == trained["data"].sensor_ids and predictor.input_len == 12
    speeds, time_of_day = windows(trained["data"], trained["starts"])
    batch = predictor.predict(speeds, time_of_day=time_of_day)
    np.testing.assert_allclose(batch, trained["expected"], rtol=1e-5, atol=1e-4)
    one = predictor.predict(speeds[3], time_of_day=time_of_day[3])  # one (T, N) window -> (H, N)
    assert one.shape == (12, 4)
    np.testing.assert_allclose(one, trained["expected"][3], rtol=1e-5, atol=1e-4)


def test_evaluate_with_the_predictor_reproduces_the_test_metrics(trained) -> None:
    predictor = Predictor.from_run(trained["run"])
    _, metrics = pipeline.evaluate(predictor, trained["data"])
    assert metrics["test/h3/rmse"] == pytest.approx(trained["metrics"]["test/h3/rmse"], rel=1e-5)
    assert metrics["test/h12/mae"] == pytest.approx(trained["metrics"]["test/h12/mae"], rel=1e-5)


def test_missing_time_features_and_wrong_shapes_are_config_errors(trained) -> None:
    predictor = Predictor.from_run(trained["run"])
    speeds, time_of_day = windows(trained["data"], trained["starts"][:1])
    with pytest.raises(ConfigError, match="time_of_day"):
        predictor.predict(speeds[0])
    with pytest.raises(ConfigError, match="window"):
        predictor.predict(speeds[0, :, :3], time_of_day=time_of_day[0])


def test_a_checkpoint_without_its_graph_is_refused(trained, tmp_path: Path) -> None:
    state = load_checkpoint(trained["run"] / "checkpoints" / "last.ckpt")
    del state["hyper_parameters"]["adjacency"]
    torch.save(state, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="adjacency"):
        Predictor.from_run(tmp_path / "old.ckpt")
