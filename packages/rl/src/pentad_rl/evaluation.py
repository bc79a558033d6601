"""Evaluate an agent: return statistics over N deterministic episodes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from pentad_core.errors import ConfigError


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate_agent`.

    ``success_rate`` is the fraction of episodes whose final ``info["is_success"]`` is true; ``None``
    when the environment does not report success (e.g. CartPole).
    """

    mean_return: float
    std_return: float
    mean_length: float
    std_length: float
    success_rate: float | None
    episodes: int
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def metrics(self, split: str = "eval") -> dict[str, float]:
        """Flat ``<split>/<metric>`` numbers for metrics.json."""
        values = {
            f"{split}/mean_return": self.mean_return,
            f"{split}/std_return": self.std_return,
            f"{split}/mean_length": self.mean_length,
            f"{split}/std_length": self.std_length,
            f"{split}/episodes": float(self.episodes),
        }
        if self.success_rate is not None:
            values[f"{split}/success_rate"] = self.success_rate
        return values

    def row(self) -> dict[str, Any]:
        """The summary as one table row (``success_rate`` is ``"n/a"`` where the env reports none)."""
        return {
            "episodes": self.episodes,
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "mean_length": self.mean_length,
            "success_rate": "n/a" if self.success_rate is None else self.success_rate,
        }

    def as_dict(self) -> dict:
        """JSON-safe record including the per-episode values."""
        return asdict(self)


def evaluate_agent(
    model: BaseAlgorithm | Any, env: VecEnv, n_episodes: int = 10, deterministic: bool = True
) -> EvalResult:
    """Play ``n_episodes`` episodes and summarise returns, lengths and success.

    Returns are the environment's raw rewards as recorded by gymnasium's Monitor wrapper, so reward
    normalisation or Atari life-loss resets do not change them. Each of the ``env.num_envs``
    environments plays an equal share of the episodes so that short episodes are not over-counted.

    Args:
        model: Any SB3 agent (recurrent policies keep their state across steps).
        env: A VecEnv built by :func:`pentad_rl.envs.make.make_env` (with Monitor).
        n_episodes: Number of complete episodes.
        deterministic: Greedy actions (the standard protocol) or sampled ones.

    Raises:
        ConfigError: If ``n_episodes`` is not positive.
    """
    if n_episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {n_episodes}.")
    n_envs = env.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    observations = env.reset()
    state = None
    episode_starts = np.ones(n_envs, dtype=bool)
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    while (counts < targets).any():
        actions, state = model.predict(
            observations, state=state, episode_start=episode_starts, deterministic=deterministic
        )
        observations, rewards, dones, infos = env.step(actions)
        running_return += rewards
        running_length += 1
        for i in range(n_envs):
            if not dones[i]:
                continue
            info = infos[i]
            episode = info.get("episode")
            if episode is None and "terminal_observation" in info and _has_monitor(env):
                continue  # a life lost inside an Atari game, not the end of the episode
            if counts[i] < targets[i]:
                returns.append(float(episode["r"]) if episode else float(running_return[i]))
                lengths.append(int(episode["l"]) if episode else int(running_length[i]))
                if "is_success" in info:
                    successes.append(bool(info["is_success"]))
                counts[i] += 1
            running_return[i], running_length[i] = 0.0, 0
        episode_starts = dones
    return EvalResult(
        mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)),
        mean_length=float(np.mean(lengths)),
        std_length=float(np.std(lengths)),
        success_rate=float(np.mean(successes)) if successes else None,
        episodes=len(returns),
        returns=returns,
        lengths=lengths,
    )


def _has_monitor(env: VecEnv) -> bool:
    from stable_baselines3.common.monitor import Monitor

    return bool(env.env_is_wrapped(Monitor)[0])
