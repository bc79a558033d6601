"""What survives an interruption (the seeded patch order, the training counters) and what DDP reports.

The CLI tests run ``apps/medseg`` in subprocesses, as a user's shell does: a SIGKILL leaves only what
was on disk, and DDP on the CPU starts its second process by running the same command again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pentad_core.checkpoint import load_checkpoint
from pentad_core.runs import RunDir
from pentad_core.training import TrainerConfig
from pentad_medseg.config import MedsegConfig
from pentad_medseg.pipeline import build_module, load_data, train_model

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "apps" / "medseg"

#: A small run on generated vessels: 48x48 images, a 2-level U-Net, 32x32 patches.
TINY = {
    "dataset_options": {"image_size": 48, "train_images": 6, "val_images": 3, "test_images": 3},
    "model_options": {"depth": 2, "base_channels": 8},
    "batch_size": 8,
    "patch_size": 32,
    "window": 32,
    "lr": 0.005,
    "threads": 1,
    "threshold": None,
}


def tiny_config(epochs: int = 2, **changes) -> MedsegConfig:
    trainer = TrainerConfig(max_epochs=epochs, monitor="val/dice", monitor_mode="max", progress_bar=False,
                            log_every_n_steps=1, accelerator="cpu", devices="1")  # fmt: skip
    return MedsegConfig(**{**TINY, "patches_per_epoch": 48, **changes, "trainer": trainer})


def record_patches(module, seen: list[str], stop_after: int | None = None) -> None:
    """Make ``module`` append a fingerprint of every training batch to ``seen`` (Ctrl-C after ``stop_after``)."""

    def on_train_batch_start(batch, batch_idx) -> None:
        seen.append(hashlib.sha1(batch[0].numpy().tobytes() + batch[1].numpy().tobytes()).hexdigest())
        if stop_after is not None and len(seen) > stop_after:
            raise KeyboardInterrupt
        module._batch_start = time.perf_counter()

    module.on_train_batch_start = on_train_batch_start


def test_patch_order_continues_inside_an_epoch_and_does_not_depend_on_workers(tmp_path):
    """A Ctrl-C in the first epoch leaves a checkpoint inside the epoch: the resumed run draws the
    patches an uninterrupted run draws next (not the epoch's first ones again), and a loader with
    persistent workers draws each epoch's own patches, as the main process does."""
    torch.set_num_threads(1)
    config = tiny_config(epochs=2)
    data = load_data(config, None)

    torch.manual_seed(0)
    reference, _ = build_module(config, data)
    expected: list[str] = []
    record_patches(reference, expected)
    _, reference_metrics = train_model(config, RunDir(tmp_path / "reference"), data, module=reference)
    assert len(expected) == 2 * 6 and len(set(expected)) == len(expected)  # 2 epochs of 6 batches, all different

    torch.manual_seed(0)
    interrupted, _ = build_module(config, data)
    before: list[str] = []
    record_patches(interrupted, before, stop_after=4)
    run = RunDir(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train_model(config, run, data, module=interrupted)
    assert load_checkpoint(run.last_checkpoint)["global_step"] == 4  # inside epoch 0 (6 batches)
    resumed, _ = build_module(config, data)
    after: list[str] = []
    record_patches(resumed, after)
    _, metrics = train_model(config, run, data, resume_path=run.last_checkpoint, module=resumed)
    assert before[:4] + after == expected
    for key in ("fit/steps", "fit/patches", "test/auc", "test/dice", "test/hd95", "test/threshold", "val/dice"):
        assert metrics[key] == reference_metrics[key], key

    torch.manual_seed(0)
    with_workers, _ = build_module(config, data)
    drawn: list[str] = []
    record_patches(with_workers, drawn)
    train_model(tiny_config(epochs=2, num_workers=1), RunDir(tmp_path / "workers"), data, module=with_workers)
    assert drawn == expected


# -- through the CLI, in subprocesses ------------------------------------------------------------------

CLI_OPTIONS = [
    "--accelerator", "cpu", "--batch-size", "8",
    "--set", "dataset_options={image_size: 48, train_images: 6, val_images: 3, test_images: 3}",
    "--set", "model_options={depth: 2, base_channels: 8}", "--set", "patch_size=32", "--set", "window=32",
    "--set", "lr=0.005", "--set", "threads=1", "--set", "threshold=null",
    "--set", "trainer.progress_bar=false", "--set", "trainer.log_every_n_steps=1",
]  # fmt: skip


def medseg(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(APP), *arguments], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)  # fmt: skip


def logged_steps(run: Path) -> int:
    """The highest step in the run's metrics.csv (-1 before the first row)."""
    try:
        with (run / "logs" / "metrics.csv").open(newline="") as handle:
            return max((int(row["step"]) for row in csv.DictReader(handle) if row.get("step")), default=-1)
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def checkpoint_step(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["global_step"])
    except Exception:  # not there yet
        return -1


def kill_inside_an_epoch(arguments: list[str], run: Path, previous: int, rng: random.Random) -> int:
    """Start a training run; once it has saved a checkpoint past step ``previous`` and logged a step
    beyond that checkpoint (it is inside the next epoch), sleep up to half an epoch at random and
    SIGKILL it. Returns the step of the checkpoint left behind."""
    process = subprocess.Popen([sys.executable, str(APP), *arguments], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        step = checkpoint_step(last)
        if step > previous and logged_steps(run) > step:
            break
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.4))
    process.send_signal(signal.SIGKILL)
    process.wait()
    step = checkpoint_step(last)
    assert step > previous, "the run never wrote a checkpoint"
    return step


