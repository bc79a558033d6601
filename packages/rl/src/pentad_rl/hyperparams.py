"""Turn RL-Zoo-style preset values (``model_options``, ``policy_kwargs``) into stable-baselines3 arguments.

The module keeps its name although the config key is now ``model_options``: every saved agent's
``data`` member pickles its schedules as ``pentad_rl.hyperparams.LinearSchedule``. pentad never
unpickles it (agents are rebuilt from the run's config), but stable-baselines3's own ``PPO.load`` of a
pentad agent does, and renaming the module would break that for the agents of every run.

Presets are YAML, so they hold strings and numbers only; this module converts them:

* schedules: ``"lin_0.001"`` -> a function of the remaining progress (1 -> 0) that decays linearly
  from 0.001 to 0, exactly as RL Zoo's ``linear_schedule``;
* ``policy_kwargs``: ``activation_fn: relu`` -> ``torch.nn.ReLU``, ``optimizer_class: RMSpropTFLike`` -> the
  class; ``net_arch`` lists/mappings as is;
* ``train_freq: [4, step]`` -> ``(4, "step")``;
* action noise (``noise_type: normal|ornstein-uhlenbeck``, ``noise_std``) for TD3/DDPG/SAC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise

from pentad_core.errors import ConfigError

#: Constructor arguments that RL Zoo allows to be schedules.
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


class LinearSchedule:
    """``progress_remaining * initial``: decays linearly from ``initial`` to 0 over training.

    A class rather than a closure so that a saved agent records it readably.

    Args:
        initial: The value at the start of training.
    """

    def __init__(self, initial: float) -> None:
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial

    def __repr__(self) -> str:
        return f"lin_{self.initial:g}"


def parse_schedule(value: Any, key: str = "learning_rate") -> float | Callable[[float], float]:
    """Parse a number or an RL Zoo schedule string (``"lin_0.001"``).

    Raises:
        ConfigError: If the string is neither a number nor ``lin_<number>``.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.startswith("lin_"):
                return LinearSchedule(float(text[4:]))
            return float(text)
        except ValueError:
            pass
    raise ConfigError(f"model_options.{key}={value!r} must be a number or a schedule like 'lin_0.001'.")


def _optimizers() -> dict[str, type]:
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    return {"RMSpropTFLike": RMSpropTFLike, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW,
            "RMSprop": torch.optim.RMSprop}  # fmt: skip


def build_policy_kwargs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert YAML ``policy_kwargs`` (activation and optimiser names as strings) to SB3's policy arguments."""
    kwargs = dict(raw)
    if "optimizer_class" in kwargs:
        optimizers = _optimizers()
        name = str(kwargs["optimizer_class"])
        if name not in optimizers:
            raise ConfigError(f"policy_kwargs.optimizer_class {name!r} is unknown; use one of {', '.join(optimizers)}.")
        kwargs["optimizer_class"] = optimizers[name]
    if "activation_fn" in kwargs:
        name = str(kwargs["activation_fn"]).lower().removeprefix("nn.")
        if name not in ACTIVATIONS:
            raise ConfigError(
                f"policy_kwargs.activation_fn {kwargs['activation_fn']!r} is unknown; use one of "
                f"{', '.join(ACTIVATIONS)}."
            )
        kwargs["activation_fn"] = ACTIVATIONS[name]
    return kwargs


def build_action_noise(noise_type: str | None, noise_std: float, action_space: spaces.Space) -> ActionNoise | None:
    """Gaussian or Ornstein-Uhlenbeck exploration noise for continuous actions (RL Zoo convention).

    Raises:
        ConfigError: For an unknown noise type or noise on a non-continuous action space.
    """
    if not noise_type:
        return None
    if not isinstance(action_space, spaces.Box):
        raise ConfigError(f"noise_type={noise_type!r} needs continuous (Box) actions; remove it for this env.")
    size = int(np.prod(action_space.shape))
    mean, sigma = np.zeros(size), noise_std * np.ones(size)
    if noise_type == "normal":
        return NormalActionNoise(mean, sigma)
    if noise_type == "ornstein-uhlenbeck":
        return OrnsteinUhlenbeckActionNoise(mean, sigma)
    raise ConfigError(f"noise_type {noise_type!r} must be 'normal' or 'ornstein-uhlenbeck'.")


def build_model_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a config's YAML ``model_options`` to constructor keyword arguments (schedules, tuples)."""
    kwargs = dict(raw)
    for key in SCHEDULE_KEYS:
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = parse_schedule(kwargs[key], key)
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    return kwargs
