"""The Lightning trainer factory, the module base and the ``fit``/``test`` helpers every domain uses.

A typed :class:`TrainerConfig` becomes a :class:`pytorch_lightning.Trainer` with best + last
checkpoints (written atomically, random states included), optional early stopping, an LR monitor,
a rich progress bar, and TensorBoard + CSV loggers in the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.profilers import PassThroughProfiler

from pentad_core.checkpoint import AtomicCheckpointIO, ResumeCallback
from pentad_core.devices import (
    describe_hardware,
    maybe_channels_last,
    retain_freed_memory,
    select_accelerator,
    select_precision,
)
from pentad_core.errors import ConfigError
from pentad_core.logs import ResumableCSVLogger, TrainingLog
from pentad_core.runs import RunDir

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "single_device")


class ModelOptimisations(pl.Callback):
    """Opt-in speed-ups applied once the module is on its device: channels-last memory format and
    ``torch.compile`` of each network the LightningModule wraps (its direct children)."""

    def __init__(self, channels_last: bool, compile: bool) -> None:
        self.channels_last = channels_last
        self.compile = compile

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Convert and compile in place (idempotent across fit/test)."""
        maybe_channels_last(pl_module, self.channels_last)
        if self.compile and not getattr(pl_module, "_pentad_compiled", False):
            for child in pl_module.children():
                child.compile()
            pl_module._pentad_compiled = True


class NoProfiler(PassThroughProfiler):
    """Lightning's "no profiling" default without its per-hook cost.

    Lightning wraps every hook call (once per callback for callback hooks) in
    ``profiler.profile(name)``; the default profiler builds a new generator-based context manager
    each time to record nothing. This one hands back one shared null context (the measured
    difference is in docs/benchmarks.md, "core trainer"). Pass ``profiler="simple"`` (or any
    profiler) to :func:`build_trainer` to profile instead.
    """

    _NULL_CONTEXT = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        """A reusable context that does nothing."""
        return self._NULL_CONTEXT


