"""Blends of forecasters (the config keys ``blend`` and ``blend_weights``): the exact rescaling of each
model's inputs, training through the CLI with each model's recipe section, the verbs that read a
blended run, serving it, errors, and resuming a blend killed inside its last model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pentad_core.errors import ConfigError
from pentad_core.testing import ServerProcess, free_port
from pentad_traffic.blend import ForecastBlend
from pentad_traffic.cli import main
from pentad_traffic.data import load_dataset
from pentad_traffic.module import ForecastModule
from pentad_traffic.predictor import Predictor
from pentad_traffic.protocols import PROTOCOLS, Scaler, model_inputs

DATA = {"num_nodes": 5, "num_days": 3, "seed": 0}
QUIET = ["--set", "trainer.progress_bar=false", "--accelerator", "cpu"]


def module(model: str, scaler: Scaler, adjacency: np.ndarray, **options) -> ForecastModule:
    protocol = PROTOCOLS["tgcn"].replace(time_of_day=True, scaling="zscore" if scaler.center else "max")
    return ForecastModule(model, 5, adjacency, protocol, scaler.center, scaler.scale, model_options=options).eval()


def test_each_model_gets_its_own_scaling_and_the_blend_is_the_weighted_mean_in_mph(ring_adjacency):
    torch.manual_seed(0)
    zscore, maximum = Scaler(45.0, 9.0), Scaler(0.0, 70.0)
    members = [module("gru", zscore, ring_adjacency, hidden=8), module("gcn", maximum, ring_adjacency, hidden=8)]
    members.append(module("persistence", maximum, ring_adjacency))
    blend = ForecastBlend(members, [0.5, 0.3, 0.2], ["gru", "gcn", "persistence"]).eval()
    speeds = np.random.default_rng(0).uniform(10, 70, size=(4, 12, 5)).astype(np.float32)
    times = np.broadcast_to(np.linspace(0.1, 0.2, 12, dtype=np.float32), (4, 12))
    with torch.no_grad():
        got = blend(model_inputs(speeds, zscore, times))  # scaled as the first model's inputs
        own = [m(model_inputs(speeds, m.scaler, times)) for m in members]  # each from mph, its own scaling
    assert got.shape == (4, 12, 5)
    torch.testing.assert_close(got, 0.5 * own[0] + 0.3 * own[1] + 0.2 * own[2], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(own[2], torch.as_tensor(speeds[:, -1:]).expand(4, 12, 5), rtol=1e-5, atol=1e-4)
    assert (blend.model_name, blend.scaler, blend.protocol.scaling) == ("gru+gcn+persistence", zscore, "zscore")


def test_a_blend_refuses_weights_and_models_that_do_not_fit(ring_adjacency):
    scaler = Scaler(0.0, 70.0)
    members = [module("gru", scaler, ring_adjacency, hidden=4), module("gcn", scaler, ring_adjacency)]
    with pytest.raises(ConfigError, match="sum to 1"):
        ForecastBlend(members, [0.5, 0.6], ["gru", "gcn"])
    other = ForecastModule("gcn", 5, ring_adjacency, PROTOCOLS["tgcn"].replace(input_len=6), 0.0, 70.0)
    with pytest.raises(ConfigError, match="another protocol"):
        ForecastBlend([members[0], other], [0.5, 0.5], ["gru", "gcn"])


def write_recipe(root: Path) -> Path:
    """A synthetic recipe whose ``tgcn`` section (z-scored) blends ``gru`` (its own section, max-scaled)
    at a 0.3 share; returns the folder for ``PENTAD_CONFIGS``."""
    configs = root / "configs" / "traffic"
    configs.mkdir(parents=True)
    recipe = {
        "model": "tgcn",
        "dataset": "synthetic",
        "dataset_options": DATA,
        "time_of_day": True,
        "batch_size": 32,
        "threads": 1,
        "trainer": {"max_epochs": 2, "monitor": ""},
        "models": {
            "tgcn": {"scaling": "zscore", "model_options": {"hidden": 8}, "blend": ["gru"], "blend_weights": [0.3]},
            "gru": {"lr": 0.004, "time_of_day": False, "model_options": {"hidden": 8, "joint": True}},
        },
    }
    (configs / "synthetic.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return root / "configs"


@pytest.fixture(scope="module")
def blended(tmp_path_factory) -> Path:
    """``tgcn`` blended with ``gru`` (:func:`write_recipe`), trained in process."""
    root = tmp_path_factory.mktemp("blend")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PENTAD_CONFIGS", str(write_recipe(root)))
        assert main(["train", "--dataset", "synthetic", "--out", str(root / "run"), *QUIET]) == 0
    return root / "run"


def test_each_blended_model_trains_with_its_recipe_section_and_the_blends_windows(blended):
    run = yaml.safe_load((blended / "config.yaml").read_text())
    assert (run["model"], run["blend"], run["blend_weights"]) == ("tgcn", ["gru"], [0.3])
    for name, own in (("tgcn", {"scaling": "zscore"}), ("gru", {"lr": 0.004, "scaling": ""})):
        member = yaml.safe_load((blended / "blend" / name / "config.yaml").read_text())
        assert (member["model"], member["blend"], member["blend_weights"]) == (name, [], [])
        assert {key: member[key] for key in own} == own
        # the blend's inputs and windows whatever the model's section says (gru's time_of_day: false)
        shared = ("dataset_options", "protocol", "input_len", "output_len", "time_of_day", "seed")
        assert {key: member[key] for key in shared} == {key: run[key] for key in shared}
        assert (blended / "blend" / name / "checkpoints" / "last.ckpt").is_file()
    assert Predictor.from_run(blended / "blend" / "gru").scaler.center == 0.0  # max-scaled, as its section says


def test_the_blend_is_the_weighted_mean_of_its_models_forecasts(blended):
    predictor = Predictor.from_run(blended)
    assert predictor.model_name == "tgcn+gru" and predictor.model_names == ["tgcn", "gru"]
    data = load_dataset("synthetic", options=DATA)
    windows = np.stack([data.speeds[s : s + 12] for s in (100, 400, 700)])
    times = np.stack([data.time_of_day()[s : s + 12] for s in (100, 400, 700)])
    each = [Predictor.from_run(blended / "blend" / n).predict(windows, time_of_day=times) for n in ("tgcn", "gru")]
    np.testing.assert_allclose(
        predictor.predict(windows, time_of_day=times), 0.7 * each[0] + 0.3 * each[1], rtol=1e-5, atol=1e-4
    )
    metrics = json.loads((blended / "metrics.json").read_text())
    assert (metrics["blend/tgcn/weight"], metrics["blend/gru/weight"]) == pytest.approx((0.7, 0.3))
    for name in ("tgcn", "gru"):
        own = json.loads((blended / "blend" / name / "metrics.json").read_text())
        assert metrics[f"blend/{name}/test/h3/rmse"] == own["test/h3/rmse"]
    assert np.isfinite([metrics[f"test/h{h}/rmse"] for h in (3, 6, 9, 12)]).all()


def test_a_blended_run_is_evaluated_predicted_and_exported(blended, tmp_path):
    assert main(["evaluate", "--checkpoint", str(blended), "--out", str(tmp_path / "v"), *QUIET]) == 0
    trained = json.loads((blended / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "v" / "metrics.json").read_text())
    for h in (3, 6, 9, 12):
        assert evaluated[f"test/h{h}/rmse"] == pytest.approx(trained[f"test/h{h}/rmse"], abs=1e-5)
    assert main(["predict", "--checkpoint", str(blended), "--out", str(tmp_path / "p"), *QUIET]) == 0
    assert (tmp_path / "p" / "forecasts.csv").is_file()
    assert main(["export", "--checkpoint", str(blended), "--out", str(tmp_path / "e"), *QUIET]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["export/max_abs_diff"] < 1e-3


def test_benchmark_trains_a_blended_section_as_train_does_and_names_its_row(blended, tmp_path, monkeypatch):
    monkeypatch.setenv("PENTAD_CONFIGS", str(blended.parent / "configs"))
    out = tmp_path / "bench"
    assert main(["benchmark", "--dataset", "synthetic", "--models", "tgcn", "--out", str(out), *QUIET]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trained = json.loads((blended / "metrics.json").read_text())
    assert metrics["test/tgcn+gru/h3/rmse"] == pytest.approx(trained["test/h3/rmse"], abs=1e-5)
    assert (out / "models" / "tgcn" / "blend" / "gru" / "checkpoints" / "last.ckpt").is_file()


def test_a_served_blend_forecasts_as_its_predictor(blended):
    """``serve --run`` on a blended run, in a real server process (ONNX Runtime, the default)."""
    predictor = Predictor.from_run(blended)
    sample = json.loads((blended / "sample_window.json").read_text())
    port = free_port()
    command = [sys.executable, "-m", "pentad_traffic", "serve", "--run", str(blended), "--port", str(port)]
    with ServerProcess(command, port=port) as server:
        payload = {"window": sample["window"], "time_of_day": sample["time_of_day"]}
        status, body = server.post_json("/v1/forecast", payload)
        assert status == 200, body
        assert body["model"] == "tgcn+gru"
        expected = predictor.predict(sample["window"], time_of_day=sample["time_of_day"])
        np.testing.assert_allclose(body["forecast"], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["--set", "blend=[gcn]", "--set", "blend_weights=[0.3, 0.2]"], "2 shares for 1 blended models"),
        (["--set", "blend=[gcn, gru]", "--set", "blend_weights=[0.6, 0.5]"], "sum to less than 1"),
        (["--set", "blend=[gcn]", "--set", "blend_weights=[0]"], "must be positive"),
        (["--set", "blend=[gcn, gcn]"], "names a model twice"),
        (["--set", "blend=[tgcn]"], "names a model twice"),
        (["--set", "blend=[gcnn]"], "gcnn"),
    ],
)
def test_a_blend_that_cannot_run_is_one_line_with_exit_2_before_anything_trains(tmp_path, capsys, changes, message):
    out = tmp_path / "r"
    arguments = ["train", "--dataset", "synthetic", "--model", "tgcn", "--epochs", "1", "--out", str(out)]
    assert main([*arguments, *changes, *QUIET]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error and len(error.splitlines()) == 1
    assert not (out / "blend").exists()


#: Runs `apps/traffic`, SIGKILLing its own process as model KILL_MODEL's training step KILL_AT starts.
WRAPPER = """
import os, signal

