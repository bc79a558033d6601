"""The LightningModule that trains and evaluates any registered forecaster."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from pentad_core.ensemble import build_ensemble, each_member, members
from pentad_core.errors import ConfigError
from pentad_core.training import PentadModule
from pentad_traffic.metrics import horizon_metrics, null_mask
from pentad_traffic.models import build_model
from pentad_traffic.protocols import PreparedData, Protocol, Scaler
from pentad_traffic.registry import MODELS

LOSSES = ("mse", "mae", "huber")


class ForecastModule(PentadModule):
    """Trains a forecaster on scaled inputs with a loss in original units (mph), masked where the
    truth is missing, and scores the test windows per horizon.

    Logs ``train/loss``, ``val/loss``, ``val/mae``, ``val/rmse``, and at test time
    ``test/h<k>/<metric>`` for every protocol horizon plus ``test/<metric>`` over all steps.

    Everything a forecast needs is saved in the checkpoint's hyper-parameters: the road graph, the
    protocol (window lengths, horizons, time features, masking), the scaler and the sensor ids, so
    :class:`pentad_traffic.predictor.Predictor` rebuilds the module without the training data.

    Args:
        model: Registered model name.
        num_nodes: Sensors ``N``.
        adjacency: ``(N, N)`` road graph weights (numpy or tensor).
        protocol: The evaluation protocol, or its fields as a dict (how a checkpoint stores it).
        scaler_center: Scaler offset fitted on the training data.
        scaler_scale: Scaler divisor fitted on the training data.
        model_options: The model's own constructor options (checked against its signature).
        loss: ``mse``, ``mae`` or ``huber`` (quadratic below ``huber_delta`` mph, linear above).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        epochs: Epochs of the cosine learning-rate schedule.
        huber_delta: Error (mph) where the Huber loss turns from quadratic to linear.
        sensor_ids: The ``N`` sensor ids in column order (default ``"0" .. "N-1"``).
        ensemble: Independently initialised copies of the network, each trained on its own loss,
            whose forecasts are averaged (:mod:`pentad_core.ensemble`; 1: one network).
    """

    def __init__(
        self,
        model: str,
        num_nodes: int,
        adjacency: Any,
        protocol: Protocol | dict[str, Any],
        scaler_center: float,
        scaler_scale: float,
        model_options: dict[str, Any] | None = None,
        loss: str = "mse",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        epochs: int = 10,
        huber_delta: float = 1.0,
        sensor_ids: list[str] | None = None,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        if ensemble > 1 and not MODELS.info(model).trainable:
            raise ConfigError(
                f"ensemble {ensemble}: {model!r} is not trained by gradient descent, so its copies would be "
                "identical; use ensemble 1."
            )
        if loss not in LOSSES:
            raise ConfigError(f"loss {loss!r} is not one of {', '.join(LOSSES)}.")
        if huber_delta <= 0:
            raise ConfigError(f"huber_delta must be positive, got {huber_delta}.")
        protocol = protocol if isinstance(protocol, Protocol) else Protocol(**protocol)
        graph = torch.as_tensor(np.asarray(adjacency, dtype=np.float32))
        sensor_ids = [str(sensor) for sensor in sensor_ids] if sensor_ids else [str(i) for i in range(num_nodes)]
        if len(sensor_ids) != num_nodes:
            raise ConfigError(f"{len(sensor_ids)} sensor ids for {num_nodes} sensors.")
        self.save_hyperparameters(ignore=["adjacency", "protocol", "sensor_ids"], logger=False)
        # What a forecast needs besides the weights, as plain types and tensors (checkpoints are
        # read back with weights_only=True).
        self.hparams.update(
            {
                "adjacency": graph,
                "protocol": dataclasses.asdict(protocol),
                "sensor_ids": sensor_ids,
                "model_options": dict(model_options or {}),
            }
        )
        self.protocol = protocol
        self.scaler = Scaler(scaler_center, scaler_scale)
        self.sensor_ids = sensor_ids
        #: Trained by gradient descent (registry metadata); False for the baselines.
        self.learned = MODELS.info(model).trainable
        self.network = build_ensemble(
            lambda: build_model(
                model,
                options=model_options,
                num_nodes=num_nodes,
                input_len=protocol.input_len,
                horizon=protocol.output_len,
                in_features=protocol.in_features,
                adjacency=graph.numpy(),
            ),
            ensemble,
        )
        #: Fitted by least squares instead of gradient descent (the VAR).
        self.closed_form = members(self.network)[0].closed_form
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_predictions: torch.Tensor | None = None

    @classmethod
    def for_data(cls, model: str, prepared: PreparedData, **options: Any) -> ForecastModule:
        """Build a module for a prepared dataset (``options``: the constructor's keyword arguments)."""
        return cls(
            model,
            prepared.data.num_nodes,
            prepared.data.adjacency,
            prepared.protocol,
            prepared.scaler.center,
            prepared.scaler.scale,
            sensor_ids=prepared.data.sensor_ids,
            **options,
        )

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return self.hparams.model

    @property
    def model_names(self) -> list[str]:
        """The registered models whose forecasts this module gives: ``[model_name]``."""
        return [self.hparams.model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast in original units: ``(B, L, N, F)`` -> ``(B, H, N)``."""
        return self.scaler.inverse(self.network(x))

    def _loss_terms(self, error: torch.Tensor) -> torch.Tensor:
        """The loss of each error (mph), before averaging."""
        kind = self.hparams.loss
        if kind == "mse":
            return error.pow(2)
        if kind == "mae":
            return error.abs()
        return torch.nn.functional.huber_loss(
            error, torch.zeros_like(error), delta=self.hparams.huber_delta, reduction="none"
        )

    def _loss(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        mask = null_mask(true, self.protocol.null_value)
        return self._loss_terms((pred - torch.nan_to_num(true))[mask]).mean()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor | None:
        """One optimisation step (nothing for models without gradient training)."""
        if not self.learned:
            return None
        x, y = batch
        # each ensemble member on its own loss, summed: members train as they would alone
        each = each_member(self.network, x)
        loss = torch.stack([self._loss(self.scaler.inverse(pred), y) for pred in each]).sum()
        self.log_training("train/loss", loss.detach() / len(each), len(x), prog_bar=True)
        return loss

    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fit a closed-form model (VAR) by least squares: ``x`` scaled inputs, ``y`` speeds in mph."""
        self.network.fit(x.to(self.device), self.scaler.transform(y.to(self.device)))

    @torch.no_grad()
    def initialise_highway(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Warm-start the network's linear autoregressive highway by least squares on the training
        windows, so that gradient training starts from the linear forecaster and the network learns
        what it misses. Returns False for models without a highway.

        Args:
            x: ``(S, L, N, F)`` scaled inputs.
            y: ``(S, H, N)`` speeds in mph (missing readings are left out).
        """
        networks = members(self.network)
        if getattr(networks[0], "highway", None) is None or not self.learned:
            return False
        x, y = x.to(self.device), y.to(self.device)
        target = self.scaler.transform(torch.where(null_mask(y, self.protocol.null_value), y, float("nan")))
        if getattr(networks[0], "residual", False):
            target = target - x[:, -1:, :, 0]
        networks[0].highway.fit(x, target)
        for network in networks[1:]:  # the same least-squares solution for every ensemble member
            network.highway.load_state_dict(networks[0].highway.state_dict())
        return True

    def _windows(self, batch: tuple[torch.Tensor, ...], outputs: list) -> tuple[torch.Tensor, ...]:
        """``x, y, index`` of a validation or test batch; a batch without window indices (``(x, y)``)
        is numbered in the order seen."""
        x, y, *rest = batch
        if rest:
            index = torch.as_tensor(rest[0], device=x.device).long()
        else:
            seen = sum(len(output[0]) for output in outputs)
            index = torch.arange(seen, seen + len(x), device=x.device)
        return x, y, index

    def _gather_windows(self, index: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-window ``values`` of every process, each window once, in window order.

        Under DDP every process scores its share of the windows, and a ``DistributedSampler`` repeats
        a few so that all shares are equally long: the shares are gathered (``all_gather``) and the
        repeated windows dropped, so that the metrics cover the whole split exactly once, as in
        one process.
        """
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            size = int(self.all_gather(torch.tensor(len(index), device=index.device)).max())

            def padded(tensor: torch.Tensor, fill: float) -> torch.Tensor:
                extra = tensor.new_full((size - len(tensor), *tensor.shape[1:]), fill)
                return self.all_gather(torch.cat([tensor, extra])).flatten(0, 1)

            index = padded(index, -1)
            values = tuple(padded(value, 0) for value in values)
            keep = index >= 0
            index, values = index[keep], tuple(value[keep] for value in values)
        order = torch.argsort(index, stable=True)
        index, values = index[order], tuple(value[order] for value in values)
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return (index[first], *(value[first] for value in values))

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> None:
        """Per window: squared and absolute errors (mph), loss and count of the readings scored."""
        x, y, index = self._windows(batch, self._val_outputs)
        pred = self(x).float()
        mask = null_mask(y, self.protocol.null_value)
        error = torch.where(mask, pred - torch.nan_to_num(y), 0.0)
        terms = torch.where(mask, self._loss_terms(error), 0.0)
        stats = torch.stack([error.pow(2), error.abs(), terms, mask.float()], dim=-1).flatten(1, -2).sum(1)
        self._val_outputs.append((index, stats.detach()))

    def on_validation_epoch_end(self) -> None:
        """Log ``val/loss``, ``val/mae`` and ``val/rmse`` over every validation window (of every process)."""
        if not self._val_outputs:
            return
        _, stats = self._gather_windows(*(torch.cat(part) for part in zip(*self._val_outputs, strict=True)))
        squared, absolute, loss, count = stats.double().sum(0).cpu().tolist()
        count = max(count, 1.0)
        # The values are the same in every process; sync_dist averages equal numbers (exactly).
        self.log("val/loss", loss / count, prog_bar=True, sync_dist=True)
        self.log("val/mae", absolute / count, sync_dist=True)
        self.log("val/rmse", (squared / count) ** 0.5, sync_dist=True)
        self._val_outputs = []

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> None:
        """Collect forecasts; metrics are computed over the whole test set at the end."""
        x, y, index = self._windows(batch, self._test_outputs)
        self._test_outputs.append((index, self(x).detach().float(), y))

    def on_test_epoch_end(self) -> None:
        """Log ``test/h<k>/<metric>`` and ``test/<metric>`` (all steps) over every test window of
        every process (see :meth:`_gather_windows`)."""
        _, pred, true = self._gather_windows(*(torch.cat(part) for part in zip(*self._test_outputs, strict=True)))
        pred, true = pred.cpu(), true.cpu()
        self.test_predictions = pred
        for key, value in self.score(pred, true).items():
            self.log(f"test/{key}", value, sync_dist=True)
        self._test_outputs = []

    def score(self, pred: torch.Tensor, true: torch.Tensor, protocol: Protocol | None = None) -> dict[str, float]:
        """Per-horizon metrics and, under key ``<metric>``, the metrics over every predicted step
        (under ``protocol``, default the module's)."""
        protocol = protocol or self.protocol
        scores = horizon_metrics(
            pred, true, protocol.horizons, protocol.metrics, protocol.reduction, protocol.null_value
        )
        overall = horizon_metrics(
            pred, true, (protocol.output_len,), protocol.metrics, "cumulative", protocol.null_value
        )
        scores.update({key.split("/", 1)[1]: value for key, value in overall.items()})
        return scores

    def configure_optimizers(self):
        parameters = [p for p in self.parameters() if p.requires_grad]
        if not parameters or not self.learned:
            return None
        optimizer = torch.optim.Adam(parameters, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.hparams.epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
