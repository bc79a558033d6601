"""The RL run configuration: what a preset YAML in ``shared/configs/rl/`` holds.

It extends pentad-core's :class:`~pentad_core.cli.BaseRunConfig` (not the Lightning ``RunConfig``:
stable-baselines3 keeps its own loop, so the app offers no ``--epochs``, ``--batch-size``,
``--accelerator``, ...): ``model`` is the algorithm name (``--algo``) and ``dataset`` the gymnasium
environment id (``--env``). Keys follow RL Baselines3 Zoo's hyperparameter files, grouped: environment
keys at the top level, constructor arguments of the algorithm under ``model_options`` (checked against
the algorithm class's signature), network options under ``policy_kwargs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pentad_core.cli import BaseRunConfig
from pentad_core.errors import ConfigError


@dataclass
class RLConfig(BaseRunConfig):
    """Everything needed to build environments and an agent, and to train it."""

    #: Algorithm (--algo) from ``pentad_rl.registry.ALGORITHMS``: ppo, a2c, dqn, sac, td3, qrdqn, trpo, ...
    model: str = "ppo"
    #: Gymnasium environment id (--env): CartPole-v1, Pendulum-v1, pentad/ConnectFour-v0, ...
    dataset: str = "CartPole-v1"
    #: Torch CPU threads: 1 is fastest for SB3's small networks (and does not fight over shared cores).
    threads: int | None = 1
    #: Keyword arguments for ``gymnasium.make`` (e.g. ``{difficulty: 2}`` for ConnectFour).
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Policy class name (MlpPolicy, CnnPolicy, MlpLstmPolicy); empty picks the algorithm's policy for the
    #: observation space (Cnn for images, MultiInput for dicts, else Mlp).
    policy: str = ""
    #: Number of parallel environments.
    n_envs: int = 1
    #: Vectorisation: ``dummy`` (one process, sequential) or ``subproc`` (one process per env).
    vec_env: Literal["dummy", "subproc"] = "dummy"
    #: Total environment steps to train for (summed over the parallel environments).
    timesteps: int = 100_000
    #: Constructor arguments of the algorithm (e.g. ``n_steps``, ``buffer_size``), checked against its
    #: class; ``learning_rate``/``clip_range`` accept ``lin_<x>`` schedules.
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Network options (``net_arch``, ``activation_fn: relu|tanh``, ``ortho_init``, ...).
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Wrap the vectorised env in ``VecNormalize`` (running mean/std of observations and returns).
    normalize: bool = False
    #: Arguments of ``VecNormalize`` (e.g. ``{norm_reward: false}``).
    normalize_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Stack this many consecutive observations (pixels: 4); 0 disables stacking.
    frame_stack: int = 0
    #: Named wrappers applied to every env, in order: ``atari`` (SB3's AtariWrapper), ``time_feature``,
    #: ``time_limit``; an item may carry keywords: ``{atari: {terminal_on_life_loss: false}}``.
    env_wrapper: list[str | dict[str, dict[str, Any]]] = field(default_factory=list)
    #: Exploration noise for TD3/DDPG/SAC: ``normal``, ``ornstein-uhlenbeck`` or empty.
    noise_type: str = ""
    #: Standard deviation of the exploration noise.
    noise_std: float = 0.1
    #: Evaluate (and keep the best model) every this many steps; 0 disables.
    eval_freq: int = 10_000
    #: Deterministic episodes per evaluation.
    eval_episodes: int = 10
    #: Save a checkpoint every this many steps (plus one at the end); 0 saves only at the end.
    checkpoint_freq: int = 0
    #: Two-player envs: the opponent becomes a frozen copy of the agent, refreshed periodically.
    self_play: bool = False
    #: Steps between refreshes of the self-play opponent.
    self_play_freq: int = 10_000
    #: Torch device of the networks (cpu is fastest for small MLP policies).
    device: str = "cpu"
    #: Where the preset's values come from, and why pentad changed any (citation); informational.
    source: str = ""
    #: The RL Zoo entry the preset was read from (``ppo.yml:CartPole-v1``; empty: none), written by pentad.
    #: In a pentad preset file it names the Zoo entry the section starts from (read, not copied).
    zoo: str = ""

    @property
    def algo(self) -> str:
        """The algorithm name (alias of ``model``)."""
        return self.model

    @property
    def env(self) -> str:
        """The gymnasium environment id (alias of ``dataset``)."""
        return self.dataset

    def __post_init__(self) -> None:
        """Reject values no run can use (one-line ConfigErrors)."""
        if self.n_envs < 1:
            raise ConfigError(f"--n-envs must be at least 1, got {self.n_envs}.")
        if self.timesteps < 1:
            raise ConfigError(f"--timesteps must be positive, got {self.timesteps}.")
        if self.frame_stack < 0:
            raise ConfigError(f"frame_stack must be 0 or more, got {self.frame_stack}.")
        if self.eval_episodes < 1:
            raise ConfigError(f"eval_episodes must be at least 1, got {self.eval_episodes}.")


#: Keys that ``config.yaml`` of runs from before ``model_options`` held: ``hyperparams`` (renamed) and the
#: Lightning settings that pentad-rl wrote but never used.
LEGACY_KEYS = ("hyperparams", "batch_size", "num_workers", "trainer")


def check_not_legacy(saved: Mapping[str, Any], path: str | Path) -> None:
    """Say how to upgrade a run's ``config.yaml`` written before ``model_options`` (one edit, no retraining).

    Raises:
        ConfigError: If ``saved`` holds any of :data:`LEGACY_KEYS`.
    """
    found = [key for key in LEGACY_KEYS if key in saved]
    if found:
        drop = ", ".join(key for key in found if key != "hyperparams")
        rename = "rename `hyperparams:` to `model_options:`" if "hyperparams" in found else ""
        steps = " and ".join(step for step in (rename, f"delete {drop} (never used by rl)" if drop else "") if step)
        raise ConfigError(f"{path} was written by an earlier pentad-rl: {steps}; the agent itself loads as is.")
