"""The app as a user's shell runs it (subprocesses on generated data): a run killed inside an epoch
and continued with `--resume last` ends as an uninterrupted one; DDP over two CPU processes
scores every validation and test window once, as one process does."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pentad_core.checkpoint import load_checkpoint
from pentad_traffic import prepare
from pentad_traffic.data import load_dataset
from pentad_traffic.protocols import PROTOCOLS

APP = Path(__file__).resolve().parents[3] / "apps" / "traffic"

#: Runs the CLI with a pause in every training step (so that a kill lands inside an epoch), a line
#: per step in <record>/steps and one per highway warm start in <record>/highway_init. Neither
#: changes what is computed.
SLOW_APP = """
import sys, time
from pathlib import Path

from pentad_traffic.module import ForecastModule

delay, record = float(sys.argv[1]), Path(sys.argv[2])
training_step, initialise_highway = ForecastModule.training_step, ForecastModule.initialise_highway


def slow_step(self, batch, batch_index):
    with (record / "steps").open("a") as handle:
        handle.write(f"{self.global_step}\\n")
    time.sleep(delay)
    return training_step(self, batch, batch_index)


def counted_initialise_highway(self, x, y):
    with (record / "highway_init").open("a") as handle:
        handle.write("warm start\\n")
    return initialise_highway(self, x, y)


ForecastModule.training_step = slow_step
ForecastModule.initialise_highway = counted_initialise_highway
from pentad_traffic.cli import main

