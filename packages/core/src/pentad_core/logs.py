"""Logging: quiet library loggers for CLI use, a CSV logger that survives ``--resume``, and a
cheap way to log training-step metrics.

Lightning's CSV logger deletes ``metrics.csv`` when its folder is reused, which would erase the
history of an interrupted run. :class:`ResumableCSVLogger` keeps it and appends; on resume, it
drops rows logged after the checkpoint (they are logged again), so the file reads as one
continuous run (:class:`pentad_core.checkpoint.ResumeCallback` calls it).
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
import weakref
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from pentad_core.files import atomic_write_csv


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued, not deleted."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))

    def add_row_if_missing(self, step: int, values: dict[str, Any]) -> None:
        """Append ``values`` at ``step`` unless a row at that step already holds all of them."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row.get("step") and int(float(row["step"])) == step and all(row.get(key) for key in values):
                        return
        self.log_metrics(values, step)
        self.save()

    def truncate_from_step(self, step: int) -> None:
        """Remove rows whose ``step`` is ``>= step``."""
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            rows = [row for row in reader if not row.get("step") or int(float(row["step"])) < step]
        atomic_write_csv(self.metrics_file_path, rows, columns=fields)  # a kill here keeps the old file


class ResumableCSVLogger(CSVLogger):
    """``logs/metrics.csv`` that keeps the rows of an interrupted run when training resumes."""

    @property
    def experiment(self) -> _AppendingWriter:
        """The writer (created on first use)."""
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def continue_from(self, step: int, pending_row: dict[str, Any] | None = None) -> None:
        """On resume at ``step``: cut the rows logged at or after it (they are about to be logged
        again), and write the checkpoint's ``pending_row`` (:func:`pending_epoch_row`) if missing."""
        writer = self.experiment
        writer.truncate_from_step(step)
        if pending_row is not None:
            writer.add_row_if_missing(pending_row["step"], pending_row["values"])


def pending_epoch_row(trainer: pl.Trainer) -> dict[str, Any] | None:
    """The epoch's training metrics when a checkpoint is written before Lightning logs them.

    A checkpoint saved at the end of an epoch comes *before* Lightning logs that epoch's training
    metrics, so a kill in between would lose the row for good: the checkpoint carries it, and
    :meth:`ResumableCSVLogger.continue_from` writes it on resume when the file lacks it.

    Returns:
        ``{"step": ..., "values": {...}}``, or ``None`` outside the last batch of a training epoch.
    """
    epoch_loop = trainer.fit_loop.epoch_loop
    if trainer.state.fn != "fit":
        return None
    if not epoch_loop.batch_progress.is_last_batch or epoch_loop._results is None:
        return None
    # Lightning's own epoch-end aggregation, the values it is about to log (private API, stable in 2.x).
    values = {
        key: float(value) for key, value in epoch_loop._results.metrics(False)["log"].items() if value.numel() == 1
    }
    if not values:
        return None
    values["epoch"] = trainer.current_epoch
    return {"step": epoch_loop._batches_that_stepped - 1, "values": values}


class TrainingLog:
    """Training-step metrics handed to Lightning only at the steps Lightning writes them.

    Lightning's ``self.log`` is costly per call, and a training step that calls it for every batch
    pays that on every batch, although the loggers write only every ``log_every_n_steps`` batches
    and at the end of the epoch. This hands values to ``self.log`` only at the steps Lightning
    writes: each batch adds its value, weighted by its batch size, to a running sum on the metric's
    device (no host synchronisation), and the window's mean goes to ``module.log`` on the steps
    where Lightning writes logs and on the epoch's last batch, with the window's sample count as
    ``batch_size``. (The measured cost: docs/benchmarks.md.)

    So the epoch value (``<name>_epoch``, or ``<name>`` without ``on_step``) is the same
    batch-size-weighted mean that per-batch logging gives, and the step value (``<name>_step``)
    is the mean over the batches since the previous write rather than the last batch alone.
    Outside ``fit`` (no trainer, or a test or validation loop) values go straight to ``module.log``.

    Example:
        ``self.training_log = TrainingLog()`` in ``__init__``, then in ``training_step``:
        ``self.training_log.log(self, "train/loss", loss, batch_size=len(labels), on_step=True)``.
    """

    def __init__(self) -> None:
        self._windows: dict[str, list] = {}  # name -> [weighted sum tensor, sample count]
        self._owner: tuple[weakref.ref, int] | None = None  # (trainer, epoch) the windows belong to

    def __getstate__(self) -> dict[str, Any]:
        """A copy (pickled for a spawned process, or a checkpointed module) starts with no window."""
        return {"_windows": {}, "_owner": None}

    def log(
        self,
        module: pl.LightningModule,
        name: str,
        value: torch.Tensor | float,
        batch_size: int,
        *,
        on_step: bool = False,
        prog_bar: bool = False,
    ) -> None:
        """Add one batch's ``value`` of metric ``name``; log the window when Lightning writes.

        Args:
            module: The LightningModule whose ``log`` receives the window means.
            name: Metric name, e.g. ``"train/loss"``.
            value: This batch's mean value (a scalar tensor or a number).
            batch_size: Samples in this batch (the weight of ``value``).
            on_step: Also log per step (``<name>_step`` next to ``<name>_epoch``).
            prog_bar: Show the metric in the progress bar.
        """
        trainer = module._trainer
        if trainer is None or not trainer.training:
            module.log(name, value, on_step=on_step, on_epoch=True, prog_bar=prog_bar, batch_size=batch_size)
            return
        owner = self._owner
        if owner is None or owner[0]() is not trainer or owner[1] != trainer.current_epoch:
            # a new epoch, or another trainer after an interrupted fit: the old window is not this one's
            self._windows.clear()
            self._owner = (weakref.ref(trainer), trainer.current_epoch)
        value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        window = self._windows.get(name)
        if window is None:
            # a new float32 tensor (never an alias of the step's loss), then one in-place op per batch
            self._windows[name] = [value.float() * batch_size, batch_size]
        else:
            window[0].add_(value, alpha=batch_size)
            window[1] += batch_size
        if _lightning_writes_this_batch(trainer):
            total, count = self._windows.pop(name)
            module.log(name, total / count, on_step=on_step, on_epoch=True, prog_bar=prog_bar, batch_size=count)


def _lightning_writes_this_batch(trainer: pl.Trainer) -> bool:
    """Whether the current training batch is one whose metrics Lightning passes on: a logging step,
    the epoch's last batch (epoch aggregation), or the last batch before ``max_steps`` or a stop."""
    # Lightning's own predicates (private API, stable in 2.x; tests pin the behaviour).
    epoch_loop = trainer.fit_loop.epoch_loop
    if trainer._logger_connector.should_update_logs and not epoch_loop._should_accumulate():
        return True
    if epoch_loop._num_ready_batches_reached():
        return True
    return 0 <= trainer.max_steps <= trainer.global_step + 1


def quiet_libraries(verbose: bool = False) -> None:
    """Silence Lightning's start-up banners and well-known harmless warnings (unless ``verbose``)."""
    if verbose:
        return
    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*The number of training batches .* is smaller than the logging interval.*",
        ".*litlogger.*",
        ".*You are using the legacy TorchScript-based ONNX export.*",
        ".*Training and eval env are not of the same type.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
