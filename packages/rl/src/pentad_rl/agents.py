"""Build, save and load stable-baselines3 agents from an :class:`RLConfig`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from pentad_core.errors import CheckpointError, ConfigError, missing_file
from pentad_core.files import atomic_open
from pentad_rl.algorithms import action_kind, default_policy
from pentad_rl.config import RLConfig
from pentad_rl.hyperparams import build_action_noise, build_model_options, build_policy_kwargs
from pentad_rl.registry import ALGORITHMS

#: Constructor arguments pentad sets itself (from the config's other fields and the env); not model_options.
GIVEN = ("policy", "env", "seed", "device", "tensorboard_log", "verbose", "policy_kwargs", "action_noise")


def agent_arguments(config: RLConfig, env: VecEnv) -> dict[str, Any]:
    """The algorithm's constructor arguments other than ``policy``/``env``/``seed``/...: ``model_options``
    (schedules and tuples converted), ``policy_kwargs`` and action noise.

    Raises:
        ConfigError: If a ``model_options`` key is not a constructor argument of the algorithm (naming
            it and listing the valid ones), or the algorithm cannot act in ``env``'s action space.
    """
    kind = action_kind(env.action_space)
    tasks = ALGORITHMS.info(config.algo).tasks
    if tasks and kind not in tasks:
        raise ConfigError(
            f"--algo {config.algo} handles {' and '.join(tasks)} actions; --env {config.env} has {kind} ones. "
            "Run `models` for the alternatives."
        )
    options = ALGORITHMS.options(config.algo, build_model_options(config.model_options), given=GIVEN)
    if config.policy_kwargs:
        options["policy_kwargs"] = build_policy_kwargs(config.policy_kwargs)
    noise = build_action_noise(config.noise_type or None, config.noise_std, env.action_space)
    if noise is not None:
        options["action_noise"] = noise
    return options


def build_agent(
    config: RLConfig,
    env: VecEnv,
    seed: int = 0,
    tensorboard_log: str | None = None,
    verbose: int = 0,
) -> BaseAlgorithm:
    """Create the agent of ``config.algo`` on ``env`` with the preset's ``model_options``.

    Args:
        config: Algorithm, policy, ``model_options`` (schedules allowed), policy kwargs, action noise.
        env: The vectorised training environment.
        seed: Seeds the networks, the action sampling and the action-space RNG.
        tensorboard_log: Folder for TensorBoard event files; ``None`` disables them.
        verbose: SB3 verbosity (0 silent, 1 info).

    Raises:
        ConfigError: If a ``model_options`` key is unknown to the algorithm or the algorithm cannot handle
            the environment's action space (e.g. DQN on continuous actions).
    """
    arguments = agent_arguments(config, env)
    policy = config.policy or default_policy(config.algo, env.observation_space)
    try:
        return ALGORITHMS.get(config.algo)(
            policy, env, seed=seed, device=config.device, tensorboard_log=tensorboard_log, verbose=verbose, **arguments
        )
    except TypeError as error:
        raise ConfigError(f"model_options for {config.algo} are not accepted: {error}. Check the preset.") from None
    except (AssertionError, ValueError, KeyError) as error:
        raise ConfigError(f"--algo {config.algo} cannot train on --env {config.env}: {error}") from None


def save_agent(model: BaseAlgorithm, path: str | Path, replay_buffer: bool = False) -> Path:
    """Save ``model`` to ``path`` (a ``.zip``) atomically; optionally its replay buffer next to it.

    The replay buffer goes to ``<stem>_replay_buffer.pkl`` (SB3's format) so that off-policy training
    resumes with the experience it had.
    """
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        model.save(handle)
    if replay_buffer and isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        buffer = io.BytesIO()
        model.save_replay_buffer(buffer)
        with atomic_open(replay_buffer_path(path), "wb") as handle:
            handle.write(buffer.getvalue())
    return path


def replay_buffer_path(model_path: str | Path) -> Path:
    """Where :func:`save_agent` puts the replay buffer of the agent saved at ``model_path``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_replay_buffer.pkl")


def load_agent(
    path: str | Path, algo: str, env: VecEnv | None = None, device: str = "cpu", tensorboard_log: str | None = None
) -> BaseAlgorithm:
    """Load an agent saved by :func:`save_agent` (network weights are read with ``weights_only=True``).

    Args:
        path: The ``.zip`` file.
        algo: Registry name of its algorithm.
        env: Environment to continue training or evaluating on (checked against the saved spaces).
        device: Torch device.
        tensorboard_log: Folder for TensorBoard event files when training continues.

    Raises:
        DataError: If the file is missing.
        CheckpointError: If it is not an agent of ``algo`` or does not fit ``env``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "agent checkpoint", "Train first or pass the path of a saved .zip.")
    cls = ALGORITHMS.get(algo)
    try:
        return cls.load(path, env=env, device=device, tensorboard_log=tensorboard_log)
    except ValueError as error:
        raise CheckpointError(f"{path} does not fit --env: {error}") from None
    except (KeyError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable {algo} agent ({error}); pass the right --algo.") from None