raise SystemExit(main(sys.argv[3:]))
"""

#: GRU with the per-sensor highway (least-squares warm start), 4 sensors x 3 generated days:
#: 668 training windows, 21 steps of 32 per epoch, 4 epochs, T-GCN protocol (last.ckpt every epoch).
RESUME_RUN = [
    "--model",
    "gru",
    "--set",
    "model_options.hidden=8",
    "--set",
    "model_options.sensor_highway=true",
    "--set",
    "dataset_options.num_nodes=4",
    "--set",
    "dataset_options.num_days=3",
    "--epochs",
    "4",
    "--batch-size",
    "32",
    "--accelerator",
    "cpu",
    "--set",
    "trainer.progress_bar=false",
]
STEPS_PER_EPOCH, EPOCHS, DELAY = 21, 4, 0.1


def environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PENTAD_RUN_DIR"} | {"PYTHONUNBUFFERED": "1"}


def run_app(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python apps/traffic ARGUMENTS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, str(APP), *arguments], capture_output=True, text=True, timeout=timeout, env=environment()
    )


def kill_inside_an_epoch(script: Path, record: Path, out: Path, *arguments: str) -> tuple[int, int]:
    """Start the slowed app, wait for a checkpoint newer than the one in ``out`` (if any), sleep a
    random part of an epoch, SIGKILL it. Returns (step of the checkpoint left, steps begun)."""
    last = out / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns if last.exists() else None
    process = subprocess.Popen(
        [sys.executable, str(script), str(DELAY), str(record), "train", "--out", str(out), *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(),
    )
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if last.exists() and last.stat().st_mtime_ns != before:
            break
        time.sleep(0.02)
    fraction = random.uniform(0.2, 0.8)
    time.sleep(fraction * STEPS_PER_EPOCH * DELAY)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists() and last.stat().st_mtime_ns != before, "no new checkpoint before the kill"
    saved = load_checkpoint(last)["global_step"]
    begun = int((record / "steps").read_text().split()[-1]) + 1
    assert saved < EPOCHS * STEPS_PER_EPOCH, "the run finished before it could be killed"
    assert saved < begun and begun % STEPS_PER_EPOCH != 0, f"killed at step {begun}, not inside an epoch ({fraction})"
    return saved, begun


def logged_losses(run: Path) -> dict[int, str]:
    """``train/loss`` as logged in ``logs/metrics.csv``, by step (each step once)."""
    with (run / "logs" / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    losses = {int(row["step"]): row["train/loss"] for row in rows}
    assert len(losses) == len(rows), "a step was logged twice"
    return losses


def test_a_run_killed_twice_inside_an_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    result = run_app("train", "--out", str(reference), *RESUME_RUN)
    assert result.returncode == 0, result.stderr

    script, record, run = tmp_path / "slow_app.py", tmp_path / "record", tmp_path / "run"
    script.write_text(SLOW_APP)
    record.mkdir()
    first = kill_inside_an_epoch(script, record, run, *RESUME_RUN)  # in epoch 1 or later
    second = kill_inside_an_epoch(script, record, run, "--resume", "last")  # after the next checkpoint
    assert second[0] > first[0], (first, second)
    # The least-squares warm start ran once, before the first step; the resumed process loaded the
    # trained highway from the checkpoint instead of fitting it again.
    assert (record / "highway_init").read_text().splitlines() == ["warm start"]

    resumed = run_app("train", "--out", str(run), "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr

    expected, actual = (json.loads((folder / "metrics.json").read_text()) for folder in (reference, run))
    assert actual["fit/steps"] == expected["fit/steps"] == EPOCHS * STEPS_PER_EPOCH
    test_metrics = {key for key in expected if key.startswith("test/")}
    assert len(test_metrics) == 25  # 5 metrics at horizons 3, 6, 9, 12 and over all steps
    assert {key: actual[key] for key in test_metrics} == {key: expected[key] for key in test_metrics}  # exact
    assert logged_losses(run) == logged_losses(reference) and len(logged_losses(run)) >= EPOCHS
    final, uninterrupted = (load_checkpoint(f / "checkpoints" / "last.ckpt")["state_dict"] for f in (run, reference))
    assert final.keys() == uninterrupted.keys()
    for key in final:
        assert torch.equal(final[key], uninterrupted[key]), key
    assert sorted(path.name for path in run.glob("config*.yaml")) == [
        "config.resume-1.yaml",
        "config.resume-2.yaml",
        "config.yaml",
    ]


@pytest.mark.parametrize(
    ("protocol", "days", "windows", "steps", "metrics"),
    [
        # 55 validation and 111 test windows, DCRNN metrics (MAE, RMSE, MAPE at 3, 6, 12 and all steps)
        ("dcrnn", 2, (55, 111), (13, 25), 3 + 12),
        # no validation split; 159 test windows, the last ones short of future steps (NaN truths);
        # RMSE, MAE, accuracy, R2 and explained variance at 3, 6, 9, 12 and all steps
        ("tgcn", 3, (0, 159), (21, 42), 25),
    ],
)
def test_ddp_on_two_processes_scores_every_window_once_like_one_process(
    tmp_path: Path, protocol: str, days: int, windows: tuple[int, int], steps: tuple[int, int], metrics: int
) -> None:
    # Odd window counts, so DDP's sampler repeats one window of a split to give both processes equal
    # shares. lr 1e-12 keeps the warm-started weights (Adam moves each by ~1e-12), so both runs
    # forecast with the same model and their metrics differ only if a window is missed or counted twice.
    prepared = prepare(load_dataset("synthetic", options={"num_nodes": 4, "num_days": days}), PROTOCOLS[protocol])
    assert (len(prepared.val or ()), len(prepared.test)) == windows
    arguments = [
        "train",
        "--model",
        "gru",
        "--protocol",
        protocol,
        "--lr",
        "1e-12",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--accelerator",
        "cpu",
        "--set",
        "model_options.hidden=8",
        "--set",
        "dataset_options.num_nodes=4",
        "--set",
        f"dataset_options.num_days={days}",
        "--set",
        "trainer.progress_bar=false",
    ]
    distributed = run_app(*arguments, "--strategy", "ddp", "--devices", "2", "--out", str(tmp_path / "ddp"))
    assert distributed.returncode == 0, distributed.stderr
    single = run_app(*arguments, "--devices", "1", "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr

    two, one = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("ddp", "single"))
    # Each process trained on its half of the training windows, 16 at a time.
    assert (two["fit/steps"], one["fit/steps"]) == steps
    keys = sorted(key for key in one if key.startswith(("val/", "test/")))
    assert len(keys) == metrics
    for key in keys:
        # Measured equal to the last digit; the bound allows float32 rounding of batches of other sizes.
        assert abs(two[key] - one[key]) <= 1e-5 * abs(one[key]), (key, two[key], one[key])
