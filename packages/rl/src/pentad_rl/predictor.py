"""Load a trained agent from its run and act: ``Predictor.from_run(path).predict(observations)``.

A run folder (the ``--out`` of ``train`` or ``demo``) holds everything needed: ``config.yaml`` (the
algorithm, the environment and the network), the agent ``checkpoints/best.zip`` (else ``last.zip``)
with, when it trained with ``normalize: true``, the ``VecNormalize`` statistics inside it. The agent is
rebuilt from the config and given the file's weights (``weights_only``): nothing in the file is
unpickled. No training data is needed to predict::

    from pentad_rl.predictor import Predictor

    predictor = Predictor.from_run("runs/rl/demo")          # or .../checkpoints/best.zip
    actions = predictor.predict(observations)               # (N, *obs_shape) -> (N, *action_shape)

``evaluate``, ``predict``, ``export``, ``record`` and ``play`` load their agent this way;
:meth:`Predictor.make_env` builds an environment that matches it (statistics restored) for them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces as gym_spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from pentad_core.errors import CheckpointError, DataError
from pentad_core.predictor import Predictor as BasePredictor
from pentad_core.predictor import TrainedRun
from pentad_rl.agents import load_agent, normalization_of
from pentad_rl.config import RLConfig, check_not_legacy
from pentad_rl.envs.make import Normalization, load_normalization, make_env
from pentad_rl.pipeline import BEST, LAST


class Predictor(BasePredictor):
    """A trained agent and its observation normalisation, acting deterministically.

    Attributes:
        run: The run files (folder, agent ``.zip``, config, metrics).
        config: The run's :class:`~pentad_rl.config.RLConfig` (or the one given to :meth:`from_run`).
        model: The stable-baselines3 agent.
        normalization: The ``VecNormalize`` observation statistics, or ``None`` without ``normalize``.
        statistics: The same statistics as saved (arrays, for an env to load), or ``None``.
    """

    config_class: ClassVar[type] = RLConfig
    checkpoint_names: ClassVar[tuple[str, ...]] = (BEST, LAST)

    def __init__(
        self, run: TrainedRun, config: RLConfig, model: BaseAlgorithm, statistics: dict[str, np.ndarray] | None
    ) -> None:
        super().__init__(run, config)
        self.model = model
        self.statistics = statistics
        self.normalization = Normalization.from_arrays(statistics) if statistics is not None else None

    @classmethod
    def from_trained_run(
        cls, run: TrainedRun, *, config: RLConfig | None = None, device: str | None = None
    ) -> Predictor:
        """Load the agent of ``run`` and its normalisation statistics.

        Args:
            run: Located by :meth:`from_run` (a run folder or an agent ``.zip``).
            config: The config to use instead of the run's ``config.yaml`` (the CLI passes the run's config
                with the command line's overrides; a loose ``.zip`` without a run folder needs ``model``).
            device: Torch device of the network (default: the config's).

        Raises:
            CheckpointError: If the ``.zip`` is not an agent of the config's algorithm.
            DataError: If the config says ``normalize: true`` but the statistics are missing.
        """
        if config is None:
            check_not_legacy(run.config, run.folder / "config.yaml")
            config = run.typed_config(RLConfig)
        build = config if device is None else replace(config, device=device)
        model = load_agent(run.checkpoint, build)
        statistics = None
        if config.normalize:
            statistics = normalization_of(run.checkpoint)
            if statistics is None:
                raise DataError(
                    f"{run.checkpoint} holds no normalisation statistics, but its config has normalize: true."
                )
        return cls(run, config, model, statistics)

    def predict(self, inputs: Any) -> np.ndarray:
        """Deterministic actions for a batch of raw observations (normalised as in training).

        Args:
            inputs: Array-like of shape ``(N, *observation_shape)`` (a single observation of shape
                ``observation_shape`` is treated as a batch of one). Recurrent policies start every
                observation from a fresh state.

        Returns:
            Actions of shape ``(N,)`` (discrete) or ``(N, *action_shape)`` (continuous).

        Raises:
            DataError: If the observations have the wrong shape or are not finite.
        """
        observations = np.asarray(inputs, dtype=np.float32)
        expected = tuple(self.model.observation_space.shape)
        if observations.shape == expected:
            observations = observations[None]
        if observations.shape[1:] != expected:
            raise DataError(
                f"observations of shape {observations.shape[1:]} do not fit {self.config.env}: it needs "
                f"(N, {', '.join(map(str, expected))})."
            )
        if not np.isfinite(observations).all():
            raise DataError("the observations contain NaN or infinite values; clean them first.")
        if self.normalization is not None:
            observations = self.normalization(observations)
        starts = np.ones(len(observations), dtype=bool)
        actions, _ = self.model.predict(observations, episode_start=starts, deterministic=True)
        return np.asarray(actions)

    def make_env(
        self,
        config: RLConfig | None = None,
        n_envs: int = 1,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> VecEnv:
        """An evaluation environment for the agent (``VecNormalize`` statistics restored, frozen).

        Args:
            config: The environment's config (default: the predictor's; e.g. another difficulty).
            n_envs: Parallel environments.
            seed: Env seed (default: the config's seed + 10 000, the training run's evaluation seed).
            render_mode: ``rgb_array``, ``ansi`` or ``human``.

        Raises:
            CheckpointError: If the environment's observation or action space differs from the agent's.
        """
        config = config or self.config
        seed = config.seed + 10_000 if seed is None else seed
        env = make_env(config, n_envs=n_envs, seed=seed, training=False, render_mode=render_mode)
        spaces = {"observation space": _as_agent_sees(env.observation_space), "action space": env.action_space}
        expected = {"observation space": self.model.observation_space, "action space": self.model.action_space}
        for kind, space in spaces.items():
            if space != expected[kind]:
                env.close()
                raise CheckpointError(
                    f"{self.run.checkpoint} was trained with {kind} {expected[kind]}; --env {config.env} has {space}."
                )
        if self.statistics is not None:
            load_normalization(env, self.statistics)
        return env


def _as_agent_sees(space: gym_spaces.Space) -> gym_spaces.Space:
    """``space`` as SB3 stores it in the agent: channel-last images transposed to channel-first."""
    if is_image_space(space) and not is_image_space_channels_first(space):
        return VecTransposeImage.transpose_space(space)
    return space
