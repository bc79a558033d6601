"""The traffic run configuration (recipes in ``shared/configs/traffic/<dataset>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pentad_core.cli import RunConfig
from pentad_core.errors import ConfigError
from pentad_core.training import TrainerConfig
from pentad_traffic.protocols import Protocol, get_protocol


def _trainer_defaults() -> TrainerConfig:
    # The T-GCN protocol has no validation split: train a fixed number of epochs, keep the last.
    return TrainerConfig(max_epochs=30, monitor="", gradient_clip_val=5.0, log_every_n_steps=10)


@dataclass
class TrafficConfig(RunConfig):
    """Settings of a traffic run: data, protocol, model, optimisation, outputs."""

    #: Registered model name (see the `models` verb), e.g. tgcn, stgcn, graph-wavenet, gcn, gru, var, persistence.
    model: str = "tgcn"
    #: Registered dataset name: los-loop, metr-la, pems-bay, csv or synthetic.
    dataset: str = "synthetic"
    #: Windows per batch.
    batch_size: int = 32
    #: Dataset loader options, e.g. num_nodes/num_days/seed (synthetic), speeds/adjacency/distances (csv).
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: Evaluation protocol: tgcn (80/20, max-scaling, horizons 3/6/9/12) or dcrnn (70/10/20, z-score, 3/6/12).
    protocol: str = "tgcn"
    #: Input steps per window.
    input_len: int = 12
    #: Predicted steps per window.
    output_len: int = 12
    #: Reported horizons in steps (empty: the protocol's).
    horizons: list[int] = field(default_factory=list)
    #: Add the time of day as an input feature.
    time_of_day: bool = False
    #: Add the day of week as an input feature.
    day_of_week: bool = False
    #: Model constructor options, e.g. hidden (tgcn, gru), channels (stgcn, graph-wavenet), lags/ridge (var).
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Train this many independently initialised copies of the network side by side, each on its
    #: own loss, and average their forecasts (a deep ensemble; 1: one network; learned models only).
    #: Costs about K times the compute of one network.
    ensemble: int = 1
    #: Models trained beside ``model`` and blended with it, e.g. [gru]: each trains as ``train --model NAME``
    #: would (its section ``models.NAME`` of the recipe, with its own input scaling) on this run's data and
    #: protocol, as a run of its own in ``<run>/blend/<name>/``; the forecast is the weighted mean of the
    #: models' forecasts in mph.
    blend: list[str] = field(default_factory=list)
    #: Share of each model of ``blend`` in the blended forecast, in its order (``model`` gets the rest);
    #: empty: every model an equal share. There is no validation part to fit them on under the T-GCN
    #: protocol, so a recipe states the shares it chose on a validation slice.
    blend_weights: list[float] = field(default_factory=list)
    #: Training loss in mph, masked where the truth is missing: mse, mae or huber.
    loss: str = "mse"
    #: Error in mph where the huber loss turns from quadratic to linear.
    huber_delta: float = 1.0
    #: Warm-start each network's linear highway by least squares on the training windows.
    highway_init: bool = True
    #: Adam learning rate (cosine schedule over trainer.max_epochs).
    lr: float = 3e-3
    #: Adam weight decay.
    weight_decay: float = 0.0
    #: Speed scaling: "max" (divide by the training maximum) or "zscore"; empty: the protocol's.
    scaling: str = ""
    #: Models trained side by side by `benchmark`, each with the config `train --model NAME` gets
    #: (its section ``models.NAME`` of the dataset's recipe).
    benchmark_models: list[str] = field(
        default_factory=lambda: [
            "persistence",
            "historical-average",
            "var",
            "gru",
            "gcn",
            "tgcn",
            "a3tgcn",
            "stgcn",
            "graph-wavenet",
        ]
    )
    #: Sensors (column indices) drawn in plots/prediction_vs_truth.png.
    plot_sensors: list[int] = field(default_factory=lambda: [0, 1])
    #: Horizon (steps ahead) drawn in plots/prediction_vs_truth.png.
    plot_horizon: int = 3
    #: Lightning trainer settings (no validation split under the T-GCN protocol: the last epoch is kept).
    trainer: TrainerConfig = field(default_factory=_trainer_defaults)

    def __post_init__(self) -> None:
        super().__post_init__()
        get_protocol(self.protocol)
        if self.scaling not in ("", "max", "zscore"):
            raise ConfigError(f"scaling must be max or zscore (empty: the protocol's), got {self.scaling!r}.")
        if self.input_len < 1 or self.output_len < 1:
            raise ConfigError("input_len and output_len must be at least 1.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}.")
        if self.huber_delta <= 0:
            raise ConfigError(f"huber_delta must be positive, got {self.huber_delta}.")

    def blend_shares(self) -> list[float]:
        """The share of ``model`` and of each model of ``blend`` in the blended forecast (summing to 1).

        Checked here, when a blend trains, not when the config is built: ``--set blend=...`` also reaches
        the configs of the blended models, which drop it.

        Raises:
            ConfigError: A model named twice, or shares that do not fit the models.
        """
        names = [self.model, *self.blend]
        if len(set(names)) != len(names):
            raise ConfigError(f"blend names a model twice: {', '.join(names)} (model {self.model!r} is always in it).")
        if self.blend_weights:
            if len(self.blend_weights) != len(self.blend):
                raise ConfigError(
                    f"blend_weights has {len(self.blend_weights)} shares for {len(self.blend)} blended models "
                    f"({', '.join(self.blend)}): give one each, or none for equal shares."
                )
            if min(self.blend_weights) <= 0 or sum(self.blend_weights) >= 1:
                raise ConfigError(
                    f"blend_weights {self.blend_weights} must be positive and sum to less than 1 "
                    f"(model {self.model!r} gets the rest)."
                )
            return [1.0 - sum(self.blend_weights), *self.blend_weights]
        return [1.0 / (1 + len(self.blend))] * (1 + len(self.blend))

    def build_protocol(self) -> Protocol:
        """The protocol with this run's window lengths, horizons and time features."""
        base = get_protocol(self.protocol)
        horizons = tuple(self.horizons) or tuple(h for h in base.horizons if h <= self.output_len)
        if not horizons:
            horizons = (self.output_len,)
        return base.replace(
            input_len=self.input_len,
            output_len=self.output_len,
            horizons=horizons,
            time_of_day=self.time_of_day,
            day_of_week=self.day_of_week,
            **({"scaling": self.scaling} if self.scaling else {}),
        )