@pytest.mark.slow
def test_sigkill_inside_epochs_then_resume_last_equals_an_uninterrupted_run(tmp_path):
    """Two SIGKILLs at random points inside epochs; ``--resume last`` (no other option) each time.
    The finished run has the uninterrupted run's step count, patch count and test metrics, exactly:
    training is deterministic on the CPU with one thread, the random states and the patch order are
    in the checkpoint, so nothing is approximate."""
    epochs = ["--epochs", "4", "--set", "patches_per_epoch=320"]  # 40 steps per epoch
    reference = tmp_path / "reference"
    done = medseg("train", "--out", str(reference), *epochs, *CLI_OPTIONS)
    assert done.returncode == 0, done.stderr
    expected = json.loads((reference / "metrics.json").read_text())
    assert expected["fit/steps"] == 4 * 40

    run = tmp_path / "killed"
    rng = random.Random()
    first = kill_inside_an_epoch(["train", "--out", str(run), *epochs, *CLI_OPTIONS], run, -1, rng)
    assert first < 4 * 40 and logged_steps(run) > first, "the kill did not land inside an epoch"
    # the second kill point: inside a later epoch of the resumed run, after it saved a checkpoint of its own
    second = kill_inside_an_epoch(["train", "--out", str(run), "--resume", "last"], run, first, rng)
    assert second < 4 * 40 and logged_steps(run) > second, "the second kill did not land inside an epoch"
    resumed = medseg("train", "--out", str(run), "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr

    actual = json.loads((run / "metrics.json").read_text())
    assert actual["fit/steps"] == expected["fit/steps"] and actual["fit/patches"] == expected["fit/patches"] == 1280
    for key, value in expected.items():
        if key.startswith(("test/", "val/")) and key not in ("test/seconds", "test/megapixels_per_s"):
            assert actual[key] == value or (math.isnan(actual[key]) and math.isnan(value)), key


@pytest.mark.slow
def test_ddp_two_processes_report_every_image_like_one_process(tmp_path):
    """Under ``--strategy ddp --devices 2`` (gloo on the CPU) each process validates and tests its share
    of the images; the metrics gather all of them. With the same weights in both runs (initialised from
    one checkpoint, lr 0, no batch statistics) the validation and test metrics, the threshold chosen
    on validation and the per-image CSV equal a one-process run's, exactly: each image's
    probabilities are computed the same way in either process, and the metrics from the gathered
    images in the split's order. 3 validation and 3 test images: one process has 2, the other 1."""
    torch.set_num_threads(1)
    trained = tmp_path / "trained"
    network = {"depth": 2, "base_channels": 8, "norm": "instance"}  # no batch statistics that lr 0 would still move
    config = tiny_config(epochs=2, patches_per_epoch=96, model_options=network)
    train_model(config, RunDir(trained), load_data(config, None))
    options = [*CLI_OPTIONS, "--set", "model_options={depth: 2, base_channels: 8, norm: instance}"]
    same_weights = [*options, "--epochs", "1", "--set", "patches_per_epoch=32", "--set", "lr=0.0",
                    "--pretrained", str(trained / "checkpoints" / "best.ckpt")]  # fmt: skip
    single, distributed = tmp_path / "single", tmp_path / "ddp"
    done = medseg("train", "--out", str(single), "--devices", "1", *same_weights)
    assert done.returncode == 0, done.stderr
    done = medseg("train", "--out", str(distributed), "--devices", "2", "--strategy", "ddp", *same_weights)
    assert done.returncode == 0, done.stderr

    expected = json.loads((single / "metrics.json").read_text())
    actual = json.loads((distributed / "metrics.json").read_text())
    assert expected["test/auc"] > 0.9 and 0.05 < expected["test/threshold"] < 0.95  # a trained model
    compared = [key for key in expected if key.startswith(("val/", "test/")) and "seconds" not in key
                and "per_s" not in key]  # fmt: skip
    assert {"val/auc", "val/dice", "val/threshold", "test/auc", "test/dice", "test/f1", "test/iou", "test/hd95",
            "test/sensitivity", "test/specificity", "test/threshold"} <= set(compared)  # fmt: skip
    for key in compared:
        assert actual[key] == expected[key], (key, actual[key], expected[key])
    assert (distributed / "test_per_image.csv").read_text() == (single / "test_per_image.csv").read_text()
    assert actual["fit/patches"] == expected["fit/patches"] == 32
