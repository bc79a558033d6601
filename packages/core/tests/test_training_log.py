"""TrainingLog: the same epoch values as per-batch ``self.log``, window means per step, far fewer calls."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from pentad_core.logs import ResumableCSVLogger, TrainingLog, quiet_libraries

SAMPLES, BATCH = 100, 16  # 7 batches per epoch, the last one of 4 samples


class Regression(pl.LightningModule):
    """Linear regression that logs ``train/loss`` per batch with ``self.log`` or through a TrainingLog."""

    def __init__(self, windowed: bool, value_form: str = "tensor") -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.value_form = value_form  # how the loss is handed to the TrainingLog
        self.training_log = TrainingLog() if windowed else None
        self.batch_losses: list[tuple[int, float, int]] = []  # (global step, loss, batch size)
        self.log_calls = 0

    def log(self, *args, **kwargs) -> None:
        self.log_calls += 1
        super().log(*args, **kwargs)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.layer(inputs), targets)
        self.batch_losses.append((self.global_step, loss.item(), len(inputs)))
        if self.training_log is None:
            self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(inputs))
        else:
            value = {"tensor": loss, "number": loss.item(), "bfloat16": loss.to(torch.bfloat16)}[self.value_form]
            before = loss.detach().clone()
            self.training_log.log(self, "train/loss", value, batch_size=len(inputs), on_step=True)
            assert torch.equal(loss.detach(), before), "logging changed the loss"
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def train(
    tmp_path, windowed: bool, value_form: str = "tensor", **trainer_options
) -> tuple[Regression, pl.Trainer, list[dict]]:
    quiet_libraries()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(SAMPLES, 3, generator=generator)
    data = torch.utils.data.TensorDataset(inputs, inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3)
    torch.manual_seed(0)
    module = Regression(windowed, value_form)
    folder = tmp_path / (f"windowed-{value_form}" if windowed else "per-batch")
    options = {"max_epochs": 3, "log_every_n_steps": 3} | trainer_options
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=ResumableCSVLogger(save_dir=folder, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=BATCH))
    with (folder / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return module, trainer, rows


def column(rows: list[dict], name: str) -> dict[int, float]:
    return {int(row["step"]): float(row[name]) for row in rows if row.get(name)}


@pytest.mark.parametrize(
    "options",
    [{}, {"limit_train_batches": 5}, {"max_steps": 10}, {"accumulate_grad_batches": 2}],
    ids=["full-epochs", "limit-batches", "max-steps-mid-epoch", "accumulation"],
)
def test_epoch_values_equal_per_batch_logging_with_fewer_log_calls(tmp_path, options):
    reference, reference_trainer, reference_rows = train(tmp_path, windowed=False, **options)
    windowed, windowed_trainer, windowed_rows = train(tmp_path, windowed=True, **options)
    assert windowed.batch_losses == reference.batch_losses  # the same training
    expected = column(reference_rows, "train/loss_epoch")
    assert expected, "the reference run logged no epoch values"
    assert column(windowed_rows, "train/loss_epoch") == pytest.approx(expected, rel=1e-6)
    for key in ("train/loss", "train/loss_epoch"):
        assert windowed_trainer.callback_metrics[key].item() == pytest.approx(
            reference_trainer.callback_metrics[key].item(), rel=1e-6
        )
    assert windowed.log_calls <= reference.log_calls / 2


@pytest.mark.parametrize(("value_form", "tolerance"), [("number", 1e-6), ("bfloat16", 1e-2)])
def test_values_may_be_numbers_or_low_precision_tensors(tmp_path, value_form, tolerance):
    reference, _, reference_rows = train(tmp_path, windowed=False)
    windowed, _, windowed_rows = train(tmp_path, windowed=True, value_form=value_form)
    assert windowed.batch_losses == reference.batch_losses
    # summed in float32 whatever the value's type (bfloat16 keeps about 3 significant digits per batch)
    expected = column(reference_rows, "train/loss_epoch")
    assert column(windowed_rows, "train/loss_epoch") == pytest.approx(expected, rel=tolerance)


def test_step_values_are_the_weighted_mean_since_the_previous_write(tmp_path):
    module, _, rows = train(tmp_path, windowed=True)
    steps = column(rows, "train/loss_step")
    assert sorted(steps) == [2, 5, 8, 11, 14, 17, 20]  # every third batch (21 batches in 3 epochs)
    previous = -1
    for step, value in sorted(steps.items()):
        # the window restarts at an epoch's end (its rest goes to the epoch value only)
        epoch_start = (step // 7) * 7
        window = [(loss, size) for at, loss, size in module.batch_losses if max(previous, epoch_start - 1) < at <= step]
        expected = sum(loss * size for loss, size in window) / sum(size for _, size in window)
        assert value == pytest.approx(expected, rel=1e-6), step
        previous = step


def test_epoch_value_weights_batches_by_their_size(tmp_path):
    module, _, rows = train(tmp_path, windowed=True, max_epochs=1)
    losses = [(loss, size) for _, loss, size in module.batch_losses]
    assert [size for _, size in losses] == [16] * 6 + [4]
    expected = sum(loss * size for loss, size in losses) / SAMPLES
    assert column(rows, "train/loss_epoch") == pytest.approx({6: expected}, rel=1e-6)


def test_outside_fit_values_go_straight_to_module_log():
    calls = []

    class Recorder:
        _trainer = None

        def log(self, name, value, **options):
            calls.append((name, float(value), options))

    TrainingLog().log(Recorder(), "train/loss", torch.tensor(0.5), batch_size=8, prog_bar=True)
    assert calls == [("train/loss", 0.5, {"on_step": False, "on_epoch": True, "prog_bar": True, "batch_size": 8})]


def test_a_window_left_by_an_interrupted_fit_does_not_leak_into_the_next(tmp_path):
    class Interrupted(Regression):
        raise_at_batch: int | None = 4

        def training_step(self, batch, batch_index):
            loss = super().training_step(batch, batch_index)
            if batch_index == self.raise_at_batch:
                raise RuntimeError("interrupted")  # batch 4 stays in the window
            return loss

    quiet_libraries()
    torch.manual_seed(0)
    module = Interrupted(windowed=True)
    inputs = torch.randn(SAMPLES, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, inputs.sum(1, keepdim=True)), BATCH)
    options = {"accelerator": "cpu", "enable_checkpointing": False, "enable_progress_bar": False, "max_epochs": 1}
    with pytest.raises(RuntimeError, match="interrupted"):
        pl.Trainer(logger=False, **options).fit(module, loader)
    assert module.training_log._windows  # the interrupted window
    module.raise_at_batch = None
    module.batch_losses.clear()
    trainer = pl.Trainer(logger=False, log_every_n_steps=50, **options)
    trainer.fit(module, loader)
    expected = sum(loss * size for _, loss, size in module.batch_losses) / SAMPLES
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(expected, rel=1e-6)


def test_a_pickled_copy_starts_empty_after_a_fit(tmp_path):
    import pickle

    module, _, _ = train(tmp_path, windowed=True, max_epochs=1)
    copy = pickle.loads(pickle.dumps(module.training_log))
    assert copy._windows == {} and copy._owner is None
