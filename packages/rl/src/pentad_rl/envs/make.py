"""Build (vectorised, wrapped, normalised) gymnasium environments from an :class:`RLConfig`.

Also the ``VecNormalize`` statistics of a run: written next to each agent ``.zip`` as plain arrays
(``<stem>_vecnormalize.npz``, no pickle), restored into an env for evaluation, or read as arrays by
the :class:`~pentad_rl.predictor.Predictor`, which normalises observations without any env.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    unwrap_vec_normalize,
)

from pentad_core.errors import ConfigError, missing_file
from pentad_core.files import atomic_write_bytes
from pentad_rl.config import RLConfig
from pentad_rl.envs.registry import ENV_WRAPPERS, check_env_id


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _wrapper_chain(names: list[str]):
    if not names:
        return None
    wrappers = [ENV_WRAPPERS.get(name) for name in names]

    def wrap(env: gym.Env) -> gym.Env:
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    return wrap


def check_render_mode(config: RLConfig, mode: str) -> None:
    """Check that ``mode`` (``human``, ``ansi``, ``rgb_array``) can be shown for the env of ``config``.

    Raises:
        ConfigError: For ``human`` without a display, or a mode the environment does not offer.
    """
    if mode == "human" and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")
    ):
        raise ConfigError("--render human needs a display (DISPLAY is unset); use --render ansi or `record`.")
    check_env_id(config.env)
    probe = gym.make(config.env, **config.env_kwargs)
    modes = list(probe.metadata.get("render_modes", []))
    probe.close()
    if mode not in modes:
        raise ConfigError(
            f"--render {mode} is not supported by {config.env} (it offers {', '.join(modes)}); use `record` for a GIF."
        )


def make_env(
    config: RLConfig,
    n_envs: int | None = None,
    seed: int = 0,
    render_mode: str | None = None,
    training: bool = True,
    monitor_dir: str | None = None,
) -> VecEnv:
    """Build the vectorised environment described by ``config``.

    Args:
        config: Environment id and kwargs, wrappers, frame stacking, normalisation, vectorisation.
        n_envs: Overrides ``config.n_envs`` (evaluation uses 1).
        seed: Env ``i`` is seeded with ``seed + i``.
        render_mode: Passed to ``gymnasium.make`` (``rgb_array`` for recording).
        training: For ``VecNormalize``: update statistics and normalise rewards only when training.
        monitor_dir: Folder for the Monitor CSV files (episode returns and lengths).

    Returns:
        A VecEnv; observations are normalised/stacked as the agent expects.
    """
    check_env_id(config.env)
    env_kwargs: dict[str, Any] = dict(config.env_kwargs)
    if render_mode is not None:
        env_kwargs["render_mode"] = render_mode
    count = n_envs or config.n_envs
    vec_cls = SubprocVecEnv if (config.vec_env == "subproc" and count > 1) else DummyVecEnv
    try:
        env = make_vec_env(
            config.env,
            n_envs=count,
            seed=seed,
            env_kwargs=env_kwargs,
            vec_env_cls=vec_cls,
            # fork starts workers in milliseconds; the workers only step environments (no torch work).
            vec_env_kwargs={"start_method": "fork"} if vec_cls is SubprocVecEnv and _can_fork() else None,
            wrapper_class=_wrapper_chain(list(config.env_wrapper)),
            monitor_dir=monitor_dir,
        )
    except TypeError as error:
        raise ConfigError(f"env_kwargs {config.env_kwargs} do not fit {config.env}: {error}") from None
    if config.frame_stack:
        env = VecFrameStack(env, n_stack=config.frame_stack)
    if config.normalize:
        kwargs = dict(config.normalize_kwargs)
        if not training:
            kwargs["norm_reward"] = False
        env = VecNormalize(env, training=training, **kwargs)
    return env


# -- normalisation statistics, stored as arrays (no pickle) -------------------------------------------
def normalization_path(agent_path: str | Path) -> Path:
    """Where the statistics of the agent saved at ``agent_path`` live: ``<stem>_vecnormalize.npz``."""
    agent_path = Path(agent_path)
    return agent_path.with_name(f"{agent_path.stem}_vecnormalize.npz")


@dataclass(frozen=True)
class Normalization:
    """``VecNormalize``'s observation statistics as arrays, applied exactly as ``VecNormalize`` does.

    Attributes:
        obs_mean: Running mean of the observations, shape ``observation_shape``.
        obs_var: Running variance, same shape.
        clip_obs: Normalised observations are clipped to ``[-clip_obs, clip_obs]``.
        epsilon: Added to the variance before the square root.
        norm_obs: False when ``VecNormalize`` only normalised rewards: observations pass unchanged.
    """

    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float = 10.0
    epsilon: float = 1e-8
    norm_obs: bool = True

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """``clip((obs - mean) / sqrt(var + eps))``, shape ``(N, *observation_shape)`` in and out."""
        if not self.norm_obs:
            return observations
        scaled = (observations - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


def save_normalization(env: VecEnv | None, path: str | Path) -> bool:
    """Write the ``VecNormalize`` running statistics of ``env`` to ``path`` (``.npz``); False if none."""
    env = unwrap_vec_normalize(env)
    if env is None:
        return False
    if isinstance(env.obs_rms, dict):
        raise ConfigError("normalize: true is not supported with dict observations; set normalize: false.")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        obs_mean=env.obs_rms.mean,
        obs_var=env.obs_rms.var,
        obs_count=np.float64(env.obs_rms.count),
        ret_mean=env.ret_rms.mean,
        ret_var=env.ret_rms.var,
        ret_count=np.float64(env.ret_rms.count),
        settings=np.frombuffer(
            json.dumps(
                {
                    "clip_obs": env.clip_obs,
                    "clip_reward": env.clip_reward,
                    "epsilon": env.epsilon,
                    "norm_obs": env.norm_obs,
                }
            ).encode(),
            dtype=np.uint8,
        ),
    )
    atomic_write_bytes(path, buffer.getvalue())
    return True


def read_normalization(path: str | Path) -> Normalization:
    """The observation statistics written by :func:`save_normalization`, without an env.

    Raises:
        DataError: If the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "normalisation statistics of the agent", "Copy them next to the .zip.")
    with np.load(path, allow_pickle=False) as data:
        settings = json.loads(data["settings"].tobytes().decode())
        return Normalization(
            data["obs_mean"],
            data["obs_var"],
            float(settings["clip_obs"]),
            float(settings["epsilon"]),
            bool(settings.get("norm_obs", True)),
        )


def load_normalization(env: VecEnv, path: str | Path) -> None:
    """Restore statistics written by :func:`save_normalization` into the ``VecNormalize`` ``env``.

    Raises:
        DataError: If the file is missing.
        ConfigError: If ``env`` is not normalised or the shapes differ.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "normalisation statistics", "Train with the same preset first.")
    env = unwrap_vec_normalize(env)
    if env is None:
        raise ConfigError(f"{path} holds normalisation statistics but the env has normalize: false.")
    with np.load(path, allow_pickle=False) as data:
        if data["obs_mean"].shape != env.obs_rms.mean.shape:
            raise ConfigError(f"{path}: statistics of shape {data['obs_mean'].shape} do not fit this env.")
        env.obs_rms.mean, env.obs_rms.var = data["obs_mean"], data["obs_var"]
        env.obs_rms.count = float(data["obs_count"])
        env.ret_rms.mean, env.ret_rms.var = data["ret_mean"], data["ret_var"]
        env.ret_rms.count = float(data["ret_count"])
