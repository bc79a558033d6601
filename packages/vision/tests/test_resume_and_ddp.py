"""The app as a user's shell runs it (`python apps/vision ...` in subprocesses): kill-and-resume, DDP."""

from __future__ import annotations

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

APP = Path(__file__).resolve().parents[3] / "apps" / "vision"


def run_app(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(APP), *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def metrics_of(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())


# Augmentations (crop, flip, CutMix) and shuffles draw random numbers; the EMA of the weights is
# evaluated: all of it must continue exactly where the checkpoint left it. Without a monitored metric
# `last.ckpt` is rewritten after every epoch, so each kill falls in a known epoch (with `val/acc`
# monitored, this Lightning rewrites it only when `val/acc` improves, and a resume repeats more epochs).
RESUMABLE = [
    "--dataset", "synthetic", "--epochs", "5", "--batch-size", "16", "--accelerator", "cpu", "--set", "threads=1",
    "--set", "dataset_options={num_train: 400, num_test: 60, image_size: 24}", "--set", "model_options={hidden: 32}",
    "--set", "optim.ema_decay=0.9", "--set", "augment={crop_padding: 2, flip: true, cutmix_alpha: 1.0}",
    "--set", "trainer.monitor=", "--set", "trainer.progress_bar=false",
]  # fmt: skip


def _kill_inside_an_epoch(run: Path, epoch_seconds: float, rng: random.Random, resume: bool) -> int:
    """Start (or resume) training, wait for a checkpoint newer than any before, SIGKILL a random way into the
    next epoch; returns the epoch of the checkpoint left behind."""
    last = run / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns if last.exists() else None
    arguments = ["--resume", "last"] if resume else RESUMABLE
    process = subprocess.Popen(
        [sys.executable, str(APP), "train", "--out", str(run), *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if last.exists() and last.stat().st_mtime_ns != before:
            break
        time.sleep(0.02)
    fraction = rng.uniform(0.2, 0.8)
    time.sleep(fraction * epoch_seconds)  # into the epoch after the checkpoint
    assert process.poll() is None, f"the run ended before the kill ({fraction:.2f} of an epoch after a checkpoint)"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return int(load_checkpoint(last)["epoch"])


def test_killed_twice_inside_epochs_then_resumed_equals_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    result = run_app("train", "--out", str(reference), *RESUMABLE)
    assert result.returncode == 0, result.stderr
    expected = metrics_of(reference)
    epoch_seconds = expected["fit/seconds"] / 5

    rng = random.Random()
    run = tmp_path / "killed"
    first = _kill_inside_an_epoch(run, epoch_seconds, rng, resume=False)
    second = _kill_inside_an_epoch(run, epoch_seconds, rng, resume=True)
    assert first < second < 4, (first, second)  # the second kill came after a checkpoint the resumed run wrote

    resumed = run_app("train", "--out", str(run), "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    actual = metrics_of(run)
    assert actual["fit/steps"] == expected["fit/steps"] == 5 * 23
    keys = [key for key in expected if key.startswith(("test/", "val/"))]
    assert len(keys) > 8 and "test/loss" in keys and "test/acc_class/circle" in keys
    for key in keys:
        assert actual[key] == expected[key], (key, actual[key], expected[key])
    weights = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    reference_weights = load_checkpoint(reference / "checkpoints" / "last.ckpt")["state_dict"]
    ema = [key for key in reference_weights if key.startswith("ema.")]
    assert "ema.updates" in ema and len(ema) > 4
    assert int(weights["ema.updates"]) == int(reference_weights["ema.updates"]) == 5 * 23
    for key, tensor in reference_weights.items():  # the network, its EMA and the EMA's update count
        assert torch.equal(weights[key], tensor), f"{key} differs"


DISTRIBUTED = [
    "--dataset", "synthetic", "--epochs", "1", "--batch-size", "16", "--accelerator", "cpu",
    "--set", "dataset_options={num_train: 250, num_test: 45, image_size: 16}", "--set", "model_options={hidden: 16}",
    "--set", "optim.ema_decay=0.9", "--set", "trainer.progress_bar=false",
]  # fmt: skip


def test_ddp_validation_and_test_metrics_cover_every_rank(tmp_path):
    """Two gloo processes evaluate 25 validation and 45 test images, each image once (odd counts: no
    padding can hide); their metrics equal those of one process evaluating the same weights on the same images.

    Tolerance: counts (accuracies) are exact up to the float32 in which Lightning stores logged values
    (1e-6 relative); the mean loss to 1e-5 relative (float32 logits summed in another order).
    """
    from pentad_vision import pipeline
    from pentad_vision.config import VisionConfig
    from pentad_vision.evaluation import evaluate_split
    from pentad_vision.predictor import Predictor

    run = tmp_path / "ddp"
    result = run_app("train", "--out", str(run), *DISTRIBUTED, "--strategy", "ddp", "--devices", "2")
    assert result.returncode == 0, result.stderr
    distributed = metrics_of(run)

    single = tmp_path / "single"  # one process, the DDP run's best checkpoint (what its test evaluated)
    result = run_app("evaluate", "--checkpoint", str(run), "--out", str(single), "--accelerator", "cpu")
    assert result.returncode == 0, result.stderr
    one_process = metrics_of(single)
    test_keys = [key for key in one_process if key.startswith("test/")]
    assert {"test/acc", "test/top5", "test/balanced_acc", "test/loss", "test/acc_class/circle"} <= set(test_keys)

    config = Predictor.from_run(run).config
    data = pipeline.load_data(config, None)
    assert (len(data.val), len(data.test)) == (25, 45) and isinstance(config, VisionConfig)
    last = Predictor.from_run(run / "checkpoints" / "last.ckpt")  # one epoch: the weights validated
    values = evaluate_split(last.net, data.val, test_time_augment=last.test_time_augment).meter.compute()
    val_values = {f"val/{key}": value for key, value in values.items()}

    for key, value in [*((k, one_process[k]) for k in test_keys), *val_values.items()]:
        tolerance = 1e-5 if key.endswith("loss") else 1e-6
        assert distributed[key] == pytest.approx(value, rel=tolerance, abs=1e-7), (key, distributed[key], value)
