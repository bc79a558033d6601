"""The trainer factory's defaults that are not covered by the resume, DDP and device tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import SimpleProfiler
from torch import nn

from pentad_core.checkpoint import ResumeCallback
from pentad_core.runs import RunDir
from pentad_core.training import NoProfiler, TrainerConfig, build_trainer


class TinyRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        return nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    dataset = torch.utils.data.TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))
    return torch.utils.data.DataLoader(dataset, batch_size=16)


def config(**changes) -> TrainerConfig:
    return TrainerConfig(max_epochs=1, accelerator="cpu", devices="1", monitor="", progress_bar=False, **changes)


def test_the_default_profiler_hands_out_one_reusable_null_context(tmp_path):
    trainer = build_trainer(config(), RunDir(tmp_path))
    assert isinstance(trainer.profiler, NoProfiler)
    first, second = trainer.profiler.profile("a"), trainer.profiler.profile("b")
    assert first is second
    with first, second, first:  # nested and re-entered, as Lightning's hooks do
        pass
    trainer.fit(TinyRegression(), train_dataloaders=tiny_loader())
    assert trainer.global_step == 4
    assert trainer.profiler.summary() == ""


def test_a_profiler_passed_to_build_trainer_replaces_the_default(tmp_path):
    trainer = build_trainer(config(), RunDir(tmp_path), profiler="simple")
    assert isinstance(trainer.profiler, SimpleProfiler)
    trainer.fit(TinyRegression(), train_dataloaders=tiny_loader())
    recorded = trainer.profiler.recorded_durations
    assert len(recorded["run_training_batch"]) == 4
    assert any(name.startswith("[Callback]ResumeCallback") for name in recorded)


def test_pentad_adds_one_callback_of_its_own_for_resuming(tmp_path):
    trainer = build_trainer(config(), RunDir(tmp_path))
    assert sum(isinstance(callback, ResumeCallback) for callback in trainer.callbacks) == 1
    assert trainer.callbacks[0].csv_logger is trainer.loggers[1]
