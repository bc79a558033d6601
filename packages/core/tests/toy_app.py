"""A tiny app on the core scaffold, run as a subprocess by the kill/resume and DDP tests.

Linear regression on generated data: small enough to train in seconds, deterministic enough that
an interrupted-and-resumed run can be compared number for number with an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from fastapi import Request  # at module level: FastAPI resolves the route's annotations here
from torch import nn

from pentad_core.checkpoint import atomic_save
from pentad_core.cli import App, Context, RunConfig
from pentad_core.data import DatasetInfo
from pentad_core.registry import Registry
from pentad_core.serving import add_serve_arguments, run_server, serve_options
from pentad_core.training import PentadModule, build_trainer, fit


@dataclass
class ToyConfig(RunConfig):
    """Settings of the toy app."""

    #: Seconds to sleep after each training step (lets a test kill the run mid-way).
    step_delay: float = 0.0
    #: Generated training samples.
    samples: int = 256
    #: Input features.
    features: int = 8
    #: SGD learning rate.
    learning_rate: float = 0.05
    #: Shuffle the training set each epoch.
    shuffle: bool = True
    #: Visit samples in the order DDP's DistributedSampler does, on one process (for DDP comparisons).
    ddp_order: bool = False


class ToyRegression(PentadModule):
    """A linear layer trained with SGD + momentum and a step LR schedule."""

    def __init__(self, features: int, learning_rate: float) -> None:
        super().__init__()
        self.save_hyperparameters()  # logged by TensorBoard and CSV loggers, stored in checkpoints
        self.layer = nn.Linear(features, 1)
        self.learning_rate = learning_rate

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.layer(inputs), targets)
        self.log_training("train/loss", loss, batch_size=len(inputs))
        return loss

    def validation_step(self, batch, batch_index):
        inputs, targets = batch
        self.log("val/loss", nn.functional.mse_loss(self.layer(inputs), targets))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.learning_rate, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)}


class Delay(pl.Callback):
    """Sleeps after each training step; the first step leaves a ``started`` file (tests wait for it)."""

    def __init__(self, seconds: float, marker: Path | None = None) -> None:
        self.seconds = seconds
        self.marker = marker

    def on_train_batch_end(self, *args) -> None:
        if self.marker is not None and not self.marker.exists():
            self.marker.touch()
        time.sleep(self.seconds)


def make_data(samples: int, features: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(samples, features, generator=generator)
    weights = torch.arange(1, features + 1, dtype=torch.float32).unsqueeze(1) / features
    targets = inputs @ weights + 0.1 * torch.randn(samples, 1, generator=generator)
    return torch.utils.data.TensorDataset(inputs, targets)


DATASETS = Registry("dataset", DatasetInfo)
DATASETS.register("synthetic", make_data, description="generated regression data", generated=True)
DATASETS.register("toy-real", make_data, description="a dataset that lives in a folder")

app = App("toy", "Toy regression app for core tests.", ToyConfig, datasets=DATASETS, real_dataset="toy-real")


def configure(context: Context, dataset: torch.utils.data.TensorDataset) -> ToyConfig:
    """Self-configuration as a domain does it: fingerprint the data, derive settings, size the run."""
    from pentad_core.autoconfig import Choice, epochs_for_budget, parse_duration, seconds_per_step, self_configure

    inputs, targets = dataset.tensors
    scale = float(inputs.pow(2).sum(1).mean())
    fingerprint = {"samples": len(inputs), "features": inputs.shape[1], "input_power": round(scale, 3)}
    choices = [Choice("learning_rate", round(0.5 / scale, 4), f"0.5 / mean squared input norm {scale:.3g}")]
    if context.config.time_budget is not None:
        probe = ToyRegression(inputs.shape[1], 0.01)
        optimizer = torch.optim.SGD(probe.parameters(), lr=0.01)
        batch = inputs[: context.config.batch_size], targets[: context.config.batch_size]

        def step() -> None:
            optimizer.zero_grad()
            nn.functional.mse_loss(probe.layer(batch[0]), batch[1]).backward()
            optimizer.step()
            time.sleep(context.config.step_delay)

        steps = math.ceil(len(inputs) / context.config.batch_size)
        epoch_s = steps * seconds_per_step(step)
        epochs = epochs_for_budget(parse_duration(context.config.time_budget), epoch_s, maximum=1000)
        choices.append(Choice("trainer.max_epochs", epochs, f"{epoch_s:.3g} s per epoch measured"))
    return self_configure(context, fingerprint, choices)


@app.verb("train", "Train the toy model.", trains=True)
def train(context: Context) -> None:
    config = context.config
    dataset = make_data(config.samples, config.features)
    if config.ddp_order:
        # Lightning shuffles DDP training data with DistributedSampler(seed=PL_GLOBAL_SEED); one
        # replica of the same sampler visits the union of the ranks' batches in the same order.
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=config.seed)
        train_loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler)
    else:
        train_loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=config.shuffle)
    config = configure(context, dataset)
    val_loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    module = ToyRegression(config.features, config.learning_rate)
    trainer = build_trainer(
        config.trainer,
        context.run,
        callbacks=[Delay(config.step_delay, context.run.path / "started")],
        time_budget=config.time_budget,
    )
    fit(trainer, module, context.run, train_dataloaders=train_loader, val_dataloaders=val_loader,
        ckpt_path=context.resume_path)  # fmt: skip
    atomic_save(module.state_dict(), context.run.path / f"weights_rank{trainer.global_rank}.pt")


@app.verb("evaluate", "Mean squared error of a trained run on the data.", needs_checkpoint=True)
def evaluate(context: Context) -> None:
    from pentad_core.checkpoint import load_module
    from pentad_core.predictor import locate_run

    module = load_module(ToyRegression, locate_run(context.checkpoint).checkpoint)
    inputs, targets = make_data(context.config.samples, context.config.features).tensors
    with torch.no_grad():
        context.run.write_metrics({"eval/mse": float(nn.functional.mse_loss(module.layer(inputs), targets))})


def _toy_service(context: Context) -> Any:
    """The toy regression as a service: ``POST /v1/predict {"inputs": [[x1..xF], ...]}`` -> outputs."""
    from pentad_core.checkpoint import load_module
    from pentad_core.predictor import locate_run
    from pentad_core.serving import ClientError, Service, read_json

    run = locate_run(context.args.run or context.checkpoint)
    module = load_module(ToyRegression, run.checkpoint)
    features = module.layer.in_features
    delay = float(os.environ.get("TOY_SERVE_DELAY", "0"))

    def predict_batch(rows: list[list[float]]) -> list[float]:
        if any(not all(map(math.isfinite, row)) for row in rows):
            raise ClientError("inputs hold NaN or infinity", 422)
        time.sleep(delay)  # lets tests hold requests in flight
        with torch.no_grad():
            return module.layer(torch.tensor(rows, dtype=torch.float32))[:, 0].tolist()

    def add_routes(router: Any, serving: Any) -> None:
        @router.post("/v1/predict")
        async def predict(request: Request) -> dict[str, Any]:
            body = await read_json(request, serving.options)
            try:
                rows = body["inputs"]
                assert isinstance(rows, list) and all(isinstance(r, list) and len(r) == features for r in rows)
                rows = [[float(value) for value in row] for row in rows]
            except (ValueError, KeyError, TypeError, AssertionError):
                raise ClientError(f"body must be {{'inputs': [[{features} numbers], ...]}}", 422) from None
            outputs = await asyncio.gather(*(serving.batchers["predict"].submit(row) for row in rows))
            return {"outputs": list(outputs)}

    card = {"model": "toy-regression", "dataset": context.config.dataset, "metrics": dict(run.metrics),
            "inputs": {"features": features}}  # fmt: skip
    return Service("toy", card, add_routes, {"predict": predict_batch}, page="<h1>toy</h1>")


@app.verb("serve", "Serve a trained toy run over HTTP.", arguments=add_serve_arguments, writes_run=False)
def serve(context: Context) -> None:
    run_server(_toy_service(context), serve_options(context.args))


TOY_APP = Path(__file__).resolve()


def run_toy(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the toy app in a fresh interpreter (what a user's shell would do)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(TOY_APP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        **kwargs,
    )


if __name__ == "__main__":
    raise SystemExit(app.main())
