"""Blends: a weighted mean of several trained forecasters, each fed with its own input scaling.

The config key ``blend`` (see :class:`~pentad_traffic.config.TrafficConfig`) trains ``model`` and each
named model as a run of its own (:func:`pentad_traffic.pipeline.train_blend`); :class:`ForecastBlend`
serves their weighted mean as one module, so ``Predictor``, ``evaluate``, ``predict``, ``export`` and
``serve`` treat a blended run like any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from pentad_core.errors import ConfigError
from pentad_traffic.config import TrafficConfig
from pentad_traffic.module import ForecastModule
from pentad_traffic.protocols import Protocol, Scaler

#: The keys a blended model takes from the blend's config whatever its own section says: every model
#: forecasts the same windows of the same series from the same inputs (its speed scaling is its own).
BLEND_SHARED_KEYS = (
    "dataset",
    "data_dir",
    "dataset_options",
    "protocol",
    "input_len",
    "output_len",
    "horizons",
    "time_of_day",
    "day_of_week",
    "seed",
)


def blend_member_config(
    config: TrafficConfig, name: str, member_configs: dict[str, TrafficConfig] | None = None
) -> TrafficConfig:
    """The config model ``name`` of ``config``'s blend trains with.

    ``config.model`` trains with ``config`` itself; another model with ``member_configs[name]`` (the CLI
    gives the config ``train --model NAME`` gets) or else ``config`` with its own model and no options.
    Either way the keys of :data:`BLEND_SHARED_KEYS` are ``config``'s and ``blend`` is empty.
    """
    if name == config.model:
        base = config
    elif member_configs and name in member_configs:
        base = member_configs[name]
    else:
        base = dataclasses.replace(config, model=name, model_options={}, ensemble=1, scaling="")
    shared = {key: getattr(config, key) for key in BLEND_SHARED_KEYS}
    return dataclasses.replace(base, **shared, model=name, blend=[], blend_weights=[])


def _same_but_scaling(protocol: Protocol, other: Protocol) -> bool:
    return dataclasses.replace(other, scaling=protocol.scaling) == protocol


class ForecastBlend(torch.nn.Module):
    """The weighted mean, in mph, of trained forecasters' forecasts.

    Inputs arrive scaled by the first model's scaler (as :class:`~pentad_traffic.predictor.Predictor`
    builds them); each model's speed channel is mapped to its own scaler by the exact affine map
    ``(x * s_0 + c_0 - c_k) / s_k``, so models trained with different scalings (z-score, the training
    maximum) blend, and the whole blend exports to ONNX as one graph.

    Args:
        members: ``K`` trained modules on the same sensors under the same protocol apart from the speed
            scaling; the first is the blend's ``model``, whose protocol and scaler the blend presents.
        weights: ``(K,)`` shares, positive and summing to 1.
        names: The ``K`` registered model names.

    Raises:
        ConfigError: If the models forecast other sensors, windows or horizons, or the weights do not fit.
    """

    def __init__(self, members: Sequence[ForecastModule], weights: Sequence[float], names: Sequence[str]) -> None:
        super().__init__()
        if not members or len(weights) != len(members) or len(names) != len(members):
            raise ConfigError(f"a blend needs one weight and one name per model ({len(members)} models).")
        if min(weights) <= 0 or abs(sum(weights) - 1.0) > 1e-6:
            raise ConfigError(f"blend weights {list(weights)} must be positive and sum to 1.")
        first = members[0]
        for name, member in zip(names[1:], members[1:], strict=True):
            if list(member.sensor_ids) != list(first.sensor_ids):
                raise ConfigError(f"blend: model {name!r} forecasts other sensors than {names[0]!r}.")
            if not _same_but_scaling(first.protocol, member.protocol):
                raise ConfigError(f"blend: model {name!r} was trained under another protocol than {names[0]!r}.")
        self.members = torch.nn.ModuleList(members)
        self.names = [str(name) for name in names]
        self.register_buffer("weights", torch.tensor([float(w) for w in weights], dtype=torch.float32))
        # (K, 2) slope and offset taking the first model's scaled speed to each model's own
        maps = [
            (first.scaler.scale / m.scaler.scale, (first.scaler.center - m.scaler.center) / m.scaler.scale)
            for m in members
        ]
        self.register_buffer("speed_maps", torch.tensor(maps, dtype=torch.float32))

    @property
    def protocol(self) -> Protocol:
        """The first model's protocol (the blend's inputs are scaled by its scaler)."""
        return self.members[0].protocol

    @property
    def scaler(self) -> Scaler:
        """The speed scaling of the blend's inputs: the first model's."""
        return self.members[0].scaler

    @property
    def sensor_ids(self) -> list[str]:
        """The ``N`` sensor ids, in column order."""
        return self.members[0].sensor_ids

    @property
    def model_name(self) -> str:
        """The blended models' names joined by ``+``, e.g. ``graph-wavenet+gru``."""
        return "+".join(self.names)

    @property
    def model_names(self) -> list[str]:
        """The registered names of the blended models, ``model`` first."""
        return list(self.names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blended forecast in mph: ``(B, L, N, F)`` inputs scaled by :attr:`scaler` -> ``(B, H, N)``."""
        speed, rest = x[..., :1], x[..., 1:]
        out = None
        for k, member in enumerate(self.members):
            own = torch.cat([speed * self.speed_maps[k, 0] + self.speed_maps[k, 1], rest], dim=-1)
            term = self.weights[k] * member(own)
            out = term if out is None else out + term
        return out

    def score(self, pred: torch.Tensor, true: torch.Tensor, protocol: Protocol | None = None) -> dict[str, float]:
        """The protocol's metrics per horizon and over all steps (see :meth:`ForecastModule.score`)."""
        return self.members[0].score(pred, true, protocol)


def blend_state(blend: ForecastBlend) -> dict[str, Any]:
    """What a blended run's checkpoint holds: each model's hyper-parameters and weights, the names and
    the shares (plain types and tensors, read back with ``weights_only=True``)."""
    return {
        "blend": {
            "names": list(blend.names),
            "weights": blend.weights.tolist(),
            "members": [{"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict()} for m in blend.members],
        }
    }
