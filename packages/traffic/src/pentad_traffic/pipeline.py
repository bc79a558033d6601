"""Library-level training and prediction: load data, build, train, test, forecast.

The CLI verbs are thin wrappers around these functions, so the package works without the app::

    from pentad_traffic.pipeline import prepare_run_data, train_model
    prepared = prepare_run_data(config)          # TrafficConfig
    module, metrics = train_model(config, prepared, run)  # pentad_core.runs.RunDir
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from pentad_core.checkpoint import load_checkpoint
from pentad_core.errors import CheckpointError
from pentad_core.runs import RunDir
from pentad_core.training import build_trainer, fit, test
from pentad_traffic.config import TrafficConfig
from pentad_traffic.data import load_dataset
from pentad_traffic.module import ForecastModule
from pentad_traffic.protocols import PreparedData, prepare


def prepare_run_data(config: TrafficConfig, data_root: Path | None = None) -> PreparedData:
    """Load ``config.dataset`` and prepare it under the configured protocol."""
    root = data_root if config.dataset not in ("synthetic",) else None
    if config.dataset == "csv" and data_root is None:
        root = Path(config.data_dir) if config.data_dir else None
    data = load_dataset(config.dataset, root=root, **config.dataset_options)
    return prepare(data, config.build_protocol())


def loaders(prepared: PreparedData, batch_size: int, num_workers: int = 0) -> dict[str, DataLoader | None]:
    """Train (shuffled), validation and test loaders."""

    def make(dataset, shuffle: bool) -> DataLoader | None:
        if dataset is None:
            return None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)

    return {"train": make(prepared.train, True), "val": make(prepared.val, False), "test": make(prepared.test, False)}


def build_module(config: TrafficConfig, prepared: PreparedData, **overrides: Any) -> ForecastModule:
    """A :class:`ForecastModule` for ``config.model`` (``overrides`` replace module options)."""
    options = {
        "model_options": dict(config.model_options),
        "loss": config.loss,
        "huber_delta": config.huber_delta,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "epochs": config.trainer.max_epochs,
    }
    options.update(overrides)
    model = options.pop("model", config.model)
    return ForecastModule.for_data(model, prepared, **options)


def train_model(
    config: TrafficConfig,
    prepared: PreparedData,
    run: RunDir,
    *,
    module: ForecastModule | None = None,
    resume: Path | None = None,
    trainer_config=None,
) -> tuple[ForecastModule, dict[str, float]]:
    """Train (or fit) the configured model, then test it; metrics go to ``run/metrics.json``.

    Returns:
        The trained module and the fit + test metrics (``test/h3/rmse``, ...).
    """
    module = module or build_module(config, prepared)
    trainer_config = trainer_config or config.trainer
    if prepared.val is None and trainer_config.monitor.startswith("val/"):
        trainer_config = type(trainer_config)(
            **{**trainer_config.__dict__, "monitor": "", "early_stopping_patience": 0}
        )
    if not module.network.trainable or module.network.closed_form:
        trainer_config = type(trainer_config)(
            **{**trainer_config.__dict__, "max_epochs": 1, "monitor": "", "early_stopping_patience": 0}
        )
    if module.network.closed_form and resume is None:
        module.fit_closed_form(*prepared.train.tensors())
    elif config.highway_init and resume is None:
        module.initialise_highway(*prepared.train.tensors())
    data = loaders(prepared, config.batch_size, config.num_workers)
    trainer = build_trainer(trainer_config, run, limit_val_batches=None if data["val"] else 0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Expected for baselines (no optimiser) and for the T-GCN protocol (no validation split).
        for message in (
            ".*configure_optimizers.*returned `None`",
            ".*training_step.*returned `None`",
            ".*empty generator.*",
            ".*validation_step.*no `val_dataloader`.*",
        ):
            warnings.filterwarnings("ignore", message=message)
        metrics = fit(
            trainer, module, run, train_dataloaders=data["train"], val_dataloaders=data["val"], ckpt_path=resume
        )
        metrics["fit/seconds"] = time.perf_counter() - start
        metrics.update(test(trainer, module, run, dataloaders=data["test"], ckpt_path="best"))
    run.write_metrics(metrics)
    return module, metrics


def load_module(checkpoint: Path, config: TrafficConfig, prepared: PreparedData) -> ForecastModule:
    """Rebuild a trained module from a checkpoint (loaded with ``weights_only=True``)."""
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{checkpoint} is not a Lightning checkpoint of a traffic run.")
    hparams = dict(state.get("hyper_parameters", {}))
    model = hparams.pop("model", config.model)
    for key in ("num_nodes", "scaler_center", "scaler_scale"):
        hparams.pop(key, None)
    module = ForecastModule.for_data(model, prepared, **hparams)
    module.scaler = type(module.scaler)(
        state["hyper_parameters"]["scaler_center"], state["hyper_parameters"]["scaler_scale"]
    )
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{checkpoint} does not fit model {model!r} on this dataset ({first}).") from None
    return module.eval()


@torch.no_grad()
def forecast(module: ForecastModule, prepared: PreparedData, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Forecasts ``(S, H, N)`` in mph for windows whose inputs begin at series steps ``starts``,
    with the truths (NaN past the end of the series)."""
    from pentad_traffic.protocols import WindowDataset

    dataset = WindowDataset(
        prepared.test.inputs, prepared.test.targets, starts, prepared.protocol.input_len, prepared.protocol.output_len
    )
    x, y = dataset.tensors()
    module.eval()
    predictions = (
        torch.cat([module(x[i : i + 256]) for i in range(0, len(x), 256)])
        if len(x)
        else x.new_zeros(0, prepared.protocol.output_len, prepared.data.num_nodes)
    )
    return predictions, y
