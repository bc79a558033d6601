"""The app end to end on tiny synthetic data: train, evaluate, predict, export, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pentad_traffic.cli import main

TINY = [
    "--set",
    "dataset_options.num_nodes=5",
    "--set",
    "dataset_options.num_days=3",
    "--epochs",
    "1",
    "--set",
    "model_options.hidden=8",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traffic") / "run"
    assert main(["train", "--dataset", "synthetic", "--model", "tgcn", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_run_folder(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    for horizon in (3, 6, 9, 12):
        assert metrics[f"test/h{horizon}/rmse"] > 0
    assert (trained / "config.yaml").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    for plot in ("prediction_vs_truth", "error_by_horizon", "error_by_time_of_day"):
        assert (trained / "plots" / f"{plot}.png").stat().st_size > 1000
    assert (trained / "horizons.csv").read_text().startswith("horizon,minutes,rmse")


def test_evaluate_reproduces_the_test_metrics(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(trained / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    first = json.loads((trained / "metrics.json").read_text())
    again = json.loads((out / "metrics.json").read_text())
    assert again["test/h3/rmse"] == pytest.approx(first["test/h3/rmse"], rel=1e-5)


def test_predict_writes_forecasts_for_the_requested_window(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(trained / "checkpoints" / "last.ckpt"),
            "--out",
            str(out),
            "--start",
            "10",
            "--windows",
            "2",
        ]
    )
    assert code == 0
    lines = (out / "forecasts.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 12
    assert lines[1].startswith("10,22,1,")


def test_export_onnx_matches_torch(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(trained), "--out", str(out)]) == 0  # a run folder is enough
    assert json.loads((out / "metrics.json").read_text())["export/max_abs_diff"] < 1e-3


def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", "--model", "tgcnn", "--out", str(tmp_path / "a")]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert (
        main(["train", "--dataset", "los-loop", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")])
        == 2
    )
    error = capsys.readouterr().err
    assert "nowhere" in error and len(error.strip().splitlines()) == 1
    assert main(["predict", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "c")]) == 2
