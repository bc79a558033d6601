"""The trainer factory's defaults that are not covered by the resume, DDP and device tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import SimpleProfiler
from torch import nn

from pentad_core.checkpoint import ResumeCallback
from pentad_core.runs import RunDir
from pentad_core.training import NoProfiler, PentadModule, TrainerConfig, build_trainer


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


class PentadRegression(PentadModule):
    """TinyRegression on pentad's module base, noting the hook name Lightning sets around each hook."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.hook_names_seen: set[str] = set()

    def training_step(self, batch, batch_index):
        self.hook_names_seen.add(self._current_fx_name)
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.layer(inputs), targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True)  # Lightning checks the hook name here
        return loss

    def validation_step(self, batch, batch_index):
        self.hook_names_seen.add(self._current_fx_name)
        inputs, targets = batch
        self.log("val/loss", nn.functional.mse_loss(self.layer(inputs), targets))

    def on_train_epoch_end(self) -> None:
        self.hook_names_seen.add(self._current_fx_name)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_pentad_module_registers_parameters_submodules_and_buffers_as_nn_module_does():
    module = PentadRegression()
    module.scale = nn.Parameter(torch.ones(1))
    module.register_buffer("running", torch.zeros(2))
    module.running = torch.full((2,), 3.0)  # assigning a tensor to a buffer's name replaces the buffer
    module.head = nn.Linear(1, 1)
    module.head = None  # and None to a submodule's name removes its weights
    assert set(module.state_dict()) == {"layer.weight", "layer.bias", "scale", "running"}
    assert torch.equal(module.running, torch.full((2,), 3.0))
    assert [name for name, _ in module.named_children()] == ["layer"]
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step"
    assert "_current_fx_name" not in module.state_dict()


def test_lightning_sees_each_hook_name_in_a_pentad_module(tmp_path):
    module = PentadRegression()
    trainer = build_trainer(config(), RunDir(tmp_path))
    trainer.fit(module, train_dataloaders=tiny_loader(), val_dataloaders=tiny_loader())
    assert module.hook_names_seen == {"training_step", "validation_step", "on_train_epoch_end"}
    assert {"train/loss_step", "train/loss_epoch", "val/loss"} <= set(trainer.callback_metrics)
    assert module._current_fx_name is None  # restored after the last hook


def count_nn_module_setattr(monkeypatch) -> list[str]:
    """Names written through ``nn.Module.__setattr__`` from now on."""
    names: list[str] = []
    original = nn.Module.__setattr__

    def counting(self, name, value):
        names.append(name)
        original(self, name, value)

    monkeypatch.setattr(nn.Module, "__setattr__", counting)
    return names


def test_a_pentad_module_training_step_writes_nothing_through_nn_module_setattr(tmp_path, monkeypatch):
    """Lightning's per-hook bookkeeping bypasses nn.Module's checks in a PentadModule (and only there)."""
    names = count_nn_module_setattr(monkeypatch)

    def writes_in_fit(module_class, batches: int) -> int:
        module = module_class()  # constructed before counting: only the fit's writes count
        names.clear()
        trainer = build_trainer(
            config(limit_train_batches=batches), RunDir(tmp_path / f"{module_class.__name__}{batches}")
        )
        trainer.fit(module, train_dataloaders=tiny_loader())
        assert trainer.global_step == batches
        return len(names)

    assert writes_in_fit(PentadRegression, 2) == writes_in_fit(PentadRegression, 4)
    # the same count on Lightning's own base grows with every step (about 40 writes each)
    assert writes_in_fit(TinyRegression, 4) - writes_in_fit(TinyRegression, 2) >= 2 * 20


def test_a_ctrl_c_in_fit_leaves_the_process_answering_ctrl_c(tmp_path):
    """Lightning sets SIGINT to "ignore" while it shuts down after a Ctrl-C; once core's ``fit`` has
    raised ``KeyboardInterrupt`` the handler set before is back, so the next Ctrl-C in this process
    (and in any child it starts, which would inherit an ignored SIGINT) still interrupts."""
    import signal

    import pytest

    from pentad_core.training import fit

    class Interrupt(pl.Callback):
        def on_train_batch_end(self, *args) -> None:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever earlier tests left
    try:
        trainer = build_trainer(config(), RunDir(tmp_path), callbacks=[Interrupt()])
        with pytest.raises(KeyboardInterrupt):
            fit(trainer, TinyRegression(), RunDir(tmp_path), train_dataloaders=tiny_loader())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
