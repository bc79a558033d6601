"""Forecasts from a trained run, without the training data.

::

    from pentad_traffic.predictor import Predictor

    predictor = Predictor.from_run("runs/los-gcn")          # or runs/los-gcn/checkpoints/last.ckpt
    forecast = predictor.predict(last_hour)                  # (12, N) mph -> (12, N) mph

The checkpoint holds what a forecast needs (see :class:`~pentad_traffic.module.ForecastModule`):
the road graph, the protocol (input length, horizon, time features), the speed scaler fitted on
the training part, and the sensor ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pentad_core.checkpoint import load_checkpoint, load_module
from pentad_core.errors import CheckpointError, ConfigError
from pentad_core.predictor import Predictor as BasePredictor
from pentad_core.predictor import TrainedRun
from pentad_core.runs import BLEND_IN_PROGRESS
from pentad_traffic.blend import ForecastBlend
from pentad_traffic.config import TrafficConfig
from pentad_traffic.module import ForecastModule
from pentad_traffic.protocols import Protocol, Scaler, model_inputs

#: Hyper-parameters a checkpoint needs to be rebuilt without the data (written since issue 16).
REQUIRED = ("adjacency", "protocol", "sensor_ids", "scaler_center", "scaler_scale")


def _build(hyper_parameters: dict[str, Any]) -> ForecastModule:
    missing = [key for key in REQUIRED if key not in hyper_parameters]
    if missing:
        raise CheckpointError(
            f"the checkpoint holds no {', '.join(missing)}: it was written by an older pentad-traffic.",
            "Train it again to get a checkpoint that carries its road graph, protocol and scaler.",
        )
    return ForecastModule(**hyper_parameters)


def load_forecaster(path: Any, map_location: Any = "cpu") -> ForecastModule | ForecastBlend:
    """The trained module of a checkpoint, in eval mode: a :class:`ForecastModule`, or a
    :class:`~pentad_traffic.blend.ForecastBlend` for a blended run's checkpoint.

    Raises:
        CheckpointError: If the file is not a traffic checkpoint, lacks the graph, protocol or scaler,
            or is the marker of a blend whose models are still training.
    """
    index = load_checkpoint(path, mmap=True)  # the keys, without reading the tensors
    if isinstance(index, dict) and BLEND_IN_PROGRESS in index:
        raise CheckpointError(
            f"{path}: the run is a blend whose models are still training.", "Finish it with `train --resume last`."
        )
    if not (isinstance(index, dict) and isinstance(index.get("blend"), dict)):
        return load_module(ForecastModule, path, build=_build, map_location=map_location)
    state = load_checkpoint(path, map_location)["blend"]
    try:
        members = []
        for member in state["members"]:
            module = _build(dict(member["hyper_parameters"]))
            module.load_state_dict(member["state_dict"])
            members.append(module.eval())
        return ForecastBlend(members, state["weights"], state["names"]).eval()
    except (RuntimeError, TypeError, KeyError, ValueError, ConfigError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} does not hold a traffic blend ({first}).") from None


class Predictor(BasePredictor):
    """A trained forecaster with its graph, scaler and protocol.

    Args:
        module: The trained module, or a blend of several (eval mode is set).
        run: The run it was loaded from (None for a module trained in this process).
        config: The run's config (None when the checkpoint has no run folder).
        batch_size: Windows per forward pass in :meth:`predict`.
    """

    config_class = TrafficConfig

    def __init__(
        self,
        module: ForecastModule | ForecastBlend,
        run: TrainedRun | None = None,
        config: TrafficConfig | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(run, config)
        self.module = module.eval()
        self.batch_size = batch_size

    @classmethod
    def from_trained_run(cls, run: TrainedRun, device: str = "cpu", batch_size: int = 256) -> Predictor:
        """Load the checkpoint of ``run`` (see :meth:`from_run`) onto ``device``.

        Raises:
            CheckpointError: See :func:`load_forecaster`.
        """
        module = load_forecaster(run.checkpoint, map_location=device)
        config = run.typed_config(TrafficConfig) if run.config else None
        return cls(module.to(device), run, config, batch_size)

    @property
    def protocol(self) -> Protocol:
        """The protocol the model was trained and scored under."""
        return self.module.protocol

    @property
    def scaler(self) -> Scaler:
        """The speed scaling fitted on the run's training part."""
        return self.module.scaler

    @property
    def sensor_ids(self) -> list[str]:
        """The ``N`` sensor ids, in the column order :meth:`predict` expects."""
        return self.module.sensor_ids

    @property
    def model_name(self) -> str:
        """The registered model name (``a+b`` for a blend of ``a`` and ``b``)."""
        return self.module.model_name

    @property
    def model_names(self) -> list[str]:
        """The registered names of the models whose forecasts :meth:`predict` gives (several for a blend)."""
        return self.module.model_names

    @property
    def input_len(self) -> int:
        """Readings per input window ``T``."""
        return self.protocol.input_len

    @property
    def horizon(self) -> int:
        """Forecast steps ``H``."""
        return self.protocol.output_len

    def inputs(self, window: Any, time_of_day: Any = None, day_of_week: Any = None) -> tuple[torch.Tensor, bool]:
        """Model inputs ``(B, T, N, F)`` from speed windows in mph, and whether ``window`` was unbatched.

        Raises:
            ConfigError: If the shapes do not fit the run, or a time feature the model was trained
                with is missing.
        """
        speeds = np.asarray(window, dtype=np.float32)
        single = speeds.ndim == 2
        if single:
            speeds = speeds[None]
        expected = (self.input_len, len(self.sensor_ids))
        if speeds.ndim != 3 or speeds.shape[1:] != expected:
            raise ConfigError(
                f"a window must be (T, N) = {expected} speeds (or a batch of them); got {np.shape(window)}."
            )
        features = {}
        for name, values, used in (
            ("time_of_day", time_of_day, self.protocol.time_of_day),
            ("day_of_week", day_of_week, self.protocol.day_of_week),
        ):
            if not used:
                continue
            if values is None:
                raise ConfigError(f"this model was trained with {name} features: pass {name}= for each reading.")
            values = np.asarray(values)
            if values.shape not in (speeds.shape[1:2], speeds.shape[:2]):
                raise ConfigError(
                    f"{name} must have one value per reading: shape {speeds.shape[1:2]} or {speeds.shape[:2]}."
                )
            features[name] = np.broadcast_to(values, speeds.shape[:2])
        return model_inputs(speeds, self.scaler, features.get("time_of_day"), features.get("day_of_week")), single

    @torch.no_grad()
    def forecast_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``(B, H, N)`` in mph from model inputs ``(B, T, N, F)`` (scaled, as built by :meth:`inputs`)."""
        device = next(self.module.parameters(), torch.empty(0)).device
        if len(x) == 0:
            return x.new_zeros(0, self.horizon, len(self.sensor_ids))
        return torch.cat(
            [self.module(x[i : i + self.batch_size].to(device)).cpu() for i in range(0, len(x), self.batch_size)]
        )

    def predict(self, window: Any, *, time_of_day: Any = None, day_of_week: Any = None) -> np.ndarray:
        """Forecast the next ``H`` steps of every sensor.

        Args:
            window: The last ``T = input_len`` readings, ``(T, N)`` speeds in mph in the column order
                of :attr:`sensor_ids`, or a batch ``(B, T, N)``.
            time_of_day: ``(T,)`` (or ``(B, T)``) fraction of the day in ``[0, 1)`` of each reading;
                needed when the run used ``time_of_day`` features.
            day_of_week: ``(T,)`` (or ``(B, T)``) day of week (0 = Monday) of each reading; needed
                when the run used ``day_of_week`` features.

        Returns:
            ``(H, N)`` (or ``(B, H, N)``) float32 forecasts in mph.
        """
        x, single = self.inputs(window, time_of_day, day_of_week)
        forecasts = self.forecast_inputs(x).numpy()
        return forecasts[0] if single else forecasts

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's recorded metrics (empty for a module trained in this process)."""
        return dict(self.run.metrics) if self.run is not None else {}

    def score(self, pred: torch.Tensor, true: torch.Tensor, protocol: Protocol | None = None) -> dict[str, float]:
        """The protocol's metrics per horizon and over all steps (see :meth:`ForecastModule.score`)."""
        return self.module.score(pred, true, protocol)