from pentad_traffic.module import ForecastModule

original = ForecastModule.training_step


def training_step(self, batch, batch_index):
    if self.hparams.model == os.environ["KILL_MODEL"] and self.global_step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batch, batch_index)


ForecastModule.training_step = training_step
from pentad_traffic.cli import main

raise SystemExit(main())
"""


def test_a_blend_killed_while_its_last_model_trains_resumes_to_the_uninterrupted_result(tmp_path):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    env = {**os.environ, "PENTAD_CONFIGS": str(write_recipe(tmp_path)), "KILL_MODEL": "gru"}
    env.pop("PENTAD_RUN_DIR", None)

    def app(*arguments: str, kill_at: int = -1) -> subprocess.CompletedProcess:
        command = [sys.executable, str(wrapper), "train", *arguments, *QUIET]
        return subprocess.run(command, capture_output=True, text=True, env={**env, "KILL_AT": str(kill_at)})

    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    done = app("--dataset", "synthetic", "--out", str(reference))
    assert done.returncode == 0, done.stderr
    steps = json.loads((reference / "blend" / "gru" / "metrics.json").read_text())["fit/steps"]
    killed = app("--dataset", "synthetic", "--out", str(interrupted), kill_at=int(steps) * 3 // 4)  # in epoch 2
    assert killed.returncode == -9, killed.stderr
    assert (interrupted / "blend" / "gru" / "checkpoints" / "last.ckpt").is_file()
    finished = (interrupted / "blend" / "tgcn" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    early = subprocess.run(
        [sys.executable, "-m", "pentad_traffic", "evaluate", "--checkpoint", str(interrupted)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert early.returncode == 2 and "still training" in early.stderr, early.stderr

    done = app("--resume", "last", "--out", str(interrupted))
    assert done.returncode == 0, done.stderr
    assert (interrupted / "blend" / "tgcn" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == finished
    expected, got = (json.loads((run / "metrics.json").read_text()) for run in (reference, interrupted))
    keys = [k for k in expected if k.startswith(("test/", "blend/"))]
    assert keys and {k: got[k] for k in keys} == pytest.approx({k: expected[k] for k in keys}, abs=1e-5)