class PentadModule(pl.LightningModule):
    """The LightningModule every Pentad domain module inherits.

    - It owns a :class:`~pentad_core.logs.TrainingLog`: training steps report per-batch values with
      :meth:`log_training`, which reach ``self.log`` only at the steps Lightning writes logs.
    - Lightning writes the current hook's name into ``_current_fx_name`` around every hook call;
      ``nn.Module.__setattr__`` would check each such write against the module's parameters,
      submodules and buffers for a value that is only ever a string or ``None``, so that one
      attribute is stored directly (what ``nn.Module`` does for a plain attribute, minus the
      checks; measured in docs/benchmarks.md, "core trainer"). Every other attribute goes through
      ``nn.Module`` as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.training_log = TrainingLog()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def log_training(
        self, name: str, value: torch.Tensor | float, batch_size: int, *, on_step: bool = False, prog_bar: bool = False
    ) -> None:
        """Add one training batch's ``value`` of metric ``name`` (see :meth:`TrainingLog.log`).

        Args:
            name: Metric name, e.g. ``"train/loss"``.
            value: The batch's mean value (a scalar tensor or a number).
            batch_size: Samples in the batch (its weight in the epoch mean).
            on_step: Also log per step (``<name>_step`` next to ``<name>_epoch``).
            prog_bar: Show the metric in the progress bar.
        """
        self.training_log.log(self, name, value, batch_size, on_step=on_step, prog_bar=prog_bar)


@dataclass
class TrainerConfig:
    """How to train: the Lightning ``Trainer`` settings common to every domain."""

    #: Maximum number of epochs (-1 for no limit when max_steps is set).
    max_epochs: int = 10
    #: Maximum number of optimizer steps (-1 for no limit).
    max_steps: int = -1
    #: "auto", "cpu", "cuda"/"gpu" or "mps"; auto picks CUDA when present.
    accelerator: str = "auto"
    #: Devices per node: a count, "auto", or a comma-separated list of indices.
    devices: str = "auto"
    #: Number of machines for distributed training.
    num_nodes: int = 1
    #: "auto", "ddp", "ddp_spawn", "fsdp" or "single_device".
    strategy: str = "auto"
    #: "auto" (bf16-mixed on bf16-capable CUDA, 16-mixed on older CUDA, 32-true on CPU) or a Lightning precision.
    precision: str = "auto"
    #: Accumulate gradients over this many batches before each optimizer step.
    accumulate_grad_batches: int = 1
    #: Clip the gradient norm to this value (0 disables clipping).
    gradient_clip_val: float = 0.0
    #: Stop when the monitored metric has not improved for this many validation rounds (0 disables).
    early_stopping_patience: int = 0
    #: Metric that selects the best checkpoint and drives early stopping (empty: keep only the last).
    monitor: str = "val/loss"
    #: "min" or "max": whether a lower or a higher monitored value is better.
    monitor_mode: str = "min"
    #: Validate every this many epochs.
    check_val_every_n_epoch: int = 1
    #: Fraction (<= 1.0) or number (> 1) of training batches per epoch; 1.0 uses all.
    limit_train_batches: float = 1.0
    #: Fraction (<= 1.0) or number (> 1) of validation batches; 1.0 uses all.
    limit_val_batches: float = 1.0
    #: Write training metrics to the loggers every this many steps (Lightning's default); each write
    #: flushes TensorBoard and the CSV log, so a small value costs throughput. Recipes set their own.
    log_every_n_steps: int = 50
    #: Validation batches run before training to catch bugs early (0 skips it).
    num_sanity_val_steps: int = 0
    #: Show a progress bar.
    progress_bar: bool = True
    #: Use deterministic algorithms (slower).
    deterministic: bool = False
    #: Convert convolutional models to channels-last memory format (faster on recent GPUs).
    channels_last: bool = False
    #: Compile the model with torch.compile (start-up cost, faster steps on GPU).
    compile: bool = False
    #: On the CPU, keep memory freed by tensors in the process for the next step instead of
    #: returning it to the OS (glibc malloc; see pentad_core.devices.retain_freed_memory).
    retain_freed_memory: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}.")
        if self.monitor_mode not in ("min", "max"):
            raise ConfigError(f"trainer.monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}.")
        if self.max_epochs == 0 or self.max_epochs < -1:
            raise ConfigError(f"--epochs must be a positive number of epochs, got {self.max_epochs}.")
        if self.max_epochs == -1 and self.max_steps <= 0:
            raise ConfigError("set a positive --epochs or trainer.max_steps; both are unlimited.")
        for name in ("accumulate_grad_batches", "num_nodes", "check_val_every_n_epoch", "log_every_n_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"trainer.{name} must be at least 1, got {getattr(self, name)}.")
        if self.gradient_clip_val < 0 or not math.isfinite(self.gradient_clip_val):
            raise ConfigError(f"trainer.gradient_clip_val must be >= 0, got {self.gradient_clip_val}.")

    def parsed_devices(self) -> int | str | list[int]:
        """``devices`` as Lightning expects it."""
        text = str(self.devices).strip()
        if text == "auto":
            return "auto"
        try:
            if "," in text:
                return [int(part) for part in text.split(",") if part.strip()]
            count = int(text)
        except ValueError:
            raise ConfigError(f"--devices {text!r} must be a count, 'auto', or indices like 0,1.") from None
        if count < 1 and count != -1:
            raise ConfigError(f"--devices must be at least 1 (or -1 for all), got {count}.")
        return count


def build_trainer(
    config: TrainerConfig,
    run: RunDir,
    *,
    callbacks: list[pl.Callback] | tuple[pl.Callback, ...] = (),
    enable_checkpointing: bool = True,
    has_validation: bool = True,
    time_budget: str | float | None = None,
    **overrides: Any,
) -> pl.Trainer:
    """Create a Lightning ``Trainer`` writing into ``run``.

    Args:
        config: The training settings.
        run: The run directory (checkpoints and logs go there).
        has_validation: False when the data has no validation split: a ``val/*`` monitor and early
            stopping are dropped (they would wait for a metric that never comes), validation is
            skipped, and the one checkpoint kept is the latest, ``last.ckpt``.
        callbacks: Extra callbacks appended after the standard ones.
        enable_checkpointing: Set False for evaluation-only trainers.
        time_budget: The run's ``time_budget`` ("10m", seconds, or ``None``): Lightning's ``max_time``, so
            training stops after the step that spends it, validates, and writes ``last.ckpt`` (the
            elapsed time is kept in checkpoints, so a resumed run spends only what is left).
        **overrides: Any other ``pl.Trainer`` keyword, for settings not in the config.

    Returns:
        The configured trainer.
    """
    if not has_validation:
        monitor = "" if config.monitor.startswith("val/") else config.monitor
        config = dataclasses.replace(config, monitor=monitor, early_stopping_patience=0, limit_val_batches=0)
    hardware = describe_hardware()
    accelerator = select_accelerator(config.accelerator, hardware)
    precision = select_precision(config.precision, accelerator, hardware)
    if accelerator == "cpu" and config.retain_freed_memory:
        retain_freed_memory()
    csv_logger = ResumableCSVLogger(save_dir=run.logs, name="", version="")
    all_callbacks: list[pl.Callback] = [
        ResumeCallback(csv_logger, run.last_checkpoint if enable_checkpointing else None)
    ]
    if config.channels_last or config.compile:
        all_callbacks.append(ModelOptimisations(config.channels_last, config.compile))
    if enable_checkpointing:
        # `last.ckpt` after every epoch (what `--resume last` continues), and with a monitored metric
        # also `best.ckpt`: two callbacks, because Lightning's own `save_last` rewrites `last` only in
        # the epochs where it also keeps a top-k file.
        if config.monitor:
            all_callbacks.append(
                ModelCheckpoint(
                    dirpath=run.checkpoints,
                    filename="best",
                    monitor=config.monitor,
                    mode=config.monitor_mode,
                    save_top_k=1,
                    save_last=False,
                    auto_insert_metric_name=False,
                    enable_version_counter=False,
                )
            )
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=run.checkpoints,
                filename="last",
                monitor=None,
                save_top_k=1,
                save_last=False,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if config.early_stopping_patience > 0:
        if not config.monitor:
            raise ConfigError("early stopping needs trainer.monitor; set it or trainer.early_stopping_patience=0.")
        all_callbacks.append(
            EarlyStopping(monitor=config.monitor, mode=config.monitor_mode, patience=config.early_stopping_patience)
        )
    all_callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if config.progress_bar:
        all_callbacks.append(RichProgressBar(leave=True))
    all_callbacks.extend(callbacks)
    loggers = [
        TensorBoardLogger(save_dir=run.logs, name="tensorboard", version="", default_hp_metric=False),
        csv_logger,
    ]
    options: dict[str, Any] = {
        "max_epochs": config.max_epochs,
        "max_steps": config.max_steps,
        "accelerator": accelerator,
        "devices": config.parsed_devices(),
        "num_nodes": config.num_nodes,
        "strategy": config.strategy,
        "precision": precision,
        "accumulate_grad_batches": config.accumulate_grad_batches,
        "gradient_clip_val": config.gradient_clip_val or None,
        "check_val_every_n_epoch": config.check_val_every_n_epoch,
        "limit_train_batches": _limit(config.limit_train_batches),
        "limit_val_batches": _limit(config.limit_val_batches),
        "log_every_n_steps": config.log_every_n_steps,
        "num_sanity_val_steps": config.num_sanity_val_steps,
        "deterministic": config.deterministic or None,
        "enable_progress_bar": config.progress_bar,
        "enable_checkpointing": enable_checkpointing,
        "enable_model_summary": False,
        "callbacks": all_callbacks,
        "logger": loggers,
        "plugins": [AtomicCheckpointIO()],
        "profiler": NoProfiler(),
        "default_root_dir": run.path,
    }
    if time_budget is not None:
        from datetime import timedelta

        from pentad_core.autoconfig import parse_duration

        options["max_time"] = timedelta(seconds=parse_duration(time_budget, key="time_budget"))
    options.update(overrides)
    return pl.Trainer(**options)


def _limit(value: float) -> float | int | None:
    if value == 0:
        return 0  # no batches: the loop is skipped
    if value == 1.0:
        return None  # Lightning's default: every batch
    return int(value) if value > 1 else float(value)


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    plain = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float):
            plain[key] = float(value)
    return plain


def fit(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    run: RunDir,
    *,
    datamodule: pl.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    ckpt_path: str | Path | None = None,
) -> dict[str, float]:
    """Train ``module``; record the final metrics, epochs, steps and wall time in ``metrics.json``.

    Args:
        trainer: From :func:`build_trainer`.
        module: The LightningModule.
        run: The run directory.
        datamodule: Either a datamodule, or ``train_dataloaders`` (+ ``val_dataloaders``).
        train_dataloaders: Training loader(s).
        val_dataloaders: Validation loader(s).
        ckpt_path: Checkpoint to resume from (``--resume``), loaded with ``weights_only=True``.

    Returns:
        The metrics of the last epoch plus ``fit/epochs``, ``fit/steps``, ``fit/seconds`` and
        ``fit/best_score`` when a metric is monitored.
    """
    start = time.perf_counter()
    try:
        trainer.fit(
            module,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            datamodule=datamodule,
            ckpt_path=ckpt_path,
            weights_only=True,
        )
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into exit code 1; the CLI answers it with 130
            raise KeyboardInterrupt from None
        raise
    metrics = _plain_metrics(dict(trainer.callback_metrics))
    # Keys read "<split>/<metric>"; the LR monitor's "lr-<optimizer>" is a training quantity.
    metrics = {(key if "/" in key else f"train/{key}"): value for key, value in metrics.items()}
    metrics = {key: value for key, value in metrics.items() if not key.startswith("test/")}
    metrics["fit/epochs"] = float(trainer.current_epoch)
    metrics["fit/steps"] = float(trainer.global_step)
    metrics["fit/seconds"] = time.perf_counter() - start
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_score is not None:
        metrics["fit/best_score"] = float(callback.best_model_score)
    if trainer.is_global_zero:
        run.write_metrics(metrics)
    return metrics


def test(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    run: RunDir,
    *,
    datamodule: pl.LightningDataModule | None = None,
    dataloaders: Any = None,
    ckpt_path: str | Path | None = None,
) -> dict[str, float]:
    """Evaluate ``module`` (optionally the weights in ``ckpt_path``, e.g. ``"best"``) on the test split.

    Returns:
        The logged ``test/*`` metrics, also merged into ``metrics.json``.
    """
    if ckpt_path == "best" and not (trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path):
        ckpt_path = None  # nothing monitored: test the weights in memory
    results = trainer.test(
        module, dataloaders=dataloaders, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
    )
    metrics: dict[str, float] = {}
    for result in results:
        metrics.update(_plain_metrics(result))
    if trainer.is_global_zero:
        run.write_metrics(metrics)
    return metrics
