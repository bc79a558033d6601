"""Training-loop guarantees, checked on the toy app in subprocesses: kill-and-resume and DDP."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from toy_app import TOY_APP, run_toy

from pentad_core.checkpoint import load_checkpoint

COMMON = ["--epochs", "6", "--batch-size", "32", "--accelerator", "cpu", "--set", "trainer.progress_bar=false"]


def epoch_losses(run: Path) -> dict[int, float]:
    with (run / "logs" / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    losses = {int(row["epoch"]): float(row["train/loss"]) for row in rows}
    assert len(losses) == len(rows), "an epoch was logged twice"
    return losses


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    result = run_toy("train", "--out", str(reference), *COMMON)
    assert result.returncode == 0, result.stderr

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, str(TOY_APP), "train", "--out", str(interrupted), *COMMON, "--set", "step_delay=0.15"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = interrupted / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    killed_at = load_checkpoint(last)
    assert killed_at["epoch"] < 5, "the run finished before it could be interrupted"

    refused = run_toy("train", "--out", str(interrupted), *COMMON)
    assert refused.returncode == 2 and "--resume last" in refused.stderr

    resumed = run_toy("train", "--out", str(interrupted), *COMMON, "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr

    expected, actual = (json.loads((run / "metrics.json").read_text()) for run in (reference, interrupted))
    assert actual["fit/steps"] == expected["fit/steps"] == 6 * 8
    assert actual["fit/epochs"] == expected["fit/epochs"]
    # The loss continues where it stopped: every epoch logged once, equal to the uninterrupted run.
    reference_losses, resumed_losses = epoch_losses(reference), epoch_losses(interrupted)
    assert sorted(resumed_losses) == list(range(6))
    for epoch, loss in reference_losses.items():
        assert abs(resumed_losses[epoch] - loss) < 1e-5, (epoch, loss, resumed_losses[epoch])
    final_reference = torch.load(reference / "weights_rank0.pt", weights_only=True)
    final_resumed = torch.load(interrupted / "weights_rank0.pt", weights_only=True)
    for key in final_reference:
        torch.testing.assert_close(final_resumed[key], final_reference[key], rtol=1e-5, atol=1e-6)


def test_ddp_two_cpu_processes_match_single_process_on_the_global_batch(tmp_path):
    arguments = ["--epochs", "2", "--accelerator", "cpu", "--set", "trainer.progress_bar=false"]
    distributed = tmp_path / "ddp"
    result = run_toy(
        "train", "--out", str(distributed), *arguments, "--devices", "2", "--strategy", "ddp", "--batch-size", "16"
    )
    assert result.returncode == 0, result.stderr
    single = tmp_path / "single"
    result = run_toy(
        "train", "--out", str(single), *arguments, "--devices", "1", "--batch-size", "32", "--set", "ddp_order=true"
    )
    assert result.returncode == 0, result.stderr

    rank0 = torch.load(distributed / "weights_rank0.pt", weights_only=True)
    rank1 = torch.load(distributed / "weights_rank1.pt", weights_only=True)
    reference = torch.load(single / "weights_rank0.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(rank0[key], reference[key], rtol=1e-4, atol=1e-5)
    assert json.loads((distributed / "metrics.json").read_text())["fit/steps"] == 2 * 8


def test_resume_restores_an_epoch_row_lost_between_checkpoint_and_log(tmp_path):
    """Lightning saves the epoch-end checkpoint before it logs the epoch; a kill in between loses the row."""
    run = tmp_path / "run"
    arguments = ["--batch-size", "32", "--accelerator", "cpu", "--set", "trainer.progress_bar=false"]
    assert run_toy("train", "--out", str(run), "--epochs", "2", *arguments).returncode == 0
    complete = epoch_losses(run)
    assert sorted(complete) == [0, 1]
    metrics_file = run / "logs" / "metrics.csv"
    with metrics_file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    with metrics_file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(row for row in rows if not (row.get("train/loss") and row["epoch"] == "1"))
    assert sorted(epoch_losses(run)) == [0]

    resumed = run_toy("train", "--out", str(run), "--epochs", "3", *arguments, "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    losses = epoch_losses(run)
    assert sorted(losses) == [0, 1, 2]
    assert abs(losses[1] - complete[1]) < 1e-6


def test_without_a_monitor_the_latest_checkpoint_is_written_every_epoch(tmp_path):
    # Protocols without a validation split (trainer.monitor "") must still leave a `last.ckpt` after
    # each epoch, or `--resume last` has nothing to continue from after an interruption.
    import pytorch_lightning as pl
    import torch

    from pentad_core.runs import RunDir
    from pentad_core.training import TrainerConfig, build_trainer

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.network = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_index):
            return self.network(batch[0]).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    run = RunDir(tmp_path)
    seen_at_epoch_start = []

    class Watch(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            seen_at_epoch_start.append(sorted(p.name for p in run.checkpoints.glob("*.ckpt")))

    config = TrainerConfig(max_epochs=3, accelerator="cpu", devices="1", monitor="", progress_bar=False)
    trainer = build_trainer(config, run, callbacks=[Watch()])
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=4))
    assert seen_at_epoch_start == [[], ["last.ckpt"], ["last.ckpt"]]
    checkpoint = torch.load(run.last_checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 6
